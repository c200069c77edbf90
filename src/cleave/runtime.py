"""A unit: the services that share one process, wired to their databases, ports and broker."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

import httpx
import structlog
from pydantic import ValidationError
from starlette.types import ASGIApp

from cleave.auth.oidc import OidcKeySource
from cleave.auth.revocation import (
    RELOAD_SECONDS,
    REVOCATION_EVENTS,
    Revocation,
    RevocationList,
    fetch_revocations,
    revocation_queue,
)
from cleave.auth.tokens import DevIssuer, TokenVerifier
from cleave.auth.units import (
    UNIT_SCOPE,
    UnitTokens,
    client_credentials,
    ensure_unit_secrets,
    unit_client_id,
    unit_secret,
)
from cleave.config import DOCS_OAUTH2_REDIRECT_PATH, SELF_ISSUER, SystemConfig
from cleave.data.database import Database
from cleave.data.migrate import upgrade  # Alembic itself only once a migration is due
from cleave.errors import ConfigError, ServiceUnavailable
from cleave.events import Envelope
from cleave.files import private_dir
from cleave.messaging.adapters import create_broker
from cleave.messaging.broker import Broker
from cleave.messaging.consumer import Consumer
from cleave.messaging.relay import OutboxRelay
from cleave.service import PortRegistry, Service, ServiceContext
from cleave.service.context import CONSOLE_CALLBACK_PATH, CONSOLE_CLIENT, SystemFacts, check_fake

if TYPE_CHECKING:
    from cleave.rpc.client import RemotePort
    from cleave.rpc.server import RpcServer
    from cleave.rpc.tls import UnitTls

log = structlog.get_logger("cleave.runtime")

# The first fill of a unit's revocations is retried after this, doubling up to the most.
FIRST_FILL_RETRY_SECONDS = 0.2
FIRST_FILL_RETRY_MOST_SECONDS = 1.0


def load_services(config: SystemConfig) -> dict[str, Service]:
    """Import each service's declaration from the import path `cleave.toml` gives it."""
    services: dict[str, Service] = {}
    for name, target in config.services.items():
        module_name, _, attribute = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ConfigError(f"service {name!r}: cannot import {module_name!r}: {error}") from None
        service = getattr(module, attribute or "service", None)
        if not isinstance(service, Service):
            raise ConfigError(f"service {name!r}: {target!r} is not a cleave Service")
        if service.name != name:
            raise ConfigError(f"service {name!r}: {target!r} declares itself {service.name!r}")
        services[name] = service
    if len(site := [name for name, service in services.items() if service.pages]) > 1:
        raise ConfigError(f"only one service may serve the site's pages, not {', '.join(site)}")
    return services


def wiring_problems(config: SystemConfig) -> list[str]:
    """What the topology cannot wire, one line each: a port call whose provider is missing or,
    in another unit, has no rpc contract; an event no service publishes, or one that must cross
    units on the in-process broker (as must the provider's revocations, to every unit)."""
    services = load_services(config)
    layout = config.topology
    local_broker = config.topology.broker == "memory"
    providers = {s.port.protocol: s.port for s in services.values() if s.port is not None}
    provider_of = {s.port.protocol: name for name, s in services.items() if s.port is not None}
    problems = []
    for name, service in services.items():
        unit = layout.unit_of(name)
        for protocol in service.calls:
            if protocol not in providers:
                problems.append(f"{name} calls {protocol.__name__}, which no service provides")
                continue
            provider = provider_of[protocol]
            if layout.unit_of(provider) != unit and providers[protocol].rpc is None:
                problems.append(
                    f"{name} (unit {unit}) calls {protocol.__name__} of {provider} (unit "
                    f"{layout.unit_of(provider)}), whose port declares no rpc contract"
                )
        for subscription in service.subscriptions:
            publishers = [s for s, p in services.items() if subscription.event in p.publishes]
            if not publishers:
                problems.append(
                    f"{name} subscribes to {subscription.event.event_type}, which no service "
                    "publishes"
                )
            for publisher in publishers:
                if local_broker and layout.unit_of(publisher) != unit:
                    problems.append(
                        f"{name} (unit {unit}) subscribes to {subscription.event.event_type} of "
                        f"{publisher} (unit {layout.unit_of(publisher)}), but the broker "
                        "'memory' carries events only within one process"
                    )
    if config.auth.provider in services and local_broker and len(layout.units) > 1:
        problems.append(
            f"every unit subscribes to {config.auth.provider}'s revocations, but the broker "
            "'memory' carries events only within one process"
        )
    return problems


def site_service(services: Mapping[str, Service]) -> str | None:
    """The service that serves the site's pages at `/`, if any."""
    return next((name for name, service in services.items() if service.pages), None)


def system_facts(config: SystemConfig) -> SystemFacts:
    """What every service of this system may know of it."""
    return SystemFacts(
        public_url=config.public_url,
        issuer=config.self_issuer,
        audience=config.auth.audience,
        trusted_issuer=config.issuer,
        state_dir=config.var_dir,
        docs_client=config.auth.docs_client,
        docs_redirect_uri=config.public_url + DOCS_OAUTH2_REDIRECT_PATH,
        console_client=CONSOLE_CLIENT,
        console_redirect_uri=config.public_url + CONSOLE_CALLBACK_PATH,
    )


def welcome_lines(config: SystemConfig) -> list[str]:
    """What each service wants the person who has just started the system to know."""
    facts = system_facts(config)
    return [service.welcome(facts) for service in load_services(config).values() if service.welcome]


def build_verifier(
    config: SystemConfig,
    *,
    local_app: ASGIApp | None = None,
    revocations: RevocationList | None = None,
) -> TokenVerifier:
    """The token verifier every service of a unit uses: the configured issuer's discovery
    document and JWKS, and the unit's revocation list. With `local_app`, the unit serves the
    provider itself, so its keys are read in-process through the same HTTP routes, with no
    socket and no wait on the listener."""
    issuer = config.issuer
    if issuer.startswith(("http://", "https://")):
        transport = httpx.ASGITransport(app=local_app) if local_app is not None else None
        keys = OidcKeySource(
            issuer, transport=transport, refresh_interval=config.auth.jwks_refresh_seconds
        )
        return TokenVerifier(
            issuer,
            config.auth.audience,
            keys,
            algorithms=config.auth.algorithms,
            revocations=revocations,
        )
    if config.auth.issuer == SELF_ISSUER:
        raise ConfigError(f"the public URL {config.public_url!r} is not an http(s) URL")
    # Any other issuer is the development key in var/: a test fixture, never a deployment.
    # One development key for every topology of the folder: tests sign once, whichever they run.
    dev = DevIssuer.load_or_create(config.var_root, issuer, config.auth.audience)
    return TokenVerifier(issuer, config.auth.audience, dev, revocations=revocations)


def build_unit_tokens(config: SystemConfig, unit: str) -> UnitTokens:
    """The tokens a unit sends with its calls to other units: client credentials from the
    configured issuer, or, with the development issuer of tests, tokens it signs with its key."""
    client_id = unit_client_id(unit)
    issuer = config.issuer
    if issuer.startswith(("http://", "https://")):
        fetch = client_credentials(issuer, client_id, lambda: unit_secret(config.var_dir, unit))
        return UnitTokens(client_id, fetch)
    dev = DevIssuer.load_or_create(config.var_root, issuer, config.auth.audience)
    lifetime = 600

    async def sign() -> tuple[str, float]:
        token = dev.issue(client_id, [UNIT_SCOPE], ttl_seconds=lifetime, client_id=client_id)
        return token, float(lifetime)

    return UnitTokens(client_id, sign)


class _RetriedFailure:
    """A failure a loop keeps retrying, logged once per distinct error and once when it ends:
    the same line every fraction of a second would bury everything else."""

    def __init__(self, failing: str, recovered: str, unit: str) -> None:
        self.failing, self.recovered, self.unit = failing, recovered, unit
        self.error: str | None = None

    def failed(self, error: str) -> None:
        if error != self.error:
            log.warning(self.failing, unit=self.unit, error=error)
            self.error = error

    def ended(self) -> None:
        if self.error is not None:
            log.info(self.recovered, unit=self.unit)
            self.error = None


class Unit:
    """One process's worth of services. In the monolith, every service."""

    def __init__(
        self,
        config: SystemConfig,
        name: str | None = None,
        *,
        broker: Broker | None = None,
        max_attempts: int = 5,
        fakes: Mapping[type, object] | None = None,
    ) -> None:
        """`fakes` (tests only) replace ports this unit's services call, each checked against
        its Protocol: the callers get the fake, local or remote as the port would have been."""
        self.config = config
        for state in (config.var_root, config.var_dir):
            if state.exists():  # made by an older version, or checked out: owner-only now
                private_dir(state)
        units = config.topology.units
        self.name = name or next(iter(units))
        if self.name not in units:
            raise ConfigError(f"unknown unit {self.name!r} in topology {config.topology.name!r}")
        every_service = load_services(config)
        self.every_service = every_service
        self.services = [every_service[service] for service in units[self.name]]
        self.broker = broker or create_broker(config.topology.broker)
        self.ports = PortRegistry()
        self.contexts: dict[str, ServiceContext] = {}
        facts = system_facts(config)
        for service in self.services:
            database = Database(
                service.name,
                config.database_url(service.name),
                pool_size=config.topology.pool_size,
            )
            self.contexts[service.name] = ServiceContext(
                service,
                database,
                self.ports,
                config.service_settings(service.name),
                system=facts,
            )
        called = {protocol for service in self.services for protocol in service.calls}
        for protocol, fake in (fakes or {}).items():
            if protocol not in called:
                raise ConfigError(
                    f"a fake {protocol.__name__} in unit {self.name!r}, whose services do not "
                    "call it: it would replace nothing"
                )
            check_fake(protocol, fake)
            self.ports.bind(protocol, fake)
        for service in self.services:
            if service.port is not None and not self.ports.provides(service.port.protocol):
                self.ports.bind(
                    service.port.protocol, service.port.factory(self.contexts[service.name])
                )
        self.remote_ports: list[RemotePort] = []
        # This unit's own credentials for calls to other units, made with its first remote port.
        self.tokens: UnitTokens | None = None
        # The verifier of the unit's HTTP app, shared with its gRPC server when it has one.
        self.verifier: TokenVerifier | None = None
        for service in self.services:
            for protocol in service.calls:
                if not self.ports.provides(protocol):
                    self.ports.bind(protocol, self._remote(service, protocol, every_service))
        self.rpc_server: RpcServer | None = None
        self.consumers = {
            service.name: Consumer(
                self.contexts[service.name], service.subscriptions, max_attempts=max_attempts
            )
            for service in self.services
        }
        for service_name, consumer in self.consumers.items():
            if consumer.types:
                self.broker.subscribe(service_name, consumer.types, consumer.deliver)
        self.relays = {
            name: OutboxRelay(context, self.broker) for name, context in self.contexts.items()
        }
        # What the provider revoked: refused by this unit's verifier, whatever services it runs.
        # An outside issuer lists nothing to wait for, nor does a system without its provider
        # (a toy of tests and benchmarks); the system's own provider does.
        listed = bool(config.auth.provider) and config.auth.provider in config.services
        self.revocations = RevocationList(loader=self._revocations_in_force if listed else None)
        if config.auth.provider:
            # A broadcast: each replica of this unit keeps its own list, so each needs every event.
            self.broker.subscribe(
                revocation_queue(self.name),
                [event.event_type for event in REVOCATION_EVENTS],
                self.apply_revocation,
                broadcast=True,
            )
        self._reload_failure = _RetriedFailure(
            "revocations not read again", "revocations read again", self.name
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def apply_revocation(self, envelope: Envelope) -> None:
        """A revocation event, applied to the list in memory: idempotent, so no inbox."""
        for event in REVOCATION_EVENTS:
            if event.event_type == envelope.type:
                try:
                    revocation = Revocation.of(event.model_validate(envelope.data))
                except ValidationError as error:
                    # Redelivery cannot mend it, and this list has no dead-letter table: say so.
                    log.error("malformed revocation dropped", id=envelope.id, error=str(error))
                    return
                self.revocations.add(revocation)

    async def _revocations_in_force(self) -> list[Revocation]:
        """The revocations in force: from the provider's own declaration when it runs here,
        else from its listing, read with this unit's token."""
        provider = self.contexts.get(self.config.auth.provider)
        if provider is not None and provider.service.lists_revocations is not None:
            return await provider.service.lists_revocations(provider)
        if self.config.auth.issuer != SELF_ISSUER or len(self.config.topology.units) < 2:
            return []  # a development issuer (tests): no provider of ours issues its tokens
        if self.tokens is None:
            self.tokens = build_unit_tokens(self.config, self.name)
        return await fetch_revocations(self.config.issuer, await self.tokens.token())

    async def keep_revocations_loaded(self, every: float = RELOAD_SECONDS) -> None:
        """Fill the list before the first request needs it, retrying until the provider answers
        (in the split it is reached through the gateway, which starts once every unit is ready,
        so readiness cannot wait for this); then read it again every `every` seconds."""
        delay = FIRST_FILL_RETRY_SECONDS
        first_fill = _RetriedFailure("revocations not loaded yet", "revocations loaded", self.name)
        while True:
            try:
                await self.revocations.ensure_loaded()
                first_fill.ended()
                break
            except ServiceUnavailable as error:
                first_fill.failed(error.detail)
            await asyncio.sleep(delay)
            delay = min(delay * 2, FIRST_FILL_RETRY_MOST_SECONDS)
        while True:
            await asyncio.sleep(every)
            await self._reload_revocations()

    async def _reload_revocations(self) -> None:
        try:
            await self.revocations.reload()
        except ServiceUnavailable as error:
            self._reload_failure.failed(error.detail)
        else:
            self._reload_failure.ended()

    def _remote(self, caller: Service, protocol: type, every_service: dict[str, Service]) -> object:
        """The port of a service in another unit, called over gRPC (imported only when needed)."""
        provider = next(
            (s for s in every_service.values() if s.port and s.port.protocol is protocol), None
        )
        if provider is None or provider.port is None:
            raise ConfigError(f"{caller.name} calls {protocol.__name__}, which no service provides")
        if provider.port.rpc is None:
            raise ConfigError(
                f"{caller.name} calls {protocol.__name__} of {provider.name}, which runs in "
                "another unit but declares no rpc contract for its port"
            )
        from cleave.rpc.client import RemotePort
        from cleave.rpc.contract import RpcContract

        address = self.config.topology.address_of(self.config.topology.unit_of(provider.name))
        if self.tokens is None:
            self.tokens = build_unit_tokens(self.config, self.name)
        port = RemotePort(
            RpcContract.of(protocol, provider.port.rpc),
            address.grpc,
            service=provider.name,
            tokens=self.tokens,
            tls=self._tls(),
        )
        self.remote_ports.append(port)
        return port

    async def _serve_rpc(self) -> None:
        """Serve this unit's ports over gRPC when other units may call them."""
        offered = [s for s in self.services if s.port is not None and s.port.rpc is not None]
        if len(self.config.topology.units) < 2 or not offered:
            return
        from cleave.rpc.contract import RpcContract
        from cleave.rpc.server import RpcServer, ServedPort

        served = [
            ServedPort(
                s.name,
                RpcContract.of(s.port.protocol, s.port.rpc),
                self.ports.get(s.port.protocol),
                callers=self._callers(s.port.protocol),
            )
            for s in offered
            if s.port is not None and s.port.rpc is not None
        ]
        self.rpc_server = RpcServer(
            self.config.topology.address_of(self.name).grpc,
            served,
            verifier=self.verifier or build_verifier(self.config, revocations=self.revocations),
            tls=self._tls(),
        )
        await self.rpc_server.start()

    def _tls(self) -> UnitTls | None:
        """This unit's gRPC certificate, when the topology turns TLS on."""
        from cleave.rpc.tls import UnitTls

        folder = self.config.grpc_tls_dir
        return UnitTls.load(folder, self.name) if folder is not None else None

    def _callers(self, protocol: type) -> frozenset[str]:
        """The client ids of the other units whose services declare calls to `protocol`."""
        return frozenset(
            unit_client_id(unit)
            for unit, services in self.config.topology.units.items()
            if unit != self.name
            and any(self.every_service[service].may_call(protocol) for service in services)
        )

    def context(self, service: str) -> ServiceContext:
        try:
            return self.contexts[service]
        except KeyError:
            raise ConfigError(f"service {service!r} does not run in unit {self.name!r}") from None

    async def migrate(self, only: str | None = None) -> dict[str, list[str]]:
        applied: dict[str, list[str]] = {}
        for service in self.services:
            if only is None or service.name == only:
                context = self.contexts[service.name]
                applied[service.name] = await upgrade(
                    service.name, service.migrations, context.database
                )
        return applied

    async def seed(self) -> dict[str, int]:
        """Run each service's seeder; seeders add only what is missing, so seeding twice is safe."""
        return await self.prepare(migrate=False)

    async def prepare(self, *, migrate: bool = True, seed: bool = True) -> dict[str, int]:
        """Migrate each service in turn (Alembic's context is global: one at a time) and seed each
        once it is migrated, while the next migrates: a seeder may wait on threads (hashing the
        demo passwords is most of a first start). Returns how much each seeder added."""
        seeding: dict[str, asyncio.Future[int]] = {}
        try:
            for service in self.services:
                context = self.contexts[service.name]
                if migrate:
                    await upgrade(service.name, service.migrations, context.database)
                if seed and service.seed is not None:
                    seeding[service.name] = asyncio.ensure_future(service.seed(context))
        except BaseException:
            for task in seeding.values():
                task.cancel()
            await asyncio.gather(*seeding.values(), return_exceptions=True)
            raise
        seeded: dict[str, int] = {}
        outcomes = await asyncio.gather(*seeding.values(), return_exceptions=True)
        for name, outcome in zip(seeding, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                raise outcome
            seeded[name] = outcome
        return seeded

    async def register_unit_clients(self) -> int:
        """When this unit runs the system's own provider, register every unit's confidential
        client there (in a topology of several units), each secret given in the environment or
        kept owner-only in var/; returns how many clients changed. Done at every start, not as
        demo data: calls between units depend on it."""
        provider = self.contexts.get(self.config.auth.provider)
        if self.config.auth.issuer != SELF_ISSUER or provider is None:
            return 0
        registrar = provider.service.registers_clients
        units = self.config.topology.units
        if registrar is None or len(units) < 2:
            return 0
        changed = 0
        for client_id, secret in ensure_unit_secrets(self.config.var_dir, units).items():
            changed += await registrar(provider, client_id, frozenset({UNIT_SCOPE}), secret)
        return changed

    async def start(self, *, background: bool = True) -> None:
        """Start the broker, then the unit's background work. Without `background` (a unit
        served as a function, frozen between invocations) nothing runs on its own: no gRPC
        listener, relay, worker or revocation reload; `tick` does their due work instead."""
        if registered := await self.register_unit_clients():
            log.info("unit clients registered", changed=registered, unit=self.name)
        await self.broker.start()
        if not background:
            return
        if self.config.auth.provider:
            self._spawn("revocations.load", self.keep_revocations_loaded)
        await self._serve_rpc()
        for name, relay in self.relays.items():
            self._spawn(f"{name}.relay", relay.run)
        for service in self.services:
            context = self.contexts[service.name]
            for worker in service.workers:
                self._spawn(f"{service.name}.{worker.__name__}", _bind(worker, context))

    async def tick(self) -> dict[str, int]:
        """One round of the background work, run by a scheduler: the revocations read again,
        each service's ticks (its sagas due now), then every outbox's pending rows delivered;
        returns how many events each service published. A failing part does not stop the rest."""
        if self.config.auth.provider:
            await self._reload_revocations()
        for service in self.services:
            for tick in service.ticks:
                try:
                    await tick(self.contexts[service.name])
                except Exception:
                    log.exception("tick failed", service=service.name, tick=tick.__name__)
        published: dict[str, int] = {}
        for name, relay in self.relays.items():
            try:
                published[name] = await relay.deliver_pending()
            except Exception:
                log.exception("relay tick failed", service=name)
        return published

    async def stop(self) -> None:
        if self.rpc_server is not None:
            await self.rpc_server.stop()
            self.rpc_server = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.broker.close()
        for port in self.remote_ports:
            await port.close()
        for context in self.contexts.values():
            await context.stop()
            await context.database.dispose()

    async def readiness(self) -> Mapping[str, str | None]:
        """Each service's database: None when it answers, else why not."""

        async def check(context: ServiceContext) -> str | None:
            try:
                async with asyncio.timeout(2):
                    await context.database.ping()
            except Exception as error:
                return str(error) or type(error).__name__
            return None

        results = await asyncio.gather(*(check(context) for context in self.contexts.values()))
        return dict(zip(self.contexts, results, strict=True))

    def _spawn(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        self._tasks.append(asyncio.create_task(_supervise(name, run), name=name))


def _bind(
    worker: Callable[[ServiceContext], Awaitable[None]], context: ServiceContext
) -> Callable[[], Awaitable[None]]:
    return lambda: worker(context)


async def _supervise(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Keep a background task alive: a crash is logged and the task restarts after a pause."""
    delay = 0.1
    while True:
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task crashed; restarting", task=name, delay=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
