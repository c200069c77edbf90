"""Development credentials: the demo users' passwords and demo clients' secrets that the seeds
generate, kept in one owner-only file, `var/dev-credentials.json`, never in the repository. A
deployment hands each secret over in the environment instead (a Kubernetes Secret)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

CREDENTIALS_FILE = "dev-credentials.json"


def read_credentials(var_dir: Path) -> dict[str, Any]:
    """What the seeds wrote, as {"users": {...}, "clients": {...}}; empty when nothing is there."""
    try:
        credentials: dict[str, Any] = json.loads((var_dir / CREDENTIALS_FILE).read_text())
    except (OSError, ValueError):
        return {"users": {}, "clients": {}}
    credentials.setdefault("users", {})
    credentials.setdefault("clients", {})
    return credentials


def write_credentials(var_dir: Path, credentials: dict[str, Any]) -> None:
    """Replace the file atomically, readable and writable by its owner alone (0600)."""
    var_dir.mkdir(parents=True, exist_ok=True)
    path = var_dir / CREDENTIALS_FILE
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(credentials, handle, indent=2)
    temporary.replace(path)


def client_secret(var_dir: Path, client_id: str) -> str | None:
    """A confidential client's secret: `CLEAVE_CLIENT_SECRET_<ID>` in the environment, else the
    development file's."""
    variable = "CLEAVE_CLIENT_SECRET_" + "".join(c if c.isalnum() else "_" for c in client_id)
    if secret := os.environ.get(variable.upper()):
        return secret
    secret = read_credentials(var_dir)["clients"].get(client_id, {}).get("secret")
    return str(secret) if secret else None
