"""The gRPC server of a unit: every port it offers, plus the standard `grpc.health.v1` health
service; reflection only when `CLEAVE_GRPC_REFLECTION=1`. A call whose caller gives up still
runs to its end, so a retry finds it done rather than half-done.

No port answers an anonymous caller: every call carries a unit's access token, verified like any
other, and only the units whose services declare `calls=` the port may use its methods; anything
else is UNAUTHENTICATED or PERMISSION_DENIED, and logged with who tried."""

from __future__ import annotations

import asyncio
import os
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from opentelemetry import trace

from cleave.auth.tokens import Principal, TokenVerifier
from cleave.auth.units import acting_for, is_unit
from cleave.errors import (
    ConfigError,
    DatabaseUnavailable,
    Problem,
    ServiceUnavailable,
    Unauthorized,
)
from cleave.rpc.contract import RpcContract, RpcMethod
from cleave.rpc.problems import STATUS_CODES, problem_metadata
from cleave.rpc.tls import UnitTls
from cleave.telemetry import trace_context_of

log = structlog.get_logger("cleave.rpc")
tracer = trace.get_tracer("cleave.rpc")

REFLECTION_VARIABLE = "CLEAVE_GRPC_REFLECTION"
# Without SO_REUSEPORT a port already taken is an error at start, not a silently shared port.
_SERVER_OPTIONS = [("grpc.so_reuseport", 0)]
# Call metadata: the calling unit's token, and the end user the call acts for, if any.
AUTHORIZATION_KEY = "authorization"
ON_BEHALF_OF_KEY = "x-cleave-on-behalf-of"


@dataclass(frozen=True)
class ServedPort:
    """A port this unit serves: the service offering it, its contract and its implementation."""

    service: str
    contract: RpcContract
    implementation: object
    # The client ids of the units allowed to call it: those whose services declare the port.
    callers: frozenset[str] = frozenset()


class RpcServer:
    """Serves a unit's ports and the standard health service on one address."""

    def __init__(
        self,
        address: str,
        ports: Sequence[ServedPort],
        *,
        verifier: TokenVerifier,
        tls: UnitTls | None = None,
        reflection: bool | None = None,
    ) -> None:
        self.address = address
        self.ports = ports
        self.verifier = verifier
        self.tls = tls
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
                        _behaviour(served, method, self.verifier)
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
            if self.tls is None:
                self.port = server.add_insecure_port(self.address)
            else:
                self.port = server.add_secure_port(self.address, self.tls.server_credentials())
        except RuntimeError:
            raise ConfigError(f"cannot serve gRPC on {self.address}: address in use?") from None
        await server.start()
        self._server = server
        log.info(
            "grpc serving",
            address=self.address,
            port=self.port,
            services=names,
            tls=self.tls is not None,
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


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, detail: str, caller: str | None = None) -> None:
        super().__init__(detail)
        self.code, self.detail, self.caller = code, detail, caller


async def _caller(
    verifier: TokenVerifier, served: ServedPort, carrier: dict[str, str]
) -> Principal:
    """The calling unit, proven by its token and allowed by the port's declared callers."""
    scheme, _, token = carrier.get(AUTHORIZATION_KEY, "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _Refused(grpc.StatusCode.UNAUTHENTICATED, "a bearer token is required")
    try:
        principal = await verifier.verify(token.strip())
    except Unauthorized as error:
        raise _Refused(grpc.StatusCode.UNAUTHENTICATED, error.detail) from None
    except ServiceUnavailable as error:
        raise _Refused(grpc.StatusCode.UNAVAILABLE, error.detail) from None
    caller = principal.client_id or principal.subject
    if not is_unit(principal.subject, principal.client_id, principal.scopes):
        raise _Refused(
            grpc.StatusCode.PERMISSION_DENIED,
            f"{served.service}'s port answers only the system's own units",
            caller,
        )
    if principal.subject not in served.callers:
        raise _Refused(
            grpc.StatusCode.PERMISSION_DENIED,
            f"{principal.subject} runs no service that declares calls to "
            f"{served.contract.protocol.__name__}",
            caller,
        )
    return principal


def _behaviour(served: ServedPort, method: RpcMethod, verifier: TokenVerifier) -> Any:
    implementation = getattr(served.implementation, method.name)
    span_name = f"{served.contract.service_name}/{method.path.rsplit('/', 1)[1]}"

    async def handle(payload: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        carrier = {
            key: value
            for key, value in context.invocation_metadata() or ()
            if isinstance(value, str)
        }
        try:
            await _caller(verifier, served, carrier)
        except _Refused as refused:
            log.warning(
                "rpc refused",
                service=served.service,
                method=method.name,
                code=refused.code.name,
                caller=refused.caller or "unknown",
                reason=refused.detail,
                peer=context.peer(),
            )
            await context.abort(refused.code, refused.detail)
        acting = carrier.get(ON_BEHALF_OF_KEY) or None
        with tracer.start_as_current_span(
            span_name,
            context=trace_context_of(carrier),
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
                with acting_for(acting):
                    result = await _shielded(implementation(**arguments))
                return method.encode_result(result)
            except Problem as problem:
                code = STATUS_CODES.get(problem.status, grpc.StatusCode.UNKNOWN)
                await context.abort(code, problem.detail, problem_metadata(problem))
            except DatabaseUnavailable as error:
                # A passing outage over there, as the caller should see it: worth a retry.
                outage = ServiceUnavailable(str(error), service=served.service)
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE, outage.detail, problem_metadata(outage)
                )
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
