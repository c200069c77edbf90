"""The client side of a port: an object implementing the Protocol over gRPC. Each call carries
the calling unit's token (and the end user it acts for, if any) and has a deadline; idempotent
methods are retried with backoff and jitter on UNAVAILABLE or DEADLINE_EXCEEDED, others never; a
circuit breaker fails fast while the far side is down."""

from __future__ import annotations

import asyncio
import random
import time
from types import ModuleType
from typing import Any, TypeVar, cast

import grpc
import structlog
from google.protobuf.message import DecodeError
from opentelemetry import trace
from pydantic import ValidationError

from cleave.auth.units import UnitTokens, on_behalf_of
from cleave.errors import (
    Problem,
    RemoteFailure,
    ServiceUnavailable,
)
from cleave.rpc.contract import RpcContract, RpcMethod, explain
from cleave.rpc.problems import problem_from
from cleave.rpc.server import AUTHORIZATION_KEY, ON_BEHALF_OF_KEY
from cleave.rpc.tls import UnitTls
from cleave.telemetry import current_carrier

P = TypeVar("P")

log = structlog.get_logger("cleave.rpc")
tracer = trace.get_tracer("cleave.rpc")

TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# A unit that comes back is found within a second, not after gRPC's default two-minute backoff.
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


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
        tokens: UnitTokens | None = None,
        tls: UnitTls | None = None,
        deadline: float = 5.0,
        attempts: int = 3,
        backoff: float = 0.05,
        max_backoff: float = 1.0,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.contract = contract
        self.target = target
        self.service = service
        self.tokens = tokens
        self.tls = tls
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
        credentials: dict[str, str] = {}
        if self.tokens is not None:  # without, the far side refuses: what a test of it wants
            credentials[AUTHORIZATION_KEY] = f"Bearer {await self.tokens.token()}"
        if (acting := on_behalf_of()) is not None:
            credentials[ON_BEHALF_OF_KEY] = acting
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
                result = await self._attempts(method, payload, where, credentials)
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

    async def _attempts(
        self, method: RpcMethod, payload: bytes, where: str, credentials: dict[str, str]
    ) -> Any:
        metadata = {**current_carrier(), **credentials}  # inside the span: it is the parent
        loop = asyncio.get_running_loop()
        ends = loop.time() + self.deadline
        attempts = self.attempts if method.idempotent else 1
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
                problem = problem_from(error)
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
                    f"{where} answered what the contract does not allow: {explain(error)}"
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
        if self._channel is None and self.tls is not None:
            credentials = self.tls.channel_credentials()
            self._channel = grpc.aio.secure_channel(self.target, credentials, _CHANNEL_OPTIONS)
        elif self._channel is None:
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
