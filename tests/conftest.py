"""Shared fixtures: a whole shop unit on a real database, SQLite or PostgreSQL, and tokens."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, async_playwright
from starlette.types import ASGIApp, Receive, Scope, Send

from cleave.auth.tokens import ADMIN_SCOPE, DevIssuer
from cleave.config import SystemConfig, UnitAddress, load_config
from cleave.errors import ConfigError
from cleave.files import private_dir
from cleave.messaging.broker import MemoryBroker
from cleave.runtime import Unit, load_services, site_service
from cleave.telemetry import configure_logging
from cleave.web.app import create_app, create_metrics_app
from shop.identity.domain import USER_SCOPES
from tests.services import POSTGRES, reachable

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI") == "true"
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

configure_logging(json_logs=True)

# Ports for the servers tests start: below the kernel's ephemeral range (32768 and up), where
# no outgoing connection takes one between the probe and the server's bind; each test worker
# walks its own stretch, from a random start, so two workers never pick the same one.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_PORTS = itertools.cycle(range(20000 + 3000 * _WORKER, 23000 + 3000 * _WORKER))
for _ in range(random.randrange(3000)):
    next(_PORTS)


def clean_environment() -> dict[str, str]:
    """This process's environment without Cleave's or OpenTelemetry's own variables: what a
    user's fresh shell would hand `cleave`."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("CLEAVE_", "OTEL_"))}


def run_cleave(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
    timeout: float = 60,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """`cleave ARGS` as a user types it, in a process of its own, its output captured as text;
    the one way the tests run the command line to completion."""
    return subprocess.run(
        [sys.executable, "-m", "cleave", *args],
        cwd=cwd,
        env=dict(env) if env is not None else None,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class StartedCleave:
    """A `cleave` left serving in a process of its own, its output (stderr too) going to `log`."""

    process: subprocess.Popen[bytes]
    base: str
    log: Path
    interrupted: bool = False

    def tail(self, characters: int = 5000) -> str:
        return self.log.read_text(errors="replace")[-characters:]

    def wait_until_ready(self, path: str = "/readyz", within: float = 60) -> None:
        """Until GET `path` answers 200; the test fails, showing the log's tail, if the process
        exits first or `within` seconds pass."""
        deadline = time.monotonic() + within
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"cleave exited early (code {self.process.returncode}):\n{self.tail()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.base + path, timeout=1).status_code == 200:
                    return
            if time.monotonic() > deadline:
                pytest.fail(f"cleave did not answer {path} within {within:.0f} s:\n{self.tail()}")
            time.sleep(0.1)

    def interrupt(self) -> None:
        """Ctrl-C, once: a second one would not let it finish stopping cleanly."""
        if not self.interrupted and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        self.interrupted = True

    def stop(self, within: float = 30) -> None:
        """Stopped as Ctrl-C stops it; killed if it has not stopped within `within` seconds."""
        self.interrupt()
        try:
            self.process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def started_cleave(
    *args: str,
    base: str,
    log: Path,
    env: Mapping[str, str],
    cwd: Path = ROOT,
    ready: str | None = "/readyz",
    within: float = 60,
) -> Iterator[StartedCleave]:
    """`cleave ARGS` (`up`, `run`) as a user types it, left serving at `base`: yielded once GET
    `ready` answers 200 (at once if None), stopped on the way out; the one way the tests start
    a server of the command line."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "cleave", *args],
            cwd=cwd,
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    started = StartedCleave(process, base, log)
    try:
        if ready is not None:
            started.wait_until_ready(ready, within)
        yield started
    finally:
        started.stop()


def free_port() -> int:
    """A port nothing on this machine listens on now, and that this process has not handed out
    in its last three thousand."""
    for port in _PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("unreachable: the cycle of ports never ends")


def unit_address() -> str:
    """`CLEAVE_ADDRESS_<UNIT>` with its own free HTTP, gRPC and metrics ports: without the last,
    a unit serves metrics on the base port + its index, which nothing has checked is free."""
    return f"127.0.0.1:{free_port()}:{free_port()}:{free_port()}"


@pytest.hookimpl(optionalhook=True)  # xdist's hook: absent under -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """In parallel runs the end-to-end tests that share the session's README split run on one
    worker, which starts it once; every other end-to-end file is a group of its own, so the two
    workers share the systems to start and neither waits alone at the end.

    xdist's own grouping (the `xdist_group` marker) rewrites node ids, which pytest 9 ignores;
    this scheduler groups by the node id's path instead."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling  # type: ignore[import-untyped]

    class EndToEndByFile(LoadGroupScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            if not path.startswith("tests/e2e/"):
                return nodeid
            return "readme-split" if _shares_the_readme_split(path) else path

    return EndToEndByFile(config, log)


@functools.cache
def _shares_the_readme_split(path: str) -> bool:
    return "readme_split" in (ROOT / path).read_text()


def require(available: bool, message: str) -> None:
    """Skip when something the test needs is missing on a developer's machine; in CI, fail."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{message}, and CI must not skip it", pytrace=False)
    pytest.skip(f"{message} (outside CI only; make test sets it up)")  # CI fails above


def require_server(name: str, address: tuple[str, int]) -> None:
    require(reachable(address), f"{name} is not reachable on {address[0]}:{address[1]}")


class PostgresDatabases:
    """Throw-away databases, one per service, named uniquely so parallel checkouts never collide."""

    def __init__(self) -> None:
        self.prefix = f"cleave_t{uuid.uuid4().hex[:10]}"
        self.created: list[str] = []

    def name(self, service: str) -> str:
        return f"{self.prefix}_{service}"

    async def create(self, services: list[str]) -> None:
        connection = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            for service in services:
                await connection.execute(f'CREATE DATABASE "{self.name(service)}"')
                self.created.append(self.name(service))
        finally:
            await connection.close()

    async def drop(self) -> None:
        connection = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            for database in self.created:
                await connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            self.created.clear()
        finally:
            await connection.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        require_server("PostgreSQL", POSTGRES)
    return str(request.param)


def suite_config(var_root: Path) -> SystemConfig:
    """The shop's configuration as the service suites run it, with its state under `var_root`."""
    config = replace(load_config(ROOT / "cleave.toml"), var_root=var_root)
    settings = {name: dict(values) for name, values in config.settings.items()}
    # Fast deadlines keep failure paths quick; the behaviour under test is the same.
    settings.setdefault("ordering", {}).update(step_deadline_seconds=3.0, retry_seconds=0.05)
    settings.setdefault("payment", {}).update(processor_timeout_seconds=0.3)
    # The saga and service suites sign their tokens with the development key (a test fixture);
    # the identity suites run against the real provider instead.
    return replace(config, settings=settings, auth=replace(config.auth, issuer="urn:cleave:dev"))


@pytest.fixture(scope="session")
def dev_signing_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's development signing key: making a 2048-bit RSA key costs more than most
    tests, so each test's state starts with a copy of this one instead of making its own."""
    folder = tmp_path_factory.mktemp("dev-key")
    DevIssuer.load_or_create(folder, "urn:cleave:dev", "cleave")
    return folder / DevIssuer.FILE


@pytest.fixture
def base_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dev_signing_key: Path
) -> SystemConfig:
    for variable in ("CLEAVE_DATABASE", "CLEAVE_TOPOLOGY", "CLEAVE_CONFIG"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("CLEAVE_VAR", str(tmp_path / "var"))
    shutil.copy2(dev_signing_key, private_dir(tmp_path / "var") / DevIssuer.FILE)  # owner-only
    return suite_config(tmp_path / "var")


def on_postgres(config: SystemConfig, databases: PostgresDatabases) -> SystemConfig:
    database = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{databases.prefix}_{{service}}"
    return replace(config, topology=replace(config.topology, database=database))


SEQUENCES = "(sequences)"  # the key of a database's sequence values among its tables' rows


class MigratedShop:
    """The shop migrated and seeded once per session and backend; each test starts from that
    state, restored at a small part of the cost of migrating and seeding again (which hashes the
    demo users' passwords and makes keys). SQLite: a copy of the files. PostgreSQL: one set of
    databases for the session, emptied and refilled with the seeded rows before each test,
    because creating and dropping databases costs a checkpoint each on a busy server."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.databases = PostgresDatabases()
        self.built: set[str] = set()
        self.seeded_rows: dict[str, dict[str, tuple[list[str], list[Any]]]] = {}

    def var_root(self, backend: str) -> Path:
        return self.root / backend

    async def restore(self, config: SystemConfig, backend: str) -> SystemConfig:
        """`config` on the seeded state: its own files, or the session's emptied databases."""
        if backend == "postgresql":
            config = on_postgres(config, self.databases)
        if backend not in self.built:
            await self._build(config, backend)
            self.built.add(backend)
        # A file the test already has (the development signing key its tokens use) stays.
        for source in self.var_root(backend).rglob("*"):
            copy = config.var_root / source.relative_to(self.var_root(backend))
            if source.is_dir():
                copy.mkdir(parents=True, exist_ok=True)
            elif not copy.exists():
                shutil.copy2(source, copy)
        if backend == "postgresql":
            for service, tables in self.seeded_rows.items():
                await self._refill(self.databases.name(service), tables)
        return config

    async def _build(self, config: SystemConfig, backend: str) -> None:
        if backend == "postgresql":
            await self.databases.create(list(config.services))
        built = Unit(replace(config, var_root=self.var_root(backend)))
        try:
            await built.migrate()
            await built.seed()
        finally:
            await built.stop()
        if backend == "postgresql":
            for service in config.services:
                self.seeded_rows[service] = await self._rows(self.databases.name(service))

    @staticmethod
    async def _rows(database: str) -> dict[str, tuple[list[str], list[Any]]]:
        connection = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{database}")
        try:
            names = await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            )
            rows: dict[str, tuple[list[str], list[Any]]] = {}
            for (table,) in names:
                records = await connection.fetch(f'SELECT * FROM "{table}"')
                columns = list(records[0].keys()) if records else []
                rows[table] = (columns, [tuple(record) for record in records])
            # Each sequence where seeding left it, so the next row gets the id it would have.
            sequences = await connection.fetch(
                "SELECT schemaname || '.' || sequencename, coalesce(last_value, start_value), "
                "last_value IS NOT NULL FROM pg_sequences WHERE schemaname = 'public'"
            )
            rows[SEQUENCES] = ([], [tuple(sequence) for sequence in sequences])
            return rows
        finally:
            await connection.close()

    @staticmethod
    async def _refill(database: str, tables: dict[str, tuple[list[str], list[Any]]]) -> None:
        connection = await asyncpg.connect(PG_ADMIN_DSN)
        try:  # a connection the last test left open must not hold a lock on its tables
            await connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
        finally:
            await connection.close()
        connection = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{database}")
        try:
            async with connection.transaction():
                await connection.execute("SET LOCAL lock_timeout = '10s'")
                # DELETE, not TRUNCATE: for a few rows it is far cheaper (no new files to sync),
                # and with triggers off (foreign keys included) the order of tables is free.
                await connection.execute("SET LOCAL session_replication_role = replica")
                for table in tables:
                    if table != SEQUENCES:
                        await connection.execute(f'DELETE FROM "{table}"')
                for table, (columns, records) in tables.items():
                    if table == SEQUENCES:
                        for name, value, called in records:
                            await connection.execute(
                                "SELECT setval($1, $2, $3)", name, value, called
                            )
                    elif records:
                        await connection.copy_records_to_table(
                            table, records=records, columns=columns
                        )
        finally:
            await connection.close()


@pytest.fixture(scope="session")
def migrated_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MigratedShop]:
    shop = MigratedShop(tmp_path_factory.mktemp("migrated-shop"))
    yield shop
    if shop.databases.created:
        asyncio.run(shop.databases.drop())


@pytest.fixture
async def config(
    base_config: SystemConfig,
    backend: str,
    migrated_shop: MigratedShop,
    request: pytest.FixtureRequest,
) -> SystemConfig:
    """The shop's configuration on a migrated and seeded state of its own; a test marked
    `@pytest.mark.settings(service={...})` gets those service settings on top."""
    restored = await migrated_shop.restore(base_config, backend)
    marker = request.node.get_closest_marker("settings")
    if marker is None:
        return restored
    settings = {name: dict(values) for name, values in restored.settings.items()}
    for service, values in marker.kwargs.items():
        settings.setdefault(service, {}).update(values)
    return replace(restored, settings=settings)


# The shop's integration tests run under two wirings: the monolith's one unit, and the `split`
# topology with every service its own in-process unit, calling the others over loopback gRPC.
# The split runs on SQLite only (each service its own file, as in the monolith): what it proves
# is the wiring, and PostgreSQL's part is proven by the monolith on it.
BACKENDS_BY_WIRING = (("sqlite", "monolith"), ("postgresql", "monolith"), ("sqlite", "split"))
WIRED_SUITE = ROOT / "tests" / "integration"
# Fixtures of the monolith's one unit: a test that asks for them runs on the monolith only.
MONOLITH_ONLY = frozenset({"unit", "console"})


@pytest.hookimpl(tryfirst=True)  # its mark must be on the test before marks are applied
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The integration tests that reach the shop through `wired` or `client` (and not through
    the monolith's `unit`) run on each (backend, wiring) pair of BACKENDS_BY_WIRING."""
    names = set(metafunc.fixturenames)
    if "wiring" not in names or names & MONOLITH_ONLY:
        return
    if not metafunc.definition.path.is_relative_to(WIRED_SUITE):
        return
    # A mark, not a call: the `backend` fixture's own params then stand aside, as for any test
    # that parametrizes its backend itself.
    metafunc.definition.add_marker(
        pytest.mark.parametrize(
            ("backend", "wiring"),
            BACKENDS_BY_WIRING,
            indirect=True,
            ids=[f"{backend}-{wiring}" for backend, wiring in BACKENDS_BY_WIRING],
        )
    )


@pytest.fixture
def wiring(request: pytest.FixtureRequest) -> str:
    """How the shop's units are wired: the monolith, unless the test runs under both."""
    return str(getattr(request, "param", "monolith"))


def in_process(config: SystemConfig, topology: str) -> SystemConfig:
    """The named topology on the monolith's state (its SQLite files, its demo credentials: its
    folder is linked as the topology's own) and the in-process broker, every unit on a free gRPC
    port of loopback."""
    state = config.var_root / topology
    if not state.exists():  # without the credentials, identity's seed hashes its secrets anew
        config.var_dir.mkdir(parents=True, exist_ok=True)
        state.symlink_to(config.var_dir, target_is_directory=True)
    chosen = config.topologies[topology]
    addresses = {unit: UnitAddress("127.0.0.1", 0, free_port()) for unit in chosen.units}
    sqlite = "sqlite+aiosqlite:///{var}/{service}.db"
    layout = replace(chosen, broker="memory", database=sqlite, addresses=addresses)
    return replace(config, topology=layout)


async def running_unit(stack: contextlib.AsyncExitStack, config: SystemConfig, name: str) -> Unit:
    """One unit of `config`'s topology, migrated, seeded and running; stopped with `stack`."""
    unit = Unit(config, name)
    await unit.prepare()
    await unit.start()
    stack.push_async_callback(unit.stop)
    return unit


@dataclass
class WiredShop:
    """The shop's units under one wiring (its topology's name), and one HTTP entry in front of
    them that routes as the gateway does, in process: `/api/<service>/...` to the app of the unit
    that holds the service, every other path (pages, health, unknown services) to the site's."""

    config: SystemConfig
    units: dict[str, Unit]
    apps: dict[str, ASGIApp] = field(default_factory=dict)  # each unit's, made when first used

    @property
    def wiring(self) -> str:
        return self.config.topology.name

    def unit_of(self, service: str) -> Unit:
        return self.units[self.config.topology.unit_of(service)]

    def app_of(self, unit: str) -> ASGIApp:
        if unit not in self.apps:
            self.apps[unit] = create_app(self.units[unit], start_unit=False)
        return self.apps[unit]

    @functools.cached_property
    def site(self) -> str:
        return site_service(load_services(self.config)) or next(iter(self.config.services))

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        parts = str(scope.get("path", "")).split("/", 3)
        api = len(parts) > 2 and parts[1] == "api" and parts[2] in self.config.services
        unit = self.config.topology.unit_of(parts[2] if api else self.site)
        await self.app_of(unit)(scope, receive, send)

    def client(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app)
        return httpx.AsyncClient(transport=transport, base_url="http://shop.test")


@contextlib.asynccontextmanager
async def running_units(
    config: SystemConfig, fakes: Mapping[type, object] | None = None
) -> AsyncIterator[WiredShop]:
    """Every unit of `config`'s topology in this process: migrated, seeded and running, on one
    in-process broker between them. Each fake goes to the units whose services call its port."""
    services = load_services(config)
    units = config.topology.units
    callers = {
        protocol: [
            u for u, names in units.items() if any(protocol in services[n].calls for n in names)
        ]
        for protocol in fakes or {}
    }
    if unused := [protocol.__name__ for protocol, where in callers.items() if not where]:
        raise ConfigError(f"no unit calls {', '.join(unused)}: its fake would replace nothing")
    broker = MemoryBroker() if config.topology.broker == "memory" else None
    async with contextlib.AsyncExitStack() as stack:
        shop = WiredShop(config, {})
        for name in units:  # all of them first, so each subscribes before any unit publishes
            faked = {p: fake for p, fake in (fakes or {}).items() if name in callers[p]}
            shop.units[name] = Unit(config, name, broker=broker, fakes=faked)
            stack.push_async_callback(shop.units[name].stop)
        for name, unit in shop.units.items():
            if len(units) > 1 and any(s.port and s.port.rpc for s in unit.services):
                # Its app before it starts, as `cleave up` makes it: the unit's gRPC server then
                # checks callers with the app's verifier instead of reading the key again.
                shop.app_of(name)
        for unit in shop.units.values():
            await unit.prepare()  # a no-op on the session's copy, but for a newer migration
        for unit in shop.units.values():
            await unit.start()
        yield shop


@pytest.fixture
def fakes() -> Mapping[type, object]:
    """Ports a module replaces with fakes (each checked against its Protocol): none by default."""
    return {}


@pytest.fixture
async def wired(
    config: SystemConfig, wiring: str, fakes: Mapping[type, object]
) -> AsyncIterator[WiredShop]:
    """The shop, migrated, seeded and running under the test's wiring."""
    async with running_units(
        config if wiring == "monolith" else in_process(config, wiring), fakes
    ) as shop:
        yield shop


@pytest.fixture
def unit(wired: WiredShop) -> Unit:
    """The monolith's one unit: migrated, seeded and running (relays and workers started). A
    test that asks for it runs on the monolith only; `wired.unit_of` serves both wirings."""
    [only] = wired.units.values()
    return only


@pytest.fixture
async def client(wired: WiredShop) -> AsyncIterator[httpx.AsyncClient]:
    async with wired.client() as http:
        yield http


@pytest.fixture
async def console(unit: Unit) -> AsyncIterator[httpx.AsyncClient]:
    """The monolith's console as its owner on loopback reads it: open, with no sign-in."""
    app = create_app(unit, start_unit=False, console=True, host="127.0.0.1")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        yield http


async def scrape(unit: Unit) -> str:
    """What Prometheus reads from the unit's own metrics port."""
    transport = httpx.ASGITransport(app=create_metrics_app(unit))
    async with httpx.AsyncClient(transport=transport, base_url="http://metrics.test") as http:
        answer = await http.get("/metrics")
        assert answer.status_code == 200
        return answer.text


@pytest.fixture
def issuer(base_config: SystemConfig) -> DevIssuer:
    return DevIssuer.load_or_create(
        base_config.var_root, base_config.auth.issuer, base_config.auth.audience
    )


@pytest.fixture
def admin_headers(issuer: DevIssuer) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.issue('admin', [ADMIN_SCOPE])}"}


@pytest.fixture
def customer_headers(issuer: DevIssuer) -> Callable[[str], dict[str, str]]:
    def headers(customer_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issuer.issue(customer_id, sorted(USER_SCOPES))}"}

    return headers


async def eventually(
    check: Callable[[], Awaitable[Any]], *, within: float = 10.0, interval: float = 0.02
) -> Any:
    """Poll until `check` returns a truthy value; the last falsy value fails the test."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s (last: {value!r})")
        await asyncio.sleep(interval)


@pytest.fixture(autouse=True)
def _no_exporter_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)


CHROMIUM = os.environ.get("CLEAVE_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's headless Chromium driven by Playwright; never a downloaded browser."""
    require(bool(shutil.which(CHROMIUM)), f"no browser at {CHROMIUM} (tests/browser.sh adds it)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            yield launched
        finally:
            await launched.close()
