"""One PostgreSQL database and one role per service, created through an admin connection.

Each service's database URL names its role (the URL's user, with its password if any) and its
database. Provisioning creates what is missing, makes the role own the database and takes
`CONNECT` away from `PUBLIC`, so no other service's role can even connect to it. Nothing is granted
across services. Running it again changes nothing. Migrations then run as each service's own role.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

import asyncpg
from sqlalchemy.engine import URL, make_url

from cleave.config import SystemConfig
from cleave.errors import CleaveError, ConfigError

# Identifiers are spliced into DDL (PostgreSQL takes no parameters there): allow plain names only.
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class ServiceDatabase:
    service: str
    role: str
    database: str
    password: str | None

    @classmethod
    def from_url(cls, service: str, url: URL) -> ServiceDatabase:
        if not url.username:
            raise ConfigError(f"the database URL of {service} names no user to own its database")
        if not url.database:
            raise ConfigError(f"the database URL of {service} names no database")
        for name in (url.username, url.database):
            if not _IDENTIFIER.match(name):
                raise ConfigError(f"{service}: {name!r} is not a plain PostgreSQL identifier")
        return cls(service, url.username, url.database, url.password)


@dataclass(frozen=True)
class Provisioned:
    service: str
    role: str
    database: str
    changes: tuple[str, ...]


def postgres_databases(config: SystemConfig, only: str | None = None) -> list[ServiceDatabase]:
    """The services (all, or `only`) whose database is PostgreSQL; SQLite ones need nothing."""
    found = []
    for service in config.services:
        if only is not None and service != only:
            continue
        url = make_url(config.database_url(service))
        if url.get_backend_name() == "postgresql":
            found.append(ServiceDatabase.from_url(service, url))
    return found


async def provision(
    admin_url: str, config: SystemConfig, only: str | None = None
) -> list[Provisioned]:
    """Create each service's role and database where missing; returns what changed, per service."""
    admin = _admin_url(admin_url)
    targets = postgres_databases(config, only)
    if not targets:
        return []
    connection = await _connect_admin(admin)
    try:
        return [await _provision_one(connection, target) for target in targets]
    finally:
        await connection.close()


def _admin_url(text: str) -> URL:
    try:
        url = make_url(text)
    except Exception:
        raise ConfigError(f"--admin-url {text!r} is not a database URL") from None
    if url.get_backend_name() != "postgresql":
        raise ConfigError(f"--admin-url must be a PostgreSQL URL, not {url.drivername!r}")
    return url


async def _connect_admin(url: URL) -> asyncpg.Connection:
    shown = url.render_as_string(hide_password=True)
    plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        return await asyncpg.connect(plain, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CleaveError(f"cannot reach the admin database at {shown}: {reason}") from None


async def _provision_one(connection: asyncpg.Connection, target: ServiceDatabase) -> Provisioned:
    role, database = _quote(target.role), _quote(target.database)
    changes: list[str] = []
    if await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", target.role) is None:
        password = f" PASSWORD {_literal(target.password)}" if target.password else ""
        await connection.execute(
            f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE{password}"
        )
        changes.append(f"role {target.role} created")
    elif target.password and not await _password_matches(connection, target):
        await connection.execute(f"ALTER ROLE {role} PASSWORD {_literal(target.password)}")
        changes.append(f"role {target.role} password set")
    owner = await connection.fetchval(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", target.database
    )
    if owner is None:
        # CREATE DATABASE cannot run in a transaction block; asyncpg sends it on its own.
        await connection.execute(f"CREATE DATABASE {database} OWNER {role}")
        changes.append(f"database {target.database} created")
    elif owner != target.role:
        await connection.execute(f"ALTER DATABASE {database} OWNER TO {role}")
        changes.append(f"database {target.database} now owned by {target.role}")
    if await connection.fetchval(
        "SELECT has_database_privilege('public', oid, 'CONNECT') FROM pg_database "
        "WHERE datname = $1",
        target.database,
    ):
        await connection.execute(f"REVOKE CONNECT, TEMPORARY ON DATABASE {database} FROM PUBLIC")
        changes.append("connect revoked from public")
    return Provisioned(target.service, target.role, target.database, tuple(changes))


async def _password_matches(connection: asyncpg.Connection, target: ServiceDatabase) -> bool:
    """Whether the role can already log in with the URL's password (superusers may read it)."""
    try:
        stored = await connection.fetchval(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1", target.role
        )
    except asyncpg.InsufficientPrivilegeError:
        return False
    if stored is None:
        return False
    if not stored.startswith("SCRAM-SHA-256$"):
        return bool(stored == target.password)
    return _scram_matches(stored, target.password or "")


def _scram_matches(stored: str, password: str) -> bool:
    # SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, as RFC 5802 and 7677 define it.
    _, params, keys = stored.split("$")
    iterations, salt = params.split(":")
    stored_key = keys.split(":")[0]
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(salt), int(iterations)
    )
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return hmac.compare_digest(
        base64.b64encode(hashlib.sha256(client_key).digest()).decode(), stored_key
    )


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
