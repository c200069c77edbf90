"""The storefront as a confidential OpenID Connect client of the system's issuer.

Authorization code flow with PKCE (S256), `state` and `nonce`; the code is exchanged on the
server with the client's secret (`client_secret_basic`), the ID token is verified against the
issuer's JWKS (signature, `iss`, `aud`, expiry, `nonce`), the `iss` of the authorization
response is checked (RFC 9207), refresh tokens are used (and rotated) before the access token
runs out, and signing out revokes the refresh token (RFC 7009) and ends the provider's session
too (RP-initiated logout). Tokens never leave the server.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jws, jwt
from joserfc.errors import JoseError

from cleave.auth.oidc import DISCOVERY_PATH, OidcKeySource
from cleave.errors import ServiceUnavailable
from shop.storefront.session import Person, Tokens


class SignInFailed(Exception):
    """The provider said no, or its answer does not check out; `reason` is for the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RelyingParty:
    def __init__(
        self,
        *,
        issuer: str,
        client_id: str,
        secret: Callable[[], str | None],
        redirect_uri: str,
        scopes: frozenset[str],
        http: httpx.AsyncClient,
        keys: OidcKeySource,
    ) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self._secret = secret
        self.redirect_uri = redirect_uri
        self.scopes = scopes
        self._http = http
        self._keys = keys
        self._metadata: dict[str, Any] | None = None

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            answer = await self._call("GET", self.issuer + DISCOVERY_PATH)
            document: dict[str, Any] = answer.json()
            if document.get("issuer") != self.issuer:
                raise SignInFailed(f"the discovery document names issuer {document.get('issuer')}")
            self._metadata = document
        return self._metadata

    @staticmethod
    def new_login(return_to: str) -> dict[str, str]:
        return {
            "state": secrets.token_urlsafe(24),
            "nonce": secrets.token_urlsafe(24),
            "verifier": secrets.token_urlsafe(48),
            "return_to": return_to,
        }

    async def authorization_url(self, login: dict[str, str], *, sign_up: bool = False) -> str:
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": " ".join(sorted(self.scopes)),
            "state": login["state"],
            "nonce": login["nonce"],
            "code_challenge": create_s256_code_challenge(login["verifier"]),
            "code_challenge_method": "S256",
        }
        if sign_up:
            params["prompt"] = "create"
        return f"{(await self.metadata())['authorization_endpoint']}?{urlencode(params)}"

    async def finish(self, login: dict[str, str], query: dict[str, str]) -> tuple[Person, Tokens]:
        """Check the provider's answer at the callback, exchange the code, verify the ID token."""
        if not hmac.compare_digest(query.get("state", ""), login["state"]):
            raise SignInFailed("the state does not match the sign-in this browser started")
        if "iss" in query and query["iss"] != self.issuer:
            raise SignInFailed(f"the answer came from issuer {query['iss']}")
        if "error" in query:
            raise SignInFailed(f"{query['error']}: {query.get('error_description', '')}")
        issued = await self._token(
            {
                "grant_type": "authorization_code",
                "code": query.get("code", ""),
                "redirect_uri": self.redirect_uri,
                "code_verifier": login["verifier"],
            }
        )
        claims = await self._id_claims(issued.get("id_token", ""), login["nonce"])
        person = Person(
            subject=str(claims["sub"]),
            name=str(claims.get("name") or claims.get("email") or "you"),
            email=str(claims.get("email", "")),
        )
        return person, _tokens(issued)

    async def refresh(self, tokens: Tokens) -> Tokens:
        if not tokens.refresh_token:
            raise SignInFailed("no refresh token")
        issued = await self._token(
            {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token}
        )
        refreshed = _tokens(issued)
        refreshed.id_token = refreshed.id_token or tokens.id_token
        return refreshed

    async def revoke(self, tokens: Tokens) -> None:
        endpoint = (await self.metadata()).get("revocation_endpoint")
        if endpoint and tokens.refresh_token:
            await self._call(
                "POST",
                endpoint,
                data={"token": tokens.refresh_token, "token_type_hint": "refresh_token"},
                auth=self._auth(),
            )

    async def end_session_url(self, tokens: Tokens | None, after: str) -> str | None:
        """Where the browser goes to end the provider's session too, then comes back to `after`."""
        endpoint = (await self.metadata()).get("end_session_endpoint")
        if not endpoint:
            return None
        params = {"client_id": self.client_id, "post_logout_redirect_uri": after}
        if tokens and tokens.id_token:
            params["id_token_hint"] = tokens.id_token
        return f"{endpoint}?{urlencode(params)}"

    def _auth(self) -> httpx.BasicAuth:
        secret = self._secret()
        if not secret:
            raise SignInFailed(f"no client secret for {self.client_id} (run `cleave seed`)")
        return httpx.BasicAuth(self.client_id, secret)

    async def _token(self, form: dict[str, str]) -> dict[str, Any]:
        endpoint = (await self.metadata())["token_endpoint"]
        answer = await self._call("POST", endpoint, data=form, auth=self._auth())
        issued: dict[str, Any] = answer.json()
        if answer.status_code != 200 or "access_token" not in issued:
            raise SignInFailed(f"{issued.get('error')}: {issued.get('error_description')}")
        return issued

    async def _id_claims(self, id_token: str, nonce: str) -> dict[str, Any]:
        try:
            kid = jws.extract_compact(id_token.encode()).headers().get("kid")
            keys = await self._keys.key_set(kid if isinstance(kid, str) else None)
            decoded = jwt.decode(id_token, keys, algorithms=["RS256", "ES256", "EdDSA"])
            jwt.JWTClaimsRegistry(
                leeway=30,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.client_id},
                sub={"essential": True},
                exp={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(decoded.claims)
        except (JoseError, ValueError) as error:
            raise SignInFailed(f"the ID token does not check out: {error}") from None
        return dict(decoded.claims)

    async def _call(self, method: str, url: str, **options: Any) -> httpx.Response:
        try:
            answer = await self._http.request(method, url, **options)
        except httpx.TransportError as error:
            raise ServiceUnavailable(
                f"the identity provider at {self.issuer} is not answering: {error}",
                code="identity-unavailable",
                service="identity",
            ) from None
        if answer.status_code >= 500:
            raise ServiceUnavailable(
                f"the identity provider answered {answer.status_code}",
                code="identity-unavailable",
                service="identity",
            )
        return answer


def _tokens(issued: dict[str, Any]) -> Tokens:
    lifetime = float(issued.get("expires_in", 300))
    return Tokens(
        access_token=str(issued["access_token"]),
        refresh_token=issued.get("refresh_token"),
        id_token=issued.get("id_token"),
        expires_at=time.time() + lifetime,
        lifetime=lifetime,
    )
