"""Getting tokens from any OpenID Connect provider with a standard client (Authlib's httpx
client): client credentials, and the authorization code flow with PKCE for a person, signing in
through the provider's own HTML sign-in form as a browser would."""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Iterable
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

with warnings.catch_warnings():
    # Authlib asks for httpx2 here; it works on httpx, which this project uses throughout.
    import authlib.deprecate  # noqa: F401 - installs an "always" filter that the next line beats

    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.integrations.base_client.errors import OAuthError
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuth2Client

from cleave.auth.oidc import DISCOVERY_PATH
from cleave.errors import CleaveError

__all__ = [
    "AsyncOAuth2Client",
    "OAuthError",
    "authorization_code_token",
    "client_credentials_token",
    "fetch_client_credentials",
]


def discover(issuer: str, *, transport: httpx.BaseTransport | None = None) -> dict[str, Any]:
    try:
        with httpx.Client(transport=transport, timeout=10) as http:
            response = http.get(issuer.rstrip("/") + DISCOVERY_PATH)
    except httpx.HTTPError as error:
        raise CleaveError(
            f"cannot reach the OpenID provider at {issuer} ({error}); is `cleave up` running?"
        ) from None
    if response.status_code != 200:
        raise CleaveError(f"{issuer} has no discovery document (HTTP {response.status_code})")
    document: dict[str, Any] = response.json()
    return document


def client_credentials_token(
    issuer: str, client_id: str, secret: str, scopes: Iterable[str] = ()
) -> dict[str, Any]:
    endpoints = discover(issuer)
    with OAuth2Client(client_id, secret, scope=" ".join(scopes) or None, timeout=10) as client:
        return _checked(lambda: client.fetch_token(endpoints["token_endpoint"]))


async def fetch_client_credentials(
    issuer: str,
    client_id: str,
    secret: str,
    scopes: Iterable[str] = (),
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, Any]:
    """The client credentials grant from inside a running unit, without blocking its loop."""
    try:
        async with AsyncOAuth2Client(
            client_id,
            secret,
            scope=" ".join(scopes) or None,
            timeout=10,
            transport=transport,
            trust_env=False,
        ) as client:
            discovery = issuer.rstrip("/") + DISCOVERY_PATH
            response = await client.request("GET", discovery, withhold_token=True)
            if response.status_code != 200:
                raise CleaveError(
                    f"{issuer} has no discovery document (HTTP {response.status_code})"
                )
            endpoint = response.json()["token_endpoint"]
            return dict(await client.fetch_token(endpoint, grant_type="client_credentials"))
    except httpx.HTTPError as error:
        raise CleaveError(f"the token request to {issuer} failed: {error}") from None
    except OAuthError as error:
        raise CleaveError(f"the provider refused: {error.description or error.error}") from None


def authorization_code_token(
    issuer: str,
    *,
    client_id: str,
    redirect_uri: str,
    email: str,
    password: str,
    scopes: Iterable[str],
) -> dict[str, Any]:
    """The whole code flow: authorize, sign in on the provider's page, exchange code + verifier."""
    endpoints = discover(issuer)
    verifier = secrets.token_urlsafe(64)
    with OAuth2Client(
        client_id,
        scope=" ".join(scopes),
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        timeout=10,
    ) as client:
        url, _state = client.create_authorization_url(
            endpoints["authorization_endpoint"], code_verifier=verifier
        )
        callback = _follow_to_callback(client, url, redirect_uri, email, password)
        return _checked(
            lambda: client.fetch_token(
                endpoints["token_endpoint"], authorization_response=callback, code_verifier=verifier
            )
        )


def _follow_to_callback(
    http: OAuth2Client, url: str, redirect_uri: str, email: str, password: str
) -> str:
    """Follow the provider's redirects, filling its sign-in form once, until it sends the
    browser back to `redirect_uri` (which needs no listener: the code is read from the URL)."""
    response = http.request("GET", url, withhold_token=True)
    signed_in = False
    for _ in range(10):
        if response.is_redirect:
            location = urljoin(str(response.url), response.headers["location"])
            if location.startswith(redirect_uri):
                _raise_callback_error(location)
                return str(location)
            response = http.request("GET", location, withhold_token=True)
            continue
        if response.headers.get("content-type", "").startswith("application/problem+json"):
            problem = response.json()
            raise CleaveError(f"the provider refused: {problem.get('detail') or problem}")
        form = _SignInForm.parse(response.text)
        if signed_in or form.action is None:
            raise CleaveError(f"sign-in failed: {form.message or f'HTTP {response.status_code}'}")
        fields = {**form.hidden, "email": email, "password": password}
        target = urljoin(str(response.url), form.action)
        response = http.request("POST", target, data=fields, withhold_token=True)
        signed_in = True
    raise CleaveError("the provider redirected too many times")


def _raise_callback_error(callback: str) -> None:
    """An authorization response may carry an error instead of a code (RFC 6749 §4.1.2.1)."""
    query = parse_qs(urlsplit(callback).query)
    if error := query.get("error", [""])[0]:
        description = query.get("error_description", [""])[0]
        raise CleaveError(f"the provider refused: {description or error} ({error})")


def _checked(fetch: Any) -> dict[str, Any]:
    try:
        token: dict[str, Any] = dict(fetch())
    except httpx.HTTPError as error:
        raise CleaveError(f"the token request failed: {error}") from None
    except OAuthError as error:
        description = error.description or error.error
        raise CleaveError(f"the provider refused: {description}") from None
    return token


class _SignInForm(HTMLParser):
    """The first form with a password field: its action and hidden fields, and any alert text."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.hidden: dict[str, str] = {}
        self.message = ""
        self._form: tuple[str, dict[str, str], bool] | None = None
        self._in_alert = False

    @classmethod
    def parse(cls, html: str) -> _SignInForm:
        parser = cls()
        parser.feed(html)
        return parser

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form" and self.action is None:
            self._form = (attributes.get("action", ""), {}, False)
        elif tag == "input" and self._form is not None:
            action, hidden, has_password = self._form
            if attributes.get("type") == "hidden":
                hidden[attributes.get("name", "")] = attributes.get("value", "")
            self._form = (action, hidden, has_password or attributes.get("type") == "password")
        self._in_alert = attributes.get("role") == "alert"

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._form is not None:
            action, hidden, has_password = self._form
            if has_password and self.action is None:
                self.action, self.hidden = action, hidden
            self._form = None
        self._in_alert = False

    def handle_data(self, data: str) -> None:
        if self._in_alert:
            self.message += data
