"""Keys of an OpenID Connect issuer, found through its discovery document and JWKS.

Any standard provider works (the built-in one, Keycloak, Auth0, Entra ID): the discovery
document must name exactly the configured issuer. Keys are cached; an unknown `kid` refreshes
them at most once per interval (so forged kids cannot hammer the provider), and while the
provider is down, tokens signed by cached keys keep verifying.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import structlog
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from cleave.errors import ServiceUnavailable

log = structlog.get_logger("cleave.auth.oidc")

DISCOVERY_PATH = "/.well-known/openid-configuration"


class DiscoveryError(Exception):
    """The issuer answered, but not with a usable discovery document or JWKS."""


class OidcKeySource:
    """A `KeySource` that reads the issuer's JWKS, found through its discovery document."""

    def __init__(
        self,
        issuer: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        refresh_interval: float = 60.0,
        retry_interval: float = 1.0,
        max_age: float = 3600.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.refresh_interval = refresh_interval
        self.retry_interval = retry_interval
        self.max_age = max_age
        self._clock = clock
        self._transport = transport
        self._timeout = timeout
        self._keys: KeySet | None = None
        self._kids: frozenset[str] = frozenset()
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0  # how many times the JWKS was fetched: what tests and metrics read

    async def key_set(self, kid: str | None) -> KeySet:
        # With nothing cached yet, wait for a fetch already under way rather than fail at once.
        if self._keys is None or self._needs_refresh(kid):
            async with self._lock:
                if self._needs_refresh(kid):
                    await self._refresh()
        if self._keys is None:
            raise ServiceUnavailable(
                "the token issuer cannot be reached and no keys are cached yet",
                code="issuer-unavailable",
            )
        return self._keys

    def _needs_refresh(self, kid: str | None) -> bool:
        now = self._clock()
        if self._keys is None:
            return now - self._attempted_at >= self.retry_interval
        if now - self._attempted_at < self.refresh_interval:
            return False
        return (kid is not None and kid not in self._kids) or now - self._fetched_at >= self.max_age

    async def _refresh(self) -> None:
        self._attempted_at = self._clock()
        try:
            keys = await self._fetch()
        except (httpx.HTTPError, DiscoveryError, JoseError, ValueError) as error:
            # Keep what is cached: a provider outage must not take every service down with it.
            log.warning(
                "cannot refresh the issuer's keys; using cached keys",
                issuer=self.issuer,
                error=str(error) or type(error).__name__,
                cached=sorted(self._kids),
            )
            return
        self._keys = keys
        self._kids = frozenset(key.kid for key in keys.keys if key.kid)
        self._fetched_at = self._clock()
        self.fetches += 1

    async def _fetch(self) -> KeySet:
        async with httpx.AsyncClient(
            transport=self._transport, timeout=self._timeout, follow_redirects=False
        ) as http:
            discovery = await _get_json(http, self.issuer.rstrip("/") + DISCOVERY_PATH)
            if discovery.get("issuer") != self.issuer:
                raise DiscoveryError(
                    f"the discovery document names issuer {discovery.get('issuer')!r}, "
                    f"not {self.issuer!r}"
                )
            jwks_uri = discovery.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
                raise DiscoveryError("the discovery document has no jwks_uri")
            document = await _get_json(http, jwks_uri)
        # Only signing keys count: an encryption key in the set must never verify a signature.
        signing = [key for key in document.get("keys", []) if key.get("use", "sig") == "sig"]
        return KeySet.import_key_set({"keys": signing})


async def _get_json(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    response = await http.get(url, headers={"Accept": "application/json"})
    if response.status_code != 200:
        raise DiscoveryError(f"{url} answered {response.status_code}")
    document = response.json()
    if not isinstance(document, dict):
        raise DiscoveryError(f"{url} did not answer with a JSON object")
    return document
