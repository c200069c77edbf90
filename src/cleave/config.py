"""The system's configuration: `cleave.toml`, with environment overrides for deployment."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

from cleave.errors import ConfigError

ALL_SERVICES = "*"


@dataclass(frozen=True)
class Topology:
    """Which services share a process (a unit), the broker, and each service's database."""

    name: str
    units: Mapping[str, tuple[str, ...]]
    broker: str
    database: str
    databases: Mapping[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 9000
    addresses: Mapping[str, UnitAddress] = field(default_factory=dict)
    admin_url: str | None = None
    pool_size: int = 5
    # Peers (addresses or CIDR networks) whose X-Forwarded-* the gateway believes: none by default.
    trusted_proxies: tuple[str, ...] = ()
    # Where each unit serves /metrics, apart from its API; None: no scrape endpoint at all.
    metrics_port: int | None = None
    # A folder of certificates for TLS on gRPC between units (`cleave certs` makes them).
    grpc_tls: str | None = None
    # The units deployed as AWS Lambda functions (`cleave deploy render --target lambda`); how
    # `cleave up` runs the topology is the same either way.
    functions: tuple[str, ...] = ()

    def unit_of(self, service: str) -> str:
        for unit, services in self.units.items():
            if service in services:
                return unit
        raise ConfigError(f"service {service!r} is in no unit of topology {self.name!r}")

    def address_of(self, unit: str) -> UnitAddress:
        """Where a unit listens: `addresses.<unit>` in the file, an environment override
        (`CLEAVE_ADDRESS_<UNIT>=host:http_port:grpc_port[:metrics_port]`, as Kubernetes sets
        it), or else consecutive ports after the topology's own `http_port` and `grpc_port`.
        Unless the address names one, unit N's metrics port is `metrics_port` + N."""
        if unit not in self.units:
            raise ConfigError(f"unknown unit {unit!r} in topology {self.name!r}")
        metrics = self.metrics_base()
        index = 0 if len(self.units) == 1 else list(self.units).index(unit) + 1
        metrics_port = None if metrics is None else metrics + index
        override = os.environ.get(f"CLEAVE_ADDRESS_{unit.upper().replace('-', '_')}")
        if override:
            return UnitAddress.parse(override, metrics_port)
        if unit in self.addresses:
            given = self.addresses[unit]
            return given if given.metrics_port else replace(given, metrics_port=metrics_port)
        return UnitAddress(self.host, self.http_port + index, self.grpc_port + index, metrics_port)

    def metrics_base(self) -> int | None:
        """`CLEAVE_METRICS_PORT`, else the topology's `metrics_port`; 0 turns metrics off."""
        override = os.environ.get("CLEAVE_METRICS_PORT")
        port = int(override) if override and override.isdigit() else self.metrics_port
        return port or None


@dataclass(frozen=True)
class UnitAddress:
    host: str
    http_port: int
    grpc_port: int
    # The unit's own scrape port, apart from its API (None: metrics are not served).
    metrics_port: int | None = None

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @classmethod
    def parse(cls, text: str, metrics_port: int | None = None) -> UnitAddress:
        """`host:http_port:grpc_port[:metrics_port]`; without the last, `metrics_port`."""
        host, _, ports = text.partition(":")
        numbers = ports.split(":")
        if not (host and len(numbers) in (2, 3) and all(n.isdigit() for n in numbers)):
            raise ConfigError(f"address {text!r} is not host:http_port:grpc_port[:metrics_port]")
        metrics = int(numbers[2]) if len(numbers) == 3 else metrics_port
        return cls(host, int(numbers[0]), int(numbers[1]), metrics or None)


SELF_ISSUER = "self"
# Where the API docs page (Swagger UI) receives the provider's answer to its sign-in.
DOCS_OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"


@dataclass(frozen=True)
class AuthConfig:
    """Whom services trust for tokens. `issuer = "self"` is this system's own provider (the
    service named `provider`) at the public URL; any other http(s) URL is an external OIDC issuer.
    """

    issuer: str
    audience: str
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    provider: str = ""
    public_url: str | None = None
    jwks_refresh_seconds: float = 60.0
    # The public client the API docs page signs people in as, if the provider registers one.
    docs_client: str | None = None


@dataclass(frozen=True)
class RateLimitConfig:
    """`[rate_limit]`: requests to `/api/...` allowed per client address and per principal, in
    the `limits` notation ("100/second;3000/minute"; "off" for none), counted in `storage`:
    "memory://" in each process, or a Redis URL shared by all. Each key has its environment
    override: `CLEAVE_RATE_LIMIT_PER_ADDRESS`, `..._PER_PRINCIPAL`, `..._STORAGE`."""

    per_address: str = "200/second;6000/minute"
    per_principal: str = "100/second;3000/minute"
    storage: str = "memory://"


@dataclass(frozen=True)
class SystemConfig:
    name: str
    root: Path
    # Development state (SQLite files, generated credentials, the running server's claim): one
    # folder per topology under this root, so that two topologies never share a file.
    var_root: Path
    services: Mapping[str, str]
    topologies: Mapping[str, Topology]
    topology: Topology
    auth: AuthConfig
    settings: Mapping[str, Mapping[str, Any]]
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)

    @property
    def var_dir(self) -> Path:
        """This topology's own development state: `var/<topology>/`."""
        return self.var_root / self.topology.name

    @property
    def public_url(self) -> str:
        """Where clients reach the system: `CLEAVE_PUBLIC_URL`, `[auth] public_url`, the address
        `cleave up` listens on, or else the topology's gateway address."""
        if self.auth.public_url:
            return self.auth.public_url.rstrip("/")
        return f"http://{self.topology.host}:{self.topology.http_port}"

    @property
    def self_issuer(self) -> str:
        """The issuer URL of this system's own provider, exactly as its discovery document says."""
        if not self.auth.provider:  # no provider of its own: nothing it issues, nothing to trust
            return self.public_url
        return f"{self.public_url}/api/{self.auth.provider}/v1"

    @property
    def issuer(self) -> str:
        """The issuer every service trusts."""
        return self.self_issuer if self.auth.issuer == SELF_ISSUER else self.auth.issuer

    def serving_at(self, host: str, port: int) -> SystemConfig:
        """The same system, served at `host:port`, unless a public URL is configured."""
        if self.auth.public_url:
            return self
        public_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
        if ":" in public_host:
            public_host = f"[{public_host}]"
        return replace(self, auth=replace(self.auth, public_url=f"http://{public_host}:{port}"))

    def database_url(self, service: str) -> str:
        """`CLEAVE_DATABASE_<SERVICE>` (one service's URL, as a Kubernetes Secret hands it over),
        else the `CLEAVE_DATABASE` template, else the topology's."""
        template = (
            os.environ.get(service_database_variable(service))
            or os.environ.get("CLEAVE_DATABASE")
            or self.topology.databases.get(service, self.topology.database)
        )
        return template.format(service=service, var=self.var_dir)

    @property
    def grpc_tls_dir(self) -> Path | None:
        """Where the units' gRPC certificates are, when the topology turns TLS on:
        `CLEAVE_GRPC_TLS`, else its `grpc_tls` (`{var}` is its state folder), from the root."""
        folder = os.environ.get("CLEAVE_GRPC_TLS") or self.topology.grpc_tls
        return self.root / folder.format(var=self.var_dir) if folder else None

    def service_settings(self, service: str) -> Mapping[str, Any]:
        return self.settings.get(service, {})

    def with_topology(self, name: str) -> SystemConfig:
        if name not in self.topologies:
            known = ", ".join(sorted(self.topologies))
            raise ConfigError(f"unknown topology {name!r} (known: {known})")
        return replace(self, topology=self.topologies[name])

    def collapsed(self) -> SystemConfig:
        """The same databases with every service in one in-process unit: for admin commands
        (migrate, seed, dead letters) that reach each service's own data from one place."""
        together = replace(
            self.topology, units={"admin": tuple(self.services)}, broker="memory", addresses={}
        )
        return replace(self, topology=together)

    def require_service(self, name: str) -> None:
        if name not in self.services:
            known = ", ".join(self.services)
            raise ConfigError(f"unknown service {name!r} (known: {known})")


def service_database_variable(service: str) -> str:
    return f"CLEAVE_DATABASE_{service.upper().replace('-', '_')}"


def find_config(start: Path | None = None) -> Path:
    """`CLEAVE_CONFIG`, else the nearest `cleave.toml` from the working directory upwards."""
    if explicit := os.environ.get("CLEAVE_CONFIG"):
        return Path(explicit)
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "cleave.toml"
        if candidate.is_file():
            return candidate
    raise ConfigError("no cleave.toml here or in any parent folder (or set CLEAVE_CONFIG)")


def load_config(path: Path | None = None, topology: str | None = None) -> SystemConfig:
    path = path or find_config()
    try:
        text = path.read_text()
        raw = tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: {error}") from None
    file = _File(path, text)
    file.check_keys((), raw, TOP_LEVEL_TABLES)
    root = path.resolve().parent
    system = file.table(raw, "system")
    file.check_keys(("system",), system, SYSTEM_KEYS)
    services = {
        str(k): file.text(("services",), k, v) for k, v in file.table(raw, "services").items()
    }
    if not services:
        raise ConfigError(f"{path}: [services] lists no service")
    topologies = {
        name: _topology(
            file, name, file.table(raw["topology"], name, ("topology",)), list(services)
        )
        for name in file.table(raw, "topology")
    }
    if not topologies:
        raise ConfigError(f"{path}: no [topology.<name>] table")
    var_root = Path(os.environ.get("CLEAVE_VAR") or root / "var")
    auth = file.table(raw, "auth")
    file.check_keys(("auth",), auth, AUTH_KEYS)
    for key in AUTH_KEYS - {"jwks_refresh_seconds"}:
        if key in auth:
            file.text(("auth",), key, auth[key])
    refresh = auth.get("jwks_refresh_seconds", 60.0)
    if isinstance(refresh, bool) or not isinstance(refresh, int | float) or refresh < 0:
        file.fail(
            ("auth",), "jwks_refresh_seconds", "jwks_refresh_seconds must be seconds, 0 or more"
        )
    for key in SYSTEM_KEYS:
        if key in system:
            file.text(("system",), key, system[key])
    settings = file.table(raw, "settings")
    for service in settings:
        if service not in services:
            file.fail(("settings",), service, f"settings for unknown service {service!r}")
        file.table(settings, service, ("settings",))
    file.table(raw, "commands")
    chosen = topology or os.environ.get("CLEAVE_TOPOLOGY") or system.get("default_topology")
    config = SystemConfig(
        name=system.get("name", root.name),
        root=root,
        var_root=var_root,
        services=services,
        topologies=topologies,
        topology=next(iter(topologies.values())),
        auth=AuthConfig(
            issuer=os.environ.get("CLEAVE_ISSUER") or auth.get("issuer", SELF_ISSUER),
            audience=os.environ.get("CLEAVE_AUDIENCE") or auth.get("audience", "cleave"),
            provider=str(auth.get("provider", "")),
            public_url=os.environ.get("CLEAVE_PUBLIC_URL") or auth.get("public_url"),
            jwks_refresh_seconds=float(auth.get("jwks_refresh_seconds", 60.0)),
            docs_client=auth.get("docs_client"),
        ),
        settings=settings,
        rate_limit=_rate_limit(file, file.table(raw, "rate_limit")),
    )
    return config.with_topology(chosen) if chosen else config


# Every key the file may hold, per table: anything else is a mistake worth one clear line.
TOP_LEVEL_TABLES = frozenset(
    {"system", "services", "topology", "auth", "commands", "settings", "rate_limit"}
)
SYSTEM_KEYS = frozenset({"name", "default_topology"})
AUTH_KEYS = frozenset(
    {"issuer", "provider", "audience", "public_url", "jwks_refresh_seconds", "docs_client"}
)
RATE_LIMIT_KEYS = ("per_address", "per_principal", "storage")
TOPOLOGY_KEYS = frozenset(
    {
        "units",
        "broker",
        "database",
        "databases",
        "host",
        "http_port",
        "grpc_port",
        "metrics_port",
        "addresses",
        "admin_url",
        "pool_size",
        "grpc_tls",
        "trusted_proxies",
        "functions",
    }
)


class _File:
    """The file being read, to say where in it a wrong key is: tomllib keeps no line numbers,
    so the line is found again in the text, within the key's own table."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def line_of(self, table: tuple[str, ...], key: str) -> int | None:
        header = None if not table else ".".join(table)
        inside = header is None
        for number, line in enumerate(self.lines, start=1):
            stripped = line.split("#", 1)[0].strip()
            if stripped.startswith("["):
                name = stripped.strip("[]").replace(" ", "").replace('"', "").replace("'", "")
                own = ".".join((*table, key))
                if name == own or name.startswith(f"{own}."):
                    return number  # the key is a table of its own: [topology.split.addresses]
                inside = name == header
                continue
            if not inside:
                continue
            name = stripped.partition("=")[0].strip().strip("\"'")
            if "=" in stripped and name == key:
                return number
        return None

    def fail(self, table: tuple[str, ...], key: str, message: str) -> NoReturn:
        line = self.line_of(table, key)
        where = f"{self.path}:{line}" if line else str(self.path)
        raise ConfigError(f"{where}: {message}")

    def check_keys(
        self, table: tuple[str, ...], values: Mapping[str, Any], known: frozenset[str]
    ) -> None:
        for key in values:
            if key not in known:
                place = f"[{'.'.join(table)}]" if table else "the file's top level"
                self.fail(
                    table,
                    key,
                    f"unknown key {key!r} in {place} (known: {', '.join(sorted(known))})",
                )

    def table(
        self, values: Mapping[str, Any], key: str, table: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        found = values.get(key, {})
        if not isinstance(found, dict):
            self.fail(table, key, f"{key!r} must be a table")
        return found

    def text(self, table: tuple[str, ...], key: str, value: Any) -> str:
        if not isinstance(value, str):
            self.fail(table, key, f"{key!r} must be a string")
        return value

    def port(self, table: tuple[str, ...], key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
            self.fail(table, key, f"{key!r} must be a port number (0 to 65535), not {value!r}")
        return value


def _rate_limit(file: _File, table: Mapping[str, Any]) -> RateLimitConfig:
    file.check_keys(("rate_limit",), table, frozenset(RATE_LIMIT_KEYS))
    values = {
        key: file.text(("rate_limit",), key, table[key]) for key in RATE_LIMIT_KEYS if key in table
    }
    for key in RATE_LIMIT_KEYS:
        if (override := os.environ.get(f"CLEAVE_RATE_LIMIT_{key.upper()}")) is not None:
            values[key] = override
    return RateLimitConfig(**values)


def _topology(file: _File, name: str, table: Mapping[str, Any], services: list[str]) -> Topology:
    where = ("topology", name)
    file.check_keys(where, table, TOPOLOGY_KEYS)
    units_spec = table.get("units", {ALL_SERVICES: [ALL_SERVICES]})
    if units_spec == "one-per-service":
        units: dict[str, tuple[str, ...]] = {service: (service,) for service in services}
    elif isinstance(units_spec, dict):
        units = {}
        for unit, members in units_spec.items():
            if not isinstance(members, list):
                file.fail(where, "units", f"unit {unit!r} of topology {name!r} is not a list")
            units[unit] = tuple(services) if list(members) == [ALL_SERVICES] else tuple(members)
    else:
        file.fail(where, "units", 'units must be a table of lists or "one-per-service"')
    placed = [service for members in units.values() for service in members]
    for service in placed:
        if service not in services:
            raise ConfigError(f"topology {name!r} places unknown service {service!r}")
    if missing := sorted(set(services) - set(placed)):
        raise ConfigError(f"topology {name!r} places no unit for {', '.join(missing)}")
    if len(placed) != len(set(placed)):
        raise ConfigError(f"topology {name!r} places a service in two units")
    for key in ("broker", "database", "host", "admin_url", "grpc_tls"):
        if key in table:
            file.text(where, key, table[key])
    ports = {
        key: file.port(where, key, table[key])
        for key in ("http_port", "grpc_port", "metrics_port")
        if key in table
    }
    pool_size = table.get("pool_size", 5)
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
        file.fail(where, "pool_size", f"pool_size must be a whole number from 1, not {pool_size!r}")
    databases = file.table(table, "databases", where)
    for service, url in databases.items():
        if service not in services:
            file.fail((*where, "databases"), service, f"a database for unknown service {service!r}")
        file.text((*where, "databases"), service, url)
    addresses = {
        unit: UnitAddress.parse(file.text((*where, "addresses"), unit, text))
        for unit, text in file.table(table, "addresses", where).items()
    }
    for unit in addresses:
        if unit not in units:
            file.fail((*where, "addresses"), unit, f"an address for unknown unit {unit!r}")
    proxies = table.get("trusted_proxies", [])
    if not isinstance(proxies, list):
        file.fail(where, "trusted_proxies", "trusted_proxies must be a list of addresses")
    for entry in proxies:
        try:
            ipaddress.ip_network(str(entry), strict=False)
        except ValueError:
            file.fail(
                where, "trusted_proxies", f"{entry!r} in trusted_proxies is no address or network"
            )
    functions = table.get("functions", [])
    if not isinstance(functions, list) or not all(isinstance(unit, str) for unit in functions):
        file.fail(where, "functions", "functions must be a list of unit names")
    for unit in functions:
        if unit not in units:
            file.fail(where, "functions", f"functions names unknown unit {unit!r}")
    return Topology(
        name=name,
        units=units,
        broker=os.environ.get("CLEAVE_BROKER") or table.get("broker", "memory"),
        database=table.get("database", "sqlite+aiosqlite:///{var}/{service}.db"),
        databases=databases,
        host=table.get("host", "127.0.0.1"),
        http_port=ports.get("http_port", 8000),
        grpc_port=ports.get("grpc_port", 9000),
        metrics_port=ports.get("metrics_port") or None,
        addresses=addresses,
        pool_size=pool_size,
        admin_url=table.get("admin_url"),
        trusted_proxies=tuple(str(entry) for entry in proxies),
        grpc_tls=table.get("grpc_tls"),
        functions=tuple(dict.fromkeys(functions)),
    )
