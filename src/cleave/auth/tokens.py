"""The principal: who is calling, proven by a bearer JWT that every service verifies the same way.

Tokens are checked against an explicit algorithm allow-list, the issuer, the audience, expiry and
not-before, and must be access tokens (`typ: at+jwt`, RFC 9068). The keys come from a `KeySource`:
the issuer's JWKS through its discovery document, or in tests a development key kept in `var/`.
"""

from __future__ import annotations

import functools
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, RSAKey

from cleave.auth.revocation import RevocationList
from cleave.auth.units import act_for, is_unit
from cleave.errors import Forbidden, Unauthorized
from cleave.files import private_dir

ADMIN_SCOPE = "admin"
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret
# Clock skew allowed on `exp` and `nbf`: a revocation must outlast a token's expiry by as much.
LEEWAY_SECONDS = 30
# How many verified tokens a verifier remembers, and for how long at most.
VERIFIED_TOKENS_KEPT = 1024
VERIFIED_FOR_SECONDS = 60.0
# Whom an access token speaks for: a "user", or a "client" on its own (the client credentials
# grant). Without the claim, RFC 9068's convention holds: `sub` equal to `client_id` is a client.
SUBJECT_TYPE_CLAIM = "sub_type"
USER, CLIENT = "user", "client"


@dataclass(frozen=True)
class Principal:
    subject: str
    scopes: frozenset[str]
    client_id: str | None = None
    subject_type: str = USER
    session_id: str | None = None  # the provider's sign-in session (`sid`), when it names one

    @property
    def is_admin(self) -> bool:
        return ADMIN_SCOPE in self.scopes

    @property
    def is_client(self) -> bool:
        """A client acting for itself: never the user who might share its name (RFC 9700 §4.15)."""
        return self.subject_type == CLIENT

    def require(self, scope: str) -> None:
        if scope not in self.scopes and not self.is_admin:
            raise Forbidden(f"this call needs the {scope!r} scope", code="insufficient-scope")


class KeySource(Protocol):
    async def key_set(self, kid: str | None) -> KeySet:
        """The issuer's public keys; may refresh when `kid` is unknown."""


class TokenVerifier:
    def __init__(
        self,
        issuer: str,
        audience: str,
        keys: KeySource,
        *,
        algorithms: Iterable[str] = ("RS256", "ES256", "EdDSA"),
        leeway_seconds: int = LEEWAY_SECONDS,
        revocations: RevocationList | None = None,
    ) -> None:
        self.issuer = issuer
        # The unit's list of tokens the provider ended early; None trusts expiry alone.
        self.revocations = revocations
        self.audience = audience
        self.keys = keys
        self.algorithms = tuple(algorithms)
        self.leeway_seconds = leeway_seconds
        # Tokens whose signature and claims checked out, until they expire (or a minute, so a key
        # the issuer withdrew stops counting soon): a unit calls with one token for its lifetime,
        # and a signature check costs 35 to 80 µs. Revocation is checked at every use.
        self._verified: dict[str, tuple[float, dict[str, Any], Principal]] = {}

    async def verify(self, token: str) -> Principal:
        remembered = self._verified.get(token)
        if remembered is not None:
            until, claims, principal = remembered
            if time.time() < until:
                await self._not_revoked(claims)
                return principal
            del self._verified[token]
        principal, claims = await self._verify(token)
        if len(self._verified) >= VERIFIED_TOKENS_KEPT:
            del self._verified[next(iter(self._verified))]  # the oldest
        until = min(float(claims["exp"]) + self.leeway_seconds, time.time() + VERIFIED_FOR_SECONDS)
        self._verified[token] = (until, claims, principal)
        return principal

    async def _not_revoked(self, claims: dict[str, Any]) -> None:
        if self.revocations is not None:
            await self.revocations.ensure_loaded()
            if revoked := self.revocations.revoked(claims):
                raise Unauthorized(f"the token was revoked (its {revoked})", code="token-revoked")

    async def _verify(self, token: str) -> tuple[Principal, dict[str, Any]]:
        kid = _unverified_kid(token)
        key_set = await self.keys.key_set(kid)
        try:
            decoded = jwt.decode(token, key_set, algorithms=list(self.algorithms))
            if decoded.header.get("typ", "").lower() not in (
                ACCESS_TOKEN_TYPE,
                "application/at+jwt",
            ):
                raise Unauthorized("not an access token", code="invalid-token")
            claims = jwt.JWTClaimsRegistry(
                leeway=self.leeway_seconds,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.audience},
                exp={"essential": True},
                sub={"essential": True},
            )
            claims.validate(decoded.claims)
        except JoseError as error:
            raise Unauthorized(
                f"invalid token: {error.description or error.error}", code="invalid-token"
            ) from None
        except (ValueError, TypeError):
            raise Unauthorized("invalid token: malformed", code="invalid-token") from None
        await self._not_revoked(decoded.claims)
        scope = decoded.claims.get("scope", "")
        subject, client_id = str(decoded.claims["sub"]), decoded.claims.get("client_id")
        kind = decoded.claims.get(SUBJECT_TYPE_CLAIM)
        if kind not in (USER, CLIENT, None):
            raise Unauthorized(f"invalid token: unknown {SUBJECT_TYPE_CLAIM}", code="invalid-token")
        principal = Principal(
            subject=subject,
            scopes=frozenset(scope.split() if isinstance(scope, str) else ()),
            client_id=client_id,
            subject_type=kind or (CLIENT if subject == client_id else USER),
            session_id=str(decoded.claims["sid"]) if decoded.claims.get("sid") else None,
        )
        return principal, decoded.claims


def _unverified_kid(token: str) -> str | None:
    import base64

    try:
        header_part = token.split(".")[0]
        padded = header_part + "=" * (-len(header_part) % 4)
        header = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, IndexError):
        raise Unauthorized("invalid token: malformed", code="invalid-token") from None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None


@functools.lru_cache(maxsize=8)
def _imported_key(document: str) -> RSAKey:
    # Parsing an RSA private key costs milliseconds; every unit of a process reads the same one.
    return RSAKey.import_key(json.loads(document))


class DevIssuer:
    """A development issuer: an RSA key in `var/`, trusted when `[auth] issuer` is neither "self"
    nor an http(s) URL. Tests sign their tokens with it; nothing deployed uses it."""

    FILE = "dev-signing-key.json"

    def __init__(self, key: RSAKey, issuer: str, audience: str) -> None:
        self.key = key
        self.issuer = issuer
        self.audience = audience
        self._public: KeySet | None = None

    @classmethod
    def load_or_create(cls, var_dir: Path, issuer: str, audience: str) -> DevIssuer:
        path = var_dir / cls.FILE
        if not path.exists():
            private_dir(var_dir)
            key = RSAKey.generate_key(
                2048, parameters={"kid": uuid.uuid4().hex, "alg": "RS256", "use": "sig"}
            )
            # Owner-only, and published by an atomic link: units starting together agree on one key.
            draft = var_dir / f".{cls.FILE}.{uuid.uuid4().hex}"
            descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                json.dump(key.as_dict(private=True), handle)
            try:
                os.link(draft, path)
            except FileExistsError:
                pass  # another process won the race: use its key
            finally:
                draft.unlink()
        return cls(_imported_key(path.read_text()), issuer, audience)

    def issue(
        self,
        subject: str,
        scopes: Iterable[str],
        *,
        ttl_seconds: int = 3600,
        client_id: str = "dev",
        subject_type: str = USER,
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_seconds,
            "jti": uuid.uuid4().hex,
            "client_id": client_id,
            "scope": " ".join(scopes),
            SUBJECT_TYPE_CLAIM: subject_type,
        }
        header = {"alg": "RS256", "kid": self.key.kid, "typ": ACCESS_TOKEN_TYPE}
        return jwt.encode(header, claims, self.key, algorithms=["RS256"])

    async def key_set(self, kid: str | None) -> KeySet:
        # Imported once: importing an RSA key costs more than verifying a signature with it.
        if self._public is None:
            self._public = KeySet([RSAKey.import_key(self.key.as_dict(private=False))])
        return self._public


# --- FastAPI dependencies: every route takes the acting principal from here ---------------------


async def current_principal(request: Request) -> Principal:
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("a bearer token is required", code="missing-token")
    verifier: TokenVerifier = request.app.state.verifier
    principal = await verifier.verify(token.strip())
    # The app's rate limit per principal (cleave.web.guards), counted once the token is proven.
    guard: Callable[[Principal], Awaitable[None]] | None = getattr(
        request.app.state, "principal_guard", None
    )
    if guard is not None:
        await guard(principal)
    if not is_unit(principal.subject, principal.client_id, principal.scopes):
        act_for(principal.subject)  # calls this request makes to other units act for this person
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


# The scope each dependency below requires, so the OpenAPI document can say it per operation.
_REQUIRED_SCOPE: dict[Callable[..., Any], str] = {}


def required_scope(dependency: Callable[..., Any]) -> str | None:
    return _REQUIRED_SCOPE.get(dependency)


def scoped(scope: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency: the principal, who must hold `scope` (or be an admin)."""

    async def dependency(principal: CurrentPrincipal) -> Principal:
        if principal.is_client and not principal.is_admin:
            # These routes act for the person the token names; a client is no person.
            raise Forbidden(
                "this call acts for a signed-in user: a client's own token cannot make it",
                code="client-token",
            )
        principal.require(scope)
        return principal

    _REQUIRED_SCOPE[dependency] = scope
    return dependency


async def _admin(principal: CurrentPrincipal) -> Principal:
    if not principal.is_admin:
        raise Forbidden("this call needs the 'admin' scope", code="insufficient-scope")
    return principal


_REQUIRED_SCOPE[_admin] = ADMIN_SCOPE
AdminPrincipal = Annotated[Principal, Depends(_admin)]
