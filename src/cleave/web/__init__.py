"""The HTTP face: each unit's app, the gateway in front of several units, and the console."""
