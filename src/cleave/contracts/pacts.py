"""Consumer-driven contracts: the pact files under `contracts/pacts/`, one per consumer and
provider, and their verification against each provider's real code.

A consumer's tests write its pact (Pact specification V4) from what its code really reads; the
provider proves it still satisfies it here: an event message is produced by the provider's own
event model and publisher encoding, a synchronous message (a port call) is answered by the
provider's real local implementation of its port on a database of its own, migrated and seeded,
and an HTTP request is replayed against the provider's ASGI app. `pact-python` is a development
tool: only the commands that verify import it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import tempfile
import threading
from collections.abc import Awaitable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cleave.auth.tokens import DevIssuer
from cleave.config import SystemConfig
from cleave.contracts.messages import ContractGap, answer_call, event_message, example_event
from cleave.errors import CleaveError, ConfigError
from cleave.runtime import Unit, load_services
from cleave.service import Service

if TYPE_CHECKING:
    import pact
    import uvicorn
    from pact.types import Message

T = TypeVar("T")

PACT_DIR = Path("contracts") / "pacts"
EVENT_MESSAGE = "Asynchronous/Messages"
PORT_CALL = "Synchronous/Messages"
HTTP_CALL = "Synchronous/HTTP"
# A provider state that a port call sets up: the call itself, done first ("<method> was
# called" with the call's arguments as parameters), so no provider needs state code of its own.
CALLED = " was called"
# A provider state for a token request: the client (`client_id`, `scopes`, `secret`) exists.
CLIENT_REGISTERED = "a client was registered"
# A provider state for requests made as a person (`subject`, `scopes`): they carry a token for
# them, from the development issuer the provider under verification trusts.
SIGNED_IN = "a person is signed in"
# A provider state made by a request to the provider's own app first (`method`, `path`, `body`,
# `headers`), as that person (or as `subject`, another person): the order a listing then
# shows, say. Its answer's fields are the state's values (`${id}` in a provider-state generator).
REQUESTED = "a request was made"
# Where the verifier asks an HTTP provider to set up a state, beside the provider's own app.
STATE_PATH = "/_pact/state"
CONTRACTS_ISSUER = "urn:cleave:contracts"
CALL_TIMEOUT_SECONDS = 30.0
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class PactFile:
    """One consumer's pact with one provider, and the version its content hashes to."""

    consumer: str
    provider: str
    content: Mapping[str, Any]

    @classmethod
    def read(cls, path: Path) -> PactFile:
        try:
            content = json.loads(path.read_text())
            return cls(content["consumer"]["name"], content["provider"]["name"], content)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"{path} is not a pact file: {error}") from None

    @property
    def interactions(self) -> list[Mapping[str, Any]]:
        return list(self.content.get("interactions", []))

    @property
    def version(self) -> str:
        """The content's hash, as a Pact Broker versions a pact: what the consumer expects, not
        which library wrote it."""
        expectations = {
            "consumer": self.consumer,
            "provider": self.provider,
            "interactions": self.interactions,
        }
        canonical = json.dumps(expectations, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def pact_dir(config: SystemConfig) -> Path:
    return config.root / PACT_DIR


def read_pacts(directory: Path) -> list[PactFile]:
    return [PactFile.read(path) for path in sorted(directory.glob("*.json"))]


def verify(config: SystemConfig, service: str | None) -> list[str]:
    """Every pact that `service` (or any service) takes part in, verified against its provider's
    code as it is now; one line per broken expectation, naming the consumer and the field."""
    if service is not None:
        config.require_service(service)
    problems: list[str] = []
    for pact in read_pacts(pact_dir(config)):
        if service is None or service in (pact.consumer, pact.provider):
            problems.extend(verify_pact(config, pact))
    return problems


def verify_pact(config: SystemConfig, pact: PactFile) -> list[str]:
    """One pact verified against its provider's code with the Pact verifier."""
    services = load_services(config)
    if pact.provider not in services:
        return [f"{pact.consumer} <- {pact.provider}: no service {pact.provider!r} in this system"]
    Verifier = _verifier_class()
    with tempfile.TemporaryDirectory(prefix="cleave-pact-") as folder:
        source = Path(folder) / "pact.json"
        source.write_text(json.dumps(pact.content))
        provider_service = services[pact.provider]
        with _Provider(config, services, provider_service, pact, Path(folder)) as provider:
            verifier = Verifier(pact.provider, host=LOOPBACK)
            # A pact holds the provider's own answer: a redirect is checked, never followed.
            verifier.follow_redirects(False)
            if provider.http_port is not None:
                verifier.add_transport(url=f"http://{LOOPBACK}:{provider.http_port}/")
            if token := provider.person_token():
                verifier.add_custom_header("Authorization", f"Bearer {token}")
            verifier.message_handler(provider.produce).add_source(source)
            if provider.http_port is not None:
                # Served beside the app, so a state's values reach the requests that use them.
                states = f"http://{LOOPBACK}:{provider.http_port}{STATE_PATH}"
                verifier.state_handler(states, teardown=False, body=True)
            else:
                verifier.state_handler(provider.set_state, teardown=False)
            try:
                with _quiet():
                    verifier.verify()
            except RuntimeError:
                pass  # a failed verification: its results say what failed
            finally:
                _close_relay(verifier)
            results = verifier.results
    return _problems(pact, results, provider.gaps)


def _verifier_class() -> type[pact.Verifier]:
    os.environ.setdefault("PACT_DO_NOT_TRACK", "true")  # the verifier never phones home
    try:
        from pact import Verifier
    except ImportError:
        raise CleaveError(
            "verifying pacts needs pact-python, a development tool: make .venv/.dev"
        ) from None
    return Verifier


@contextmanager
def _quiet() -> Iterator[None]:
    """The verifier prints its own report on the process's stdout and its message relay logs
    each request on stderr; the caller reports the problems, so both go to /dev/null meanwhile."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as nowhere:
        os.dup2(nowhere.fileno(), 1)
        os.dup2(nowhere.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for descriptor in saved:
                os.close(descriptor)


def _close_relay(verifier: object) -> None:
    """pact-python 4.2 shuts its message relay and state callback servers down but never closes
    their listening sockets."""
    for helper in ("_message_producer", "_state_handler"):
        server = getattr(getattr(verifier, helper, None), "_server", None)
        if server is not None:
            server.server_close()


def _problems(pact: PactFile, results: Mapping[str, Any], gaps: Mapping[str, str]) -> list[str]:
    lines: list[str] = []
    for result in results.get("interactionResults", []):
        if result.get("result") == "OK":
            continue
        head = f"{pact.consumer} <- {pact.provider}: {result.get('description')}"
        if gap := gaps.get(result.get("description", "")):
            lines.append(f"{head}: {gap}")
            continue
        mismatch = result.get("mismatch") or {}
        details = [
            f"{item.get('path', '$')}: {item.get('mismatch', '')}".strip()
            for item in mismatch.get("mismatches", [])
        ] or [str(mismatch.get("message") or mismatch)]
        lines.extend(f"{head}: {detail}" for detail in details)
    if not lines and not results.get("result", False):
        lines.append(f"{pact.consumer} <- {pact.provider}: the verification did not run")
    return lines


class _Provider:
    """The provider under verification: its event models; and its port and its app on a unit of
    its own (SQLite in a temporary folder, migrated and seeded), the app served by uvicorn, on an
    event loop in a thread, since the Pact verifier asks for each message from a thread of its
    own."""

    def __init__(
        self,
        config: SystemConfig,
        services: Mapping[str, Service],
        service: Service,
        pact: PactFile,
        folder: Path,
    ) -> None:
        self.service = service
        # The services whose ports it calls run beside it, so that its app can answer.
        called = tuple(
            name
            for name, other in services.items()
            if other.port is not None and other.port.protocol in service.calls
        )
        self.config = alone(config, service.name, folder, with_=called)
        self.interactions = {str(i["description"]): i for i in pact.interactions}
        self.gaps: dict[str, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._unit: Unit | None = None
        self._server: uvicorn.Server | None = None
        self._app: Any = None
        self._token: str | None = None
        self._scopes: tuple[str, ...] = ()
        self._serving: asyncio.Future[None] | None = None
        self.http_port: int | None = None

    def __enter__(self) -> _Provider:
        kinds = {i.get("type") for i in self.interactions.values()}
        if HTTP_CALL in kinds or (self.service.port is not None and PORT_CALL in kinds):
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=self._loop.run_forever, name="pact-provider", daemon=True
            )
            self._thread.start()
            try:
                self._unit = self._run(self._start())
                if HTTP_CALL in kinds:
                    self.http_port = self._run(self._serve(self._unit))
            except BaseException:
                self.__exit__()  # the loop's thread must not outlive a provider that never started
                raise
        return self

    def __exit__(self, *_: object) -> None:
        if self._loop is None or self._thread is None:
            return
        if self._server is not None:
            self._server.should_exit = True
            self._run(self._served())
        if self._unit is not None:
            self._run(self._unit.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _start(self) -> Unit:
        unit = Unit(self.config)
        try:
            await unit.migrate()
            await unit.seed()
        except BaseException:
            await unit.stop()
            raise
        return unit

    async def _serve(self, unit: Unit) -> int:
        """The provider's own app, served by uvicorn on a free loopback port, for the verifier
        to replay HTTP requests against."""
        import uvicorn

        from cleave.web.app import create_app

        app = self._app = create_app(unit, start_unit=False)
        config = uvicorn.Config(
            self._with_states(app), host=LOOPBACK, port=0, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._serving = asyncio.ensure_future(self._server.serve())
        while not self._server.started:
            if self._serving.done():
                self._serving.result()  # raises why it could not start
            await asyncio.sleep(0.01)
        port: int = self._server.servers[0].sockets[0].getsockname()[1]
        return port

    async def _served(self) -> None:
        if self._serving is not None:
            await self._serving

    def _run(self, awaitable: Awaitable[T]) -> T:
        """Await on the provider's loop, from the verifier's thread."""
        assert self._loop is not None

        async def waited() -> T:
            return await awaitable

        future = asyncio.run_coroutine_threadsafe(waited(), self._loop)
        return future.result(timeout=CALL_TIMEOUT_SECONDS)

    def produce(self, name: str, metadata: dict[str, Any] | None = None) -> Message:
        interaction = self.interactions[name]
        try:
            if interaction.get("type") == EVENT_MESSAGE:
                body = self._event(interaction)
                headers: dict[str, Any] | None = {"type": body["type"]}
            else:
                body, headers = self._call(interaction, metadata), None
        except (ContractGap, CleaveError) as gap:
            self.gaps[name] = str(gap)
            body, headers = {}, None
        contents = json.dumps(body).encode()
        return {"contents": contents, "metadata": headers, "content_type": "application/json"}

    def person_token(self) -> str | None:
        """A token for the person a pact's requests act for (the state `a person is signed in`,
        its `subject` and `scopes`), signed with the development key that the provider's unit
        trusts here; None when no request acts for anyone."""
        people = {
            (str(state["params"]["subject"]), tuple(state["params"].get("scopes") or ()))
            for interaction in self.interactions.values()
            for state in interaction.get("providerStates", [])
            if state.get("name") == SIGNED_IN and state.get("params", {}).get("subject")
        }
        if not people:
            return None
        if len(people) > 1:
            raise ConfigError("the requests of one pact act for one person, not several")
        [(subject, scopes)] = people
        self._scopes = scopes
        self._token = self._issue(subject, scopes)
        return self._token

    def _issue(self, subject: str, scopes: tuple[str, ...]) -> str:
        """A token for `subject`, from the development issuer the provider's unit trusts."""
        auth = self.config.auth
        issuer = DevIssuer.load_or_create(self.config.var_root, auth.issuer, auth.audience)
        return issuer.issue(subject, list(scopes))

    def _with_states(self, app: Any) -> Any:
        """The app, and the verifier's state change requests at `STATE_PATH` beside it: the JSON
        `{"state", "params", "action"}` in, the state's values out (Pact's provider-state
        injection), or a 422 naming why the state cannot be set up."""

        async def served(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["path"] != STATE_PATH:
                await app(scope, receive, send)
                return
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            asked = json.loads(body or b"{}")
            try:
                values = await self._set_state(str(asked.get("state") or ""), asked.get("params"))
                status, answer = 200, json.dumps(values).encode()
            except (ContractGap, CleaveError) as gap:
                self._state_failed(str(asked.get("state")), gap)
                # Not a 5xx: the verifier retries those, and this answer will not change.
                status, answer = 422, json.dumps({"error": str(gap)}).encode()
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": answer})

        return served

    def _state_failed(self, state: str, gap: Exception) -> None:
        """Why each interaction that needs `state` failed, for its line of the report (the
        verifier itself says only that a state change handler failed)."""
        for name, interaction in self.interactions.items():
            if any(given.get("name") == state for given in interaction.get("providerStates", [])):
                self.gaps.setdefault(name, str(gap))

    def set_state(self, state: str, parameters: dict[str, Any] | None = None) -> None:
        """Set up a provider state, from the verifier's thread (for pacts of messages). One that
        cannot be set up is reported, not raised: the verifier retries a failing state handler
        again and again."""
        if self._unit is None:
            return  # a provider of events alone has no state to set up
        try:
            self._run(self._set_state(state, parameters))
        except (ContractGap, CleaveError) as gap:
            self._state_failed(state, gap)

    async def _set_state(self, state: str, parameters: Mapping[str, Any] | None) -> dict[str, Any]:
        """Set up a provider state before its interaction is replayed: a port call made first,
        one of the system's confidential clients registered (through the provider's own
        `registers_clients`), a request made to its app, or a state of the provider's own
        (`provider_states`); returns the state's values."""
        if not state or state == SIGNED_IN or self._unit is None:
            return {}  # a signed-in person is the token every request carries
        context = self._unit.contexts[self.service.name]
        given = dict(parameters or {})
        if state == CLIENT_REGISTERED and self.service.registers_clients is not None:
            registrar = self.service.registers_clients
            scopes = frozenset(given.get("scopes") or ())
            await registrar(context, given["client_id"], scopes, given["secret"])
            return {}
        if state == REQUESTED and self._app is not None:
            return await self._request(given)
        if state.endswith(CALLED) and self.service.port is not None:
            implementation = self._unit.ports.get(self.service.port.protocol)
            setup = {"method": state.removesuffix(CALLED), "arguments": given}
            await answer_call(self.service.port.protocol, implementation, setup)
            return {}
        if own := self.service.provider_states.get(state):
            return await own(context, given)
        raise ContractGap(f"{self.service.name} cannot set up the state {state!r}")

    async def _request(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """A request to the provider's own app that must succeed, as the signed-in person or as
        `subject`; its answer's fields are the state's values."""
        import httpx

        headers = dict(given.get("headers") or {})
        if subject := given.get("subject"):
            headers["Authorization"] = f"Bearer {self._issue(str(subject), self._scopes)}"
        elif self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        transport = httpx.ASGITransport(app=self._app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{LOOPBACK}") as http:
            answer = await http.request(
                str(given["method"]), str(given["path"]), json=given.get("body"), headers=headers
            )
        if answer.status_code >= 400:
            raise ContractGap(f"the state's {given['method']} {given['path']}: {answer.text}")
        try:
            values = answer.json()
        except ValueError:
            return {}
        return values if isinstance(values, dict) else {}

    def _event(self, interaction: Mapping[str, Any]) -> dict[str, Any]:
        event_type = (interaction.get("metadata") or {}).get("type")
        published = {event.event_type: event for event in self.service.publishes}
        if event_type not in published:
            raise ContractGap(f"{self.service.name} does not publish {event_type}")
        expected = (interaction.get("contents") or {}).get("content") or {}
        event = example_event(published[event_type], expected.get("data") or {})
        return event_message(event, source=self.service.name)

    def _call(self, interaction: Mapping[str, Any], metadata: Mapping[str, Any] | None) -> Any:
        port = self.service.port
        if port is None or self._unit is None:
            raise ContractGap(f"{self.service.name} offers no port")
        implementation = self._unit.ports.get(port.protocol)
        # The request as the verifier sends it (generators applied), else as the pact has it.
        sent = (metadata or {}).get("request") or interaction.get("request") or {}
        request = (sent.get("contents") or {}).get("content")
        return self._run(answer_call(port.protocol, implementation, request or {}))


def alone(
    config: SystemConfig, service: str, folder: Path, *, with_: tuple[str, ...] = ()
) -> SystemConfig:
    """The system with `service` alone in one unit (beside the services `with_`), on SQLite files
    and an in-memory broker, trusting tokens of a development issuer (its key in the unit's own
    folder)."""
    topology = replace(
        config.topology,
        name="contracts",
        units={"contracts": (service, *with_)},
        broker="memory",
        database="sqlite+aiosqlite:///{var}/{service}.db",
        databases={},
        addresses={},
    )
    auth = replace(config.auth, issuer=CONTRACTS_ISSUER)
    return replace(config, var_root=folder / "var", topology=topology, auth=auth)
