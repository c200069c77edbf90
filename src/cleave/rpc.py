"""Calls between units over gRPC: a service's port, served by its unit and called from others.

A port is a Protocol in the service's `contract/`; its `.proto` there has one rpc per method
(`price_lines` is `PriceLines`), request fields named like the parameters, and the return value
as the response's `result`. From these two the chassis builds both sides, so a service declares
only `PortBinding(Protocol, factory, rpc=<its _pb2 module>)`:

- the server (`RpcServer`) serves every port of a unit, plus the standard `grpc.health.v1`
  health service; reflection only when `CLEAVE_GRPC_REFLECTION=1`;
- the client (`remote_port`) is an object implementing the Protocol. Each call has a deadline;
  methods the `.proto` marks `idempotency_level = IDEMPOTENT` or `NO_SIDE_EFFECTS` are retried
  with backoff and jitter on UNAVAILABLE or DEADLINE_EXCEEDED, others never; a circuit breaker
  fails fast while the far side is down. A `Problem` raised on the far side is raised again here,
  as the same class with the same attributes; a transport failure is `ServiceUnavailable`.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import random
import time
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar, cast

import grpc
import structlog
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from opentelemetry import trace
from pydantic import TypeAdapter, ValidationError

from cleave.errors import (
    ConfigError,
    Problem,
    RemoteFailure,
    ServiceUnavailable,
    Unprocessable,
)
from cleave.telemetry import context_of, current_carrier

P = TypeVar("P")

log = structlog.get_logger("cleave.rpc")
tracer = trace.get_tracer("cleave.rpc")

# Trailing metadata that carries a Problem across: binary, so any detail text survives.
PROBLEM_KEY = "cleave-problem-bin"
REFLECTION_VARIABLE = "CLEAVE_GRPC_REFLECTION"
TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
_SAFE_TO_RETRY = frozenset(
    {descriptor_pb2.MethodOptions.IDEMPOTENT, descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS}
)
_STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ABORTED,
    422: grpc.StatusCode.FAILED_PRECONDITION,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
# A unit that comes back is found within a second, not after gRPC's default two-minute backoff.
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
# Without SO_REUSEPORT a port already taken is an error at start, not a silently shared port.
_SERVER_OPTIONS = [("grpc.so_reuseport", 0)]


# --- The contract: a Protocol and its .proto service, checked against each other -------------


@dataclass(frozen=True)
class RpcMethod:
    """One port method and its rpc: how its arguments and result cross the wire."""

    name: str
    path: str
    signature: inspect.Signature
    request: type[Message]
    response: type[Message]
    parameters: Mapping[str, TypeAdapter[Any]]
    result: TypeAdapter[Any] | None
    idempotent: bool

    def encode_call(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bytes:
        bound = self.signature.bind(*args, **kwargs)
        fields = {
            name: self.parameters[name].dump_python(value, mode="json")
            for name, value in bound.arguments.items()
        }
        return self.request(**fields).SerializeToString()

    def decode_call(self, payload: bytes, service: str) -> dict[str, Any]:
        """The call's arguments, checked against the Protocol's types; else Unprocessable."""
        where = f"{service}.{self.name}"
        try:
            fields = _to_dict(self.request.FromString(payload))
        except DecodeError as error:
            raise Unprocessable(f"{where}: {error}", code="invalid-arguments") from None
        arguments, errors = {}, []
        for name, adapter in self.parameters.items():
            try:
                arguments[name] = adapter.validate_python(fields.get(name))
            except ValidationError as error:
                errors.append(_explain(error, name))
        if errors:
            raise Unprocessable(f"{where}: {'; '.join(errors)}", code="invalid-arguments")
        return arguments

    def encode_result(self, value: Any) -> bytes:
        if self.result is None or value is None:
            return self.response().SerializeToString()
        return self.response(result=self.result.dump_python(value, mode="json")).SerializeToString()

    def decode_result(self, payload: bytes) -> Any:
        if self.result is None:
            return None
        return self.result.validate_python(
            _to_dict(self.response.FromString(payload)).get("result")
        )


@dataclass(frozen=True)
class RpcContract:
    """A port Protocol bound to the gRPC service of its `.proto`, method by method."""

    protocol: type
    service_name: str
    methods: Mapping[str, RpcMethod]

    @classmethod
    def of(cls, protocol: type, rpc: ModuleType) -> RpcContract:
        """Check that the generated module's one service mirrors the Protocol, and bind them."""
        services = list(rpc.DESCRIPTOR.services_by_name.values())
        if len(services) != 1:
            raise ConfigError(f"{rpc.__name__} must declare exactly one gRPC service")
        service: ServiceDescriptor = services[0]
        names = _port_methods(protocol)
        rpcs = {_rpc_name(name): name for name in names}
        if extra := sorted(set(service.methods_by_name) - set(rpcs)):
            raise ConfigError(
                f"{service.full_name} has rpcs {extra} that {protocol.__name__} lacks"
            )
        methods = {}
        for rpc_name, name in rpcs.items():
            if rpc_name not in service.methods_by_name:
                raise ConfigError(
                    f"{protocol.__name__}.{name} has no rpc {rpc_name} in {rpc.__name__}"
                )
            methods[name] = _method(
                protocol, name, service.full_name, service.methods_by_name[rpc_name]
            )
        return cls(protocol, service.full_name, methods)


def _port_methods(protocol: type) -> list[str]:
    return [
        name
        for name, member in vars(protocol).items()
        if not name.startswith("_") and inspect.iscoroutinefunction(member)
    ]


def _rpc_name(method: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in method.split("_"))


def _method(protocol: type, name: str, service: str, descriptor: Any) -> RpcMethod:
    function = getattr(protocol, name)
    hints = typing.get_type_hints(function)
    signature = inspect.signature(function)
    parameters = list(signature.parameters.values())[1:]  # without self
    request = GetMessageClass(descriptor.input_type)
    response = GetMessageClass(descriptor.output_type)
    where = f"{protocol.__name__}.{name}"
    wanted = [parameter.name for parameter in parameters]
    if sorted(wanted) != sorted(request.DESCRIPTOR.fields_by_name):
        got = sorted(request.DESCRIPTOR.fields_by_name)
        raise ConfigError(f"{where} takes {wanted}, but {request.DESCRIPTOR.full_name} has {got}")
    returns: Any = hints.get("return", type(None))
    has_result = returns is not type(None)
    if sorted(response.DESCRIPTOR.fields_by_name) != (["result"] if has_result else []):
        shape = "one field `result`" if has_result else "no field"
        raise ConfigError(f"{where}: {response.DESCRIPTOR.full_name} must have {shape}")
    return RpcMethod(
        name=name,
        path=f"/{service}/{descriptor.name}",
        signature=signature.replace(parameters=parameters),
        request=request,
        response=response,
        parameters={parameter: TypeAdapter(hints[parameter]) for parameter in wanted},
        result=TypeAdapter(returns) if has_result else None,
        idempotent=descriptor.GetOptions().idempotency_level in _SAFE_TO_RETRY,
    )


def _explain(error: ValidationError | DecodeError, name: str = "result") -> str:
    """A validation error on one line: `lines.0.quantity: Input should be greater than 0`."""
    if isinstance(error, DecodeError):
        return str(error)
    return "; ".join(
        f"{'.'.join(map(str, (name, *detail['loc'])))}: {detail['msg']}"
        for detail in error.errors()
    )


def _to_dict(message: Message) -> dict[str, Any]:
    """A message as plain Python values, an unset optional field or message as None. (Faster
    than json_format, and it keeps int64 as int.) Messages are built straight from such dicts."""
    values: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            values[field.name] = {
                key: _to_dict(item) if isinstance(item, Message) else item
                for key, item in value.items()
            }
        elif field.is_repeated:
            values[field.name] = [
                _to_dict(item) if isinstance(item, Message) else item for item in value
            ]
        elif field.has_presence and not message.HasField(field.name):
            values[field.name] = None
        else:
            values[field.name] = _to_dict(value) if isinstance(value, Message) else value
    return values


# --- Problems across the wire ----------------------------------------------------------------


def _problem_metadata(problem: Problem) -> tuple[tuple[str, bytes]]:
    body = {
        "type": problem.problem_type(),
        "code": problem.code,
        "detail": problem.detail,
        "status": problem.status,
        "extensions": problem.extensions,
    }
    return ((PROBLEM_KEY, json.dumps(body, default=str).encode()),)


def _problem_from(error: grpc.aio.AioRpcError) -> Problem | None:
    metadata = error.trailing_metadata()
    raw = metadata.get(PROBLEM_KEY) if metadata is not None else None
    if not isinstance(raw, bytes):
        return None
    body = json.loads(raw)
    return Problem.restore(
        body["type"], body["detail"], body["code"], body["status"], body["extensions"]
    )


# --- The server --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServedPort:
    """A port this unit serves: the service offering it, its contract and its implementation."""

    service: str
    contract: RpcContract
    implementation: object


class RpcServer:
    """Serves a unit's ports and the standard health service on one address."""

    def __init__(
        self, address: str, ports: Sequence[ServedPort], *, reflection: bool | None = None
    ) -> None:
        self.address = address
        self.ports = ports
        self.reflection = (
            os.environ.get(REFLECTION_VARIABLE) == "1" if reflection is None else reflection
        )
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._health = health_aio.HealthServicer()

    async def start(self) -> int:
        """Listen and serve; returns the port (useful when the address asked for port 0)."""
        server = grpc.aio.server(options=_SERVER_OPTIONS)
        for served in self.ports:
            server.add_registered_method_handlers(
                served.contract.service_name,
                {
                    method.path.rsplit("/", 1)[1]: grpc.unary_unary_rpc_method_handler(
                        _behaviour(served, method)
                    )
                    for method in served.contract.methods.values()
                },
            )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        names = [served.contract.service_name for served in self.ports]
        for name in ("", *names, *(served.service for served in self.ports)):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self.reflection:
            from grpc_reflection.v1alpha import reflection

            reflection.enable_server_reflection(
                (
                    *names,
                    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                    reflection.SERVICE_NAME,
                ),
                server,
            )
        try:
            self.port = server.add_insecure_port(self.address)
        except RuntimeError:
            raise ConfigError(f"cannot serve gRPC on {self.address}: address in use?") from None
        await server.start()
        self._server = server
        log.info(
            "grpc serving",
            address=self.address,
            port=self.port,
            services=names,
            reflection=self.reflection,
        )
        return self.port

    async def stop(self, grace: float = 2.0) -> None:
        """Report NOT_SERVING, let calls in flight finish for up to `grace` seconds, then stop."""
        if self._server is None:
            return
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)
        self._server = None


def _behaviour(served: ServedPort, method: RpcMethod) -> Any:
    implementation = getattr(served.implementation, method.name)
    span_name = f"{served.contract.service_name}/{method.path.rsplit('/', 1)[1]}"

    async def handle(payload: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        carrier = {
            key: value
            for key, value in context.invocation_metadata() or ()
            if isinstance(value, str)
        }
        with tracer.start_as_current_span(
            span_name,
            context=context_of(carrier),
            kind=trace.SpanKind.SERVER,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": served.contract.service_name,
                "rpc.method": method.path.rsplit("/", 1)[1],
                "cleave.service": served.service,
            },
        ):
            try:
                arguments = method.decode_call(payload, served.service)
                # Shielded: a caller that gives up never leaves this side half-done.
                result = await _shielded(implementation(**arguments))
                return method.encode_result(result)
            except Problem as problem:
                code = _STATUS_CODES.get(problem.status, grpc.StatusCode.UNKNOWN)
                await context.abort(code, problem.detail, _problem_metadata(problem))
            except Exception:
                log.exception("rpc failed", service=served.service, method=method.name)
                await context.abort(
                    grpc.StatusCode.INTERNAL, f"{served.service}.{method.name} failed"
                )

    return handle


async def _shielded(call: typing.Awaitable[Any]) -> Any:
    """Run a call to its end even if the caller goes away meanwhile; then log how it ended."""
    task = asyncio.ensure_future(call)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_log_orphan)
        raise


def _log_orphan(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        log.warning("rpc failed after its caller left", error=repr(error))


# --- The client ------------------------------------------------------------------------------


class CircuitBreaker:
    """After `threshold` failures in a row, calls fail at once for `cool_down` seconds; then one
    trial call goes through (half-open): its success closes the circuit, its failure reopens it."""

    def __init__(self, threshold: int = 5, cool_down: float = 2.0) -> None:
        self.threshold = threshold
        self.cool_down = cool_down
        self.failures = 0
        self.opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "open" if time.monotonic() - self.opened_at < self.cool_down else "half-open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._trial:
            self._trial = True
            return True
        return False

    def retry_in(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.cool_down - (time.monotonic() - self.opened_at))

    def succeeded(self) -> None:
        self.failures, self.opened_at, self._trial = 0, None, False

    def failed(self) -> None:
        self.failures += 1
        if self._trial or self.failures >= self.threshold:
            self.opened_at = time.monotonic()
        self._trial = False

    def abandoned(self) -> None:
        """A trial call ended without an answer either way (cancelled): let another try."""
        self._trial = False


class RemotePort:
    """A port whose service runs in another unit: each Protocol method becomes an rpc."""

    def __init__(
        self,
        contract: RpcContract,
        target: str,
        *,
        service: str,
        deadline: float = 5.0,
        attempts: int = 3,
        backoff: float = 0.05,
        max_backoff: float = 1.0,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.contract = contract
        self.target = target
        self.service = service
        self.deadline = deadline
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.breaker = breaker or CircuitBreaker()
        self._channel: grpc.aio.Channel | None = None
        for method in contract.methods.values():
            setattr(self, method.name, self._bind(method))

    def __repr__(self) -> str:
        return f"<remote {self.contract.protocol.__name__} of {self.service} at {self.target}>"

    async def close(self) -> None:
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close()

    def _bind(self, method: RpcMethod) -> Any:
        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self.call(method, method.encode_call(args, kwargs))

        call.__name__ = method.name
        return call

    async def call(self, method: RpcMethod, payload: bytes) -> Any:
        where = f"{self.service}.{method.name} at {self.target}"
        if not self.breaker.allow():
            raise ServiceUnavailable(
                f"{where}: circuit open after {self.breaker.failures} failures in a row; "
                f"next try in {self.breaker.retry_in():.1f}s",
                code="circuit-open",
                service=self.service,
            )
        settled = False
        try:
            with tracer.start_as_current_span(
                f"{self.contract.service_name}/{method.path.rsplit('/', 1)[1]}",
                kind=trace.SpanKind.CLIENT,
                attributes={
                    "rpc.system": "grpc",
                    "rpc.method": method.path.rsplit("/", 1)[1],
                    "server.address": self.target,
                },
            ):
                result = await self._attempts(method, payload, where)
            self.breaker.succeeded()
            settled = True
            return result
        except _Transient as failure:
            self.breaker.failed()
            settled = True
            raise failure.error from None
        except Problem:
            self.breaker.succeeded()  # the far side answered: it is up
            settled = True
            raise
        finally:
            if not settled:
                self.breaker.abandoned()

    async def _attempts(self, method: RpcMethod, payload: bytes, where: str) -> Any:
        loop = asyncio.get_running_loop()
        ends = loop.time() + self.deadline
        attempts = self.attempts if method.idempotent else 1
        metadata = current_carrier()
        unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]
        unary = self._connect().unary_unary(method.path)
        for attempt in range(1, attempts + 1):
            try:
                response = await unary(
                    payload,
                    timeout=max(ends - loop.time(), 0.001),
                    metadata=tuple(metadata.items()),
                )
            except grpc.aio.AioRpcError as error:
                problem = _problem_from(error)
                transient = error.code() in TRANSIENT
                delay = self._delay(attempt)
                if transient and attempt < attempts and loop.time() + delay < ends:
                    log.info("rpc retry", call=where, attempt=attempt, code=error.code().name)
                    await asyncio.sleep(delay)
                    continue
                if transient:
                    raise _Transient(problem or self._unavailable(where, error, attempt)) from None
                if problem is not None:
                    raise problem from None
                raise RemoteFailure(
                    f"{where} failed: {error.code().name} {error.details() or ''}".strip(),
                    service=self.service,
                ) from None
            try:
                return method.decode_result(response)
            except (ValidationError, DecodeError) as error:
                raise RemoteFailure(
                    f"{where} answered what the contract does not allow: {_explain(error)}"
                ) from None
        raise AssertionError("unreachable")

    def _unavailable(self, where: str, error: grpc.aio.AioRpcError, attempts: int) -> Problem:
        why = (
            "no answer within the deadline"
            if error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            else error.details()
        )
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return ServiceUnavailable(f"{where} is unavailable{tries}: {why}", service=self.service)

    def _delay(self, attempt: int) -> float:
        ceiling = min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # jitter spreads callers apart

    def _connect(self) -> grpc.aio.Channel:
        # Made on first use, inside the running loop the channel belongs to.
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.target, options=_CHANNEL_OPTIONS)
        return self._channel


class _Transient(Exception):
    """A failure of the UNAVAILABLE class, carried to where the breaker counts it."""

    def __init__(self, error: Problem) -> None:
        super().__init__(str(error))
        self.error = error


def remote_port(
    protocol: type[P], target: str, rpc: ModuleType, *, service: str, **options: Any
) -> P:
    """An object implementing `protocol` whose calls go over gRPC to `target` (host:port)."""
    return cast(P, RemotePort(RpcContract.of(protocol, rpc), target, service=service, **options))
