"""The development credentials identity's seed generates: demo users' passwords and the secrets
of the demo clients it registers (the storefront's among them), in one owner-only file of the
topology's state folder, never in the repository. A deployment hands a client its secret in the
environment instead (`CLEAVE_CLIENT_SECRET_<CLIENT>`, from a Kubernetes Secret, say)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

CREDENTIALS_FILE = "dev-credentials.json"
# The demo clients the seed registers and whose secrets the file holds: `cleave token`'s own
# (authorization code, PKCE) and the admin client (client credentials).
CLI_CLIENT = "cleave-cli"
CLI_REDIRECT_URI = "http://127.0.0.1:8976/callback"
ADMIN_CLIENT = "cleave-admin"


def read_credentials(state_dir: Path) -> dict[str, Any]:
    """What the seed wrote, as {"users": {...}, "clients": {...}}; empty when nothing is there."""
    try:
        credentials: dict[str, Any] = json.loads((state_dir / CREDENTIALS_FILE).read_text())
    except (OSError, ValueError):
        return {"users": {}, "clients": {}}
    credentials.setdefault("users", {})
    credentials.setdefault("clients", {})
    return credentials


def client_secret(state_dir: Path, client_id: str) -> str | None:
    """A confidential client's secret: `CLEAVE_CLIENT_SECRET_<CLIENT>` in the environment, else
    the development file's."""
    variable = "CLEAVE_CLIENT_SECRET_" + "".join(c if c.isalnum() else "_" for c in client_id)
    if secret := os.environ.get(variable.upper()):
        return secret
    secret = read_credentials(state_dir)["clients"].get(client_id, {}).get("secret")
    return str(secret) if secret else None
