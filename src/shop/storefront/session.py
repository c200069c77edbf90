"""A browser's session with the storefront: one random cookie, and what the server keeps for it.

The cookie is the only secret the browser holds (`HttpOnly`, `SameSite=Lax`, `Secure` when the
site is served over https). The server keeps, under a hash of it, the signed-in person and their
tokens, sealed (AES-GCM) with a key derived from the cookie: the table alone opens no session and
reveals no token. The CSRF token of every form is derived from the cookie too, so a page of
another site can neither read nor forge it. A visitor's cart needs no server-side session: it is
keyed by the cookie's hash. Signing in starts a new cookie (no session fixation).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from starlette.requests import Request
from starlette.responses import Response

SESSION_DAYS = 30
PLAIN_COOKIE = "shop_session"
# On https the `__Host-` prefix also stops a sibling domain or a plain-http page setting it.
SECURE_COOKIE = "__Host-shop_session"


def cookie_name(secure: bool) -> str:
    return SECURE_COOKIE if secure else PLAIN_COOKIE


@dataclass
class Tokens:
    access_token: str
    refresh_token: str | None
    id_token: str | None
    expires_at: float  # epoch seconds
    lifetime: float = 600.0

    def expiring(self) -> bool:
        """Close enough to its end to refresh first: the last quarter, at most 30 s."""
        return self.expires_at - time.time() < min(30.0, self.lifetime / 4)


@dataclass
class Person:
    """Who is signed in, from their ID token."""

    subject: str
    name: str
    email: str


@dataclass
class Held:
    """What the server keeps for a session, sealed."""

    person: Person | None = None
    tokens: Tokens | None = None
    login: dict[str, str] | None = None  # state, nonce, PKCE verifier and return path

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "person": vars(self.person) if self.person else None,
                "tokens": vars(self.tokens) if self.tokens else None,
                "login": self.login,
            }
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Held:
        data: dict[str, Any] = json.loads(raw)
        return cls(
            person=Person(**data["person"]) if data.get("person") else None,
            tokens=Tokens(**data["tokens"]) if data.get("tokens") else None,
            login=data.get("login"),
        )


@dataclass
class BrowserSession:
    secret: str  # the cookie's value
    is_new: bool  # the response must set the cookie
    held: Held = field(default_factory=Held)

    @classmethod
    def new(cls) -> BrowserSession:
        return cls(secrets.token_urlsafe(32), is_new=True)

    @property
    def id_hash(self) -> str:
        return _derive(self.secret, b"id").hex()

    @property
    def csrf_token(self) -> str:
        return base64.urlsafe_b64encode(_derive(self.secret, b"csrf")[:18]).decode()

    def csrf_ok(self, token: str) -> bool:
        return not self.is_new and hmac.compare_digest(self.csrf_token, token)

    @property
    def person(self) -> Person | None:
        return self.held.person if self.held.tokens else None

    @property
    def cart_owner(self) -> str:
        person = self.person
        return f"c:{person.subject}" if person else f"v:{self.id_hash}"

    def seal(self) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + AESGCM(_derive(self.secret, b"seal")).encrypt(
            nonce, self.held.to_json(), None
        )

    def unseal(self, sealed: bytes) -> Held:
        """What was sealed under this cookie; nothing if it was sealed under another."""
        try:
            raw = AESGCM(_derive(self.secret, b"seal")).decrypt(sealed[:12], sealed[12:], None)
        except (InvalidTag, ValueError):
            return Held()
        return Held.from_json(raw)


def _derive(secret: str, purpose: bytes) -> bytes:
    return hmac.new(secret.encode(), purpose, hashlib.sha256).digest()


def from_request(request: Request, *, secure: bool) -> BrowserSession:
    """The browser's session as its cookie names it, or a new one (not yet kept anywhere)."""
    value = request.cookies.get(cookie_name(secure), "")
    if 40 <= len(value) <= 64 and value.replace("-", "").replace("_", "").isalnum():
        return BrowserSession(value, is_new=False)
    return BrowserSession.new()


def set_cookie(response: Response, session: BrowserSession, *, secure: bool) -> None:
    response.set_cookie(
        cookie_name(secure),
        session.secret,
        max_age=SESSION_DAYS * 24 * 3600,
        path="/",
        httponly=True,
        samesite="lax",
        secure=secure,
    )
