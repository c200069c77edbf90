import os

# Pact's core sends anonymous usage figures unless told not to: tests never reach out.
os.environ.setdefault("PACT_DO_NOT_TRACK", "true")
