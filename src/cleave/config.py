"""The system's configuration: `cleave.toml`, with environment overrides for deployment."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

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

    def unit_of(self, service: str) -> str:
        for unit, services in self.units.items():
            if service in services:
                return unit
        raise ConfigError(f"service {service!r} is in no unit of topology {self.name!r}")

    def address_of(self, unit: str) -> UnitAddress:
        """Where a unit listens: `addresses.<unit>` in the file, an environment override
        (`CLEAVE_ADDRESS_<UNIT>=host:http_port:grpc_port`, as Kubernetes sets it), or else
        consecutive ports after the topology's own `http_port` and `grpc_port`."""
        if unit not in self.units:
            raise ConfigError(f"unknown unit {unit!r} in topology {self.name!r}")
        override = os.environ.get(f"CLEAVE_ADDRESS_{unit.upper().replace('-', '_')}")
        if override:
            return UnitAddress.parse(override)
        if unit in self.addresses:
            return self.addresses[unit]
        if len(self.units) == 1:
            return UnitAddress(self.host, self.http_port, self.grpc_port)
        index = list(self.units).index(unit) + 1
        return UnitAddress(self.host, self.http_port + index, self.grpc_port + index)


@dataclass(frozen=True)
class UnitAddress:
    host: str
    http_port: int
    grpc_port: int

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @classmethod
    def parse(cls, text: str) -> UnitAddress:
        host, _, ports = text.partition(":")
        http_port, _, grpc_port = ports.partition(":")
        if not (host and http_port.isdigit() and grpc_port.isdigit()):
            raise ConfigError(f"address {text!r} is not host:http_port:grpc_port")
        return cls(host, int(http_port), int(grpc_port))


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
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: {error}") from None
    root = path.resolve().parent
    system = raw.get("system", {})
    services: dict[str, str] = dict(raw.get("services", {}))
    if not services:
        raise ConfigError(f"{path}: [services] lists no service")
    topologies = {
        name: _topology(name, table, list(services))
        for name, table in raw.get("topology", {}).items()
    }
    if not topologies:
        raise ConfigError(f"{path}: no [topology.<name>] table")
    var_root = Path(os.environ.get("CLEAVE_VAR") or root / "var")
    auth = raw.get("auth", {})
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
        settings=raw.get("settings", {}),
        rate_limit=_rate_limit(path, raw.get("rate_limit", {})),
    )
    return config.with_topology(chosen) if chosen else config


def _rate_limit(path: Path, table: Mapping[str, Any]) -> RateLimitConfig:
    keys = ("per_address", "per_principal", "storage")
    if unknown := sorted(set(table) - set(keys)):
        raise ConfigError(f"{path}: [rate_limit] has no key {unknown[0]!r}")
    values = {key: str(table[key]) for key in keys if key in table}
    for key in keys:
        if (override := os.environ.get(f"CLEAVE_RATE_LIMIT_{key.upper()}")) is not None:
            values[key] = override
    return RateLimitConfig(**values)


def _topology(name: str, table: Mapping[str, Any], services: list[str]) -> Topology:
    units_spec = table.get("units", {ALL_SERVICES: [ALL_SERVICES]})
    if units_spec == "one-per-service":
        units: dict[str, tuple[str, ...]] = {service: (service,) for service in services}
    else:
        units = {}
        for unit, members in dict(units_spec).items():
            units[unit] = tuple(services) if list(members) == [ALL_SERVICES] else tuple(members)
    placed = [service for members in units.values() for service in members]
    for service in placed:
        if service not in services:
            raise ConfigError(f"topology {name!r} places unknown service {service!r}")
    if missing := sorted(set(services) - set(placed)):
        raise ConfigError(f"topology {name!r} places no unit for {', '.join(missing)}")
    if len(placed) != len(set(placed)):
        raise ConfigError(f"topology {name!r} places a service in two units")
    addresses = {
        unit: UnitAddress.parse(str(text))
        for unit, text in dict(table.get("addresses", {})).items()
    }
    if unknown_units := sorted(set(addresses) - set(units)):
        raise ConfigError(f"topology {name!r} gives addresses to unknown units: {unknown_units}")
    return Topology(
        name=name,
        units=units,
        broker=os.environ.get("CLEAVE_BROKER") or table.get("broker", "memory"),
        database=table.get("database", "sqlite+aiosqlite:///{var}/{service}.db"),
        databases=dict(table.get("databases", {})),
        host=table.get("host", "127.0.0.1"),
        http_port=int(table.get("http_port", 8000)),
        grpc_port=int(table.get("grpc_port", 9000)),
        addresses=addresses,
        pool_size=int(table.get("pool_size", 5)),
        admin_url=table.get("admin_url"),
    )
