"""Guards in front of the API: a bound on request bodies, and rate limits per client address
and per principal.

Counted by `limits` (sliding window counters) in memory or in Redis, as `[rate_limit]` says. The
address is checked before any work is done, in a middleware; the principal once its token is
verified (`cleave.auth.tokens.current_principal` calls `app.state.principal_guard`). Past a
limit the answer is a 429 problem with `Retry-After`.
"""

from __future__ import annotations

import math
import time

import structlog
from fastapi import FastAPI
from limits import RateLimitItem, parse_many
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import ConfigurationError
from limits.storage import storage_from_string
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cleave.auth.tokens import Principal
from cleave.config import RateLimitConfig
from cleave.errors import ConfigError, Problem, TooManyRequests
from cleave.web.app import problem_response

log = structlog.get_logger("cleave.web.guards")


class RateLimiter:
    def __init__(self, config: RateLimitConfig) -> None:
        self.per_address = _rates("per_address", config.per_address)
        self.per_principal = _rates("per_principal", config.per_principal)
        url = config.storage if config.storage.startswith("async+") else f"async+{config.storage}"
        try:
            storage = storage_from_string(url)
        except ConfigurationError as error:
            raise ConfigError(f"[rate_limit] storage {config.storage!r}: {error}") from None
        self.limiter = SlidingWindowCounterRateLimiter(storage)

    def close(self) -> None:
        """Let go of the storage's connections (Redis: its pool; memory holds none). `limits`
        has no close of its own, so this reaches its client's pool where there is one."""
        client = getattr(getattr(self.limiter.storage, "bridge", None), "storage", None)
        pool = getattr(client, "connection_pool", None)
        if pool is not None:
            pool.disconnect()

    async def wait_seconds(self, rates: list[RateLimitItem], *key: str) -> int | None:
        """Count one request against `rates`: None if allowed, else seconds until it would be."""
        try:
            for rate in rates:
                if not await self.limiter.hit(rate, *key):
                    stats = await self.limiter.get_window_stats(rate, *key)
                    return max(1, math.ceil(stats.reset_time - time.time()))
        except Exception as error:  # a storage that is down must not take the API with it
            log.warning("rate limit storage unavailable: not limiting", error=str(error))
        return None

    async def guard_principal(self, principal: Principal) -> None:
        if not self.per_principal:
            return
        wait = await self.wait_seconds(
            self.per_principal, "principal", principal.subject_type, principal.subject
        )
        if wait is not None:
            raise TooManyRequests(
                f"too many requests for {principal.subject}: try again in {wait} s",
                retry_after=wait,
            )


def _rates(key: str, text: str) -> list[RateLimitItem]:
    if text.strip().lower() in ("", "off"):
        return []
    try:
        return list(parse_many(text))
    except ValueError:
        raise ConfigError(
            f"[rate_limit] {key} = {text!r} is not a rate like '100/second;3000/minute' or 'off'"
        ) from None


# No body this system takes needs more than a few kilobytes: a megabyte is generous.
MAX_BODY_BYTES = 1024 * 1024


class BodySizeLimit:
    """Pure ASGI: a body declared larger than MAX_BODY_BYTES is refused unread (413); one sent
    without a length stops being read once past it (the route answers 400)."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            response = problem_response(
                413,
                f"a request body is at most {self.max_bytes} bytes",
                code="body-too-large",
                instance=scope["path"],
            )
            await response(scope, receive, send)
            return
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise TooLarge(f"a request body is at most {self.max_bytes} bytes")
            return message

        await self.app(scope, bounded, send)


class TooLarge(Problem):
    status = 413
    default_code = "body-too-large"


class AddressRateLimit:
    """Pure ASGI: a request to /api/... from an address past its limit is refused unread."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/"):
            address = (scope.get("client") or ("unknown", 0))[0]
            wait = await self.limiter.wait_seconds(self.limiter.per_address, "address", address)
            if wait is not None:
                response = problem_response(
                    429,
                    f"too many requests from {address}: try again in {wait} s",
                    code="rate-limited",
                    instance=scope["path"],
                    headers={"Retry-After": str(wait)},
                    retry_after=wait,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install_guards(app: FastAPI, config: RateLimitConfig) -> None:
    app.add_middleware(BodySizeLimit)
    limiter = RateLimiter(config)
    app.state.rate_limiter = limiter
    app.state.principal_guard = limiter.guard_principal
    if limiter.per_address:
        app.add_middleware(AddressRateLimit, limiter=limiter)
