"""Who may use the console, and what every one of its answers carries.

The rule: the console is open only on a system of one unit that listens on loopback alone and
is reached there (`cleave up` of the monolith on 127.0.0.1), and its pages say so. Everywhere
else (the gateway of a split, a monolith on another address or behind a public URL elsewhere)
an administrator signs in through the system's OpenID provider: authorization code with PKCE
(S256) as the public client `cleave-console`, asking for the `admin` scope (which the provider
grants only to administrators; a token without it is a 403) and for `openid email`, to show
whom. The session is a cookie the console signs (HS256, a key of this process: a restart signs
everyone out, and signing in again is one round trip), `HttpOnly`, `SameSite=Strict`, `Secure`
over https, for an hour; it carries a CSRF token that every state-changing form sends back.
Scripts may read the JSON API with an admin's bearer token instead (`cleave token --scope
admin`).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from html import escape
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from cleave.auth.oidc import DISCOVERY_PATH
from cleave.auth.tokens import Principal, TokenVerifier
from cleave.config import SystemConfig
from cleave.errors import Problem, ServiceUnavailable, Unauthorized
from cleave.service.context import CONSOLE_CALLBACK_PATH, CONSOLE_CLIENT
from cleave.web.app import problem_response
from cleave.web.clients import cookieless_client

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
SIGN_IN_PATH = "/console/sign-in"
SIGN_OUT_PATH = "/console/sign-out"
SIGNED_OUT_PATH = "/console/signed-out"
STYLE_PATH = "/console/console.css"
SCRIPT_PATH = "/console/console.js"
SESSION_SECONDS = 3600
LOGIN_SECONDS = 600
# The one stylesheet and the one script are the console's own files (no inline script or
# style); the script may open only the console's own event streams; nothing may frame it.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

CSRF_REFUSED = "the form's CSRF token is missing or not this session's"

Endpoint = Callable[[Request], Awaitable[Response]]
Kind = Literal["page", "api", "action"]


def sign_in_required(config: SystemConfig, host: str) -> bool:
    """False only for one unit listening on loopback and reached at a loopback public URL."""
    public = urlsplit(config.public_url).hostname or ""
    return len(config.topology.units) > 1 or host not in LOOPBACK or public not in LOOPBACK


SCOPES = "openid email admin"


@dataclass(frozen=True)
class Session:
    """Who uses the console in this browser (`who`: their email, else their subject); both are
    empty on an open console."""

    subject: str
    admin: bool
    csrf: str
    who: str = ""


def page(title: str, body: str, *, status: int = 200, head: str = "") -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
        f'<link rel=stylesheet href="{STYLE_PATH}">{head}</head><body>{body}</body></html>',
        status_code=status,
    )


def secured(endpoint: Endpoint) -> Endpoint:
    """The endpoint, its every answer with the console's security headers."""

    async def answer(request: Request) -> Response:
        response = await endpoint(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    return answer


class ConsoleAccess:
    def __init__(
        self,
        config: SystemConfig,
        *,
        sign_in: bool,
        verifier: TokenVerifier | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if sign_in and verifier is None:
            raise ValueError("a console that signs people in needs a token verifier")
        self.sign_in = sign_in
        self.issuer = config.issuer
        self.redirect_uri = config.public_url + CONSOLE_CALLBACK_PATH
        self.secure = config.public_url.startswith("https://")
        # `__Secure-` keeps a plain-http page from setting it; the path keeps it to the console.
        self.cookie = ("__Secure-" if self.secure else "") + "cleave_console"
        self.login_cookie = self.cookie + "_login"
        self._verifier = verifier
        self._transport = transport  # the provider in this process, when the unit serves it
        self._key = OctKey.import_key(secrets.token_bytes(32))
        self._metadata: dict[str, Any] | None = None

    # --- the session ------------------------------------------------------------------------

    def session_of(self, request: Request) -> Session | None:
        """The browser's console session; None when it has none, or when the provider has since
        revoked the person or their sign-in session (a disabled admin is out at the next click)."""
        claims = self._unsealed(request.cookies.get(self.cookie, ""), "session")
        if claims is None:
            return None
        revocations = self._verifier.revocations if self._verifier is not None else None
        if revocations is not None and revocations.revoked(
            {"sub": claims["sub"], "sid": claims.get("sid")}
        ):
            return None
        return Session(
            str(claims["sub"]), bool(claims["admin"]), str(claims["csrf"]), str(claims["who"])
        )

    def csrf_ok(self, session: Session, sent: str) -> bool:
        return bool(sent) and hmac.compare_digest(session.csrf, sent)

    def start_session(
        self,
        response: Response,
        subject: str,
        *,
        admin: bool,
        who: str = "",
        provider_session: str | None = None,
    ) -> Session:
        session = Session(subject, admin, secrets.token_urlsafe(24), who or subject)
        claims = {"sub": subject, "admin": admin, "csrf": session.csrf, "who": session.who}
        if provider_session:
            claims["sid"] = provider_session
        self._set(response, self.cookie, self._sealed(claims, "session", SESSION_SECONDS))
        return session

    def _set(self, response: Response, name: str, value: str, *, login: bool = False) -> None:
        response.set_cookie(
            name,
            value,
            max_age=LOGIN_SECONDS if login else SESSION_SECONDS,
            path=CONSOLE_CALLBACK_PATH if login else "/console",
            httponly=True,
            # The provider's answer may come from another site: only that one cookie is Lax.
            samesite="lax" if login else "strict",
            secure=self.secure,
        )

    def _sealed(self, claims: dict[str, Any], purpose: str, seconds: int) -> str:
        now = int(time.time())
        body = {**claims, "use": purpose, "iat": now, "exp": now + seconds}
        return jwt.encode({"alg": "HS256"}, body, self._key, algorithms=["HS256"])

    def _unsealed(self, value: str, purpose: str) -> dict[str, Any] | None:
        if not value or len(value) > 4096:
            return None
        try:
            token = jwt.decode(value, self._key, algorithms=["HS256"])
            jwt.JWTClaimsRegistry(
                exp={"essential": True}, use={"essential": True, "value": purpose}
            ).validate(token.claims)
        except (JoseError, ValueError, TypeError):
            return None
        return dict(token.claims)

    # --- the guard --------------------------------------------------------------------------

    def guard(
        self, endpoint: Callable[[Request, Session], Awaitable[Response]], kind: Kind
    ) -> Endpoint:
        """`endpoint`, for an administrator only: a page sends anyone else to sign in, the API
        answers 401 (or takes an admin's bearer token), an action needs its CSRF token too."""

        async def guarded(request: Request) -> Response:
            session = self.session_of(request)
            bearer = self.sign_in and kind == "api" and "authorization" in request.headers
            if session is None and bearer:
                try:
                    principal = await self._bearer(request)
                except Problem as problem:
                    return self._problem(problem.status, problem.detail, problem.code)
                if not principal.is_admin:
                    return self._problem(403, "the console is for administrators", "not-admin")
                return await endpoint(request, Session(principal.subject, True, "", ""))
            opened = None
            if session is None and not self.sign_in and kind != "action":
                opened = Response()  # an open console still keeps a session: for its CSRF token
                session = self.start_session(opened, "", admin=True)
            if session is None:
                if kind == "page":
                    target = f"{SIGN_IN_PATH}?{urlencode({'next': _local(request)})}"
                    return RedirectResponse(target, status_code=303)
                if self.sign_in:
                    return self._problem(401, "sign in to the console first", "sign-in-required")
                return self._problem(403, CSRF_REFUSED, "csrf")
            if not session.admin:
                if kind == "page":
                    return self._not_admin(session)
                return self._problem(403, "the console is for administrators", "not-admin")
            if kind == "action" and not self.csrf_ok(
                session, (await form_of(request)).get("csrf", "")
            ):
                return self._problem(403, CSRF_REFUSED, "csrf")
            response = await endpoint(request, session)
            if opened is not None:
                response.raw_headers += [h for h in opened.raw_headers if h[0] == b"set-cookie"]
            return response

        return guarded

    async def _bearer(self, request: Request) -> Principal:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("a bearer token is required", code="missing-token")
        if self._verifier is None:
            raise Unauthorized("this console takes no bearer tokens", code="invalid-token")
        return await self._verifier.verify(token.strip())

    def _problem(self, status: int, detail: str, code: str | None) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return problem_response(status, detail, code=code, headers=headers)

    def _not_admin(self, session: Session) -> Response:
        return page(
            "Administrators only",
            f"<h1>Administrators only</h1><p>You are signed in as "
            f"<b>{escape(session.who)}</b>, who is not an administrator of this system.</p>"
            f"{self.sign_out_form(session)}",
            status=403,
        )

    # --- what the pages show ----------------------------------------------------------------

    def banner(self, session: Session) -> str:
        if not self.sign_in:
            return (
                "<p id=access class=notice>This console is open: it signs nobody in, because "
                "this system is one process listening on this machine's loopback address only. "
                "With several units, or on any other address, an administrator signs in.</p>"
            )
        return (
            f"<p id=access>Signed in as <b>{escape(session.who)}</b> (administrator). "
            f"{self.sign_out_form(session)}</p>"
        )

    def sign_out_form(self, session: Session) -> str:
        return (
            f'<form method=post action="{SIGN_OUT_PATH}" class=inline>'
            f'<input type=hidden name=csrf value="{escape(session.csrf)}">'
            "<button>Sign out</button></form>"
        )

    # --- signing in and out -----------------------------------------------------------------

    def routes(self) -> list[tuple[str, Endpoint, list[str]]]:
        return [
            (SIGN_IN_PATH, _reporting(self._sign_in), ["GET"]),
            (CONSOLE_CALLBACK_PATH, _reporting(self._callback), ["GET"]),
            (SIGN_OUT_PATH, self._sign_out, ["POST"]),
            (SIGNED_OUT_PATH, self._signed_out, ["GET"]),
        ]

    async def _sign_in(self, request: Request) -> Response:
        if not self.sign_in:
            return RedirectResponse("/console", status_code=303)
        login = {
            "state": secrets.token_urlsafe(24),
            "verifier": secrets.token_urlsafe(48),
            "next": _safe_next(request.query_params.get("next", "")),
        }
        params = {
            "response_type": "code",
            "client_id": CONSOLE_CLIENT,
            "redirect_uri": self.redirect_uri,
            "scope": SCOPES,
            "state": login["state"],
            "code_challenge": create_s256_code_challenge(login["verifier"]),
            "code_challenge_method": "S256",
        }
        endpoint = (await self._provider())["authorization_endpoint"]
        response = RedirectResponse(f"{endpoint}?{urlencode(params)}", status_code=303)
        self._set(
            response, self.login_cookie, self._sealed(login, "login", LOGIN_SECONDS), login=True
        )
        return response

    async def _callback(self, request: Request) -> Response:
        login = self._unsealed(request.cookies.get(self.login_cookie, ""), "login")
        query = request.query_params
        if login is None or not hmac.compare_digest(str(login["state"]), query.get("state", "")):
            return self._failed("This sign-in expired or was started in another browser.")
        if "iss" in query and query["iss"] != self.issuer:
            return self._failed("The answer came from another OpenID provider.")
        if "error" in query:
            return self._failed(
                f"The OpenID provider said: {query.get('error_description') or query['error']}."
            )
        answer = await self._http(
            "POST",
            (await self._provider())["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": query.get("code", ""),
                "redirect_uri": self.redirect_uri,
                "client_id": CONSOLE_CLIENT,
                "code_verifier": str(login["verifier"]),
            },
        )
        issued = (
            answer.json()
            if answer.headers.get("content-type", "").startswith("application/json")
            else {}
        )
        if answer.status_code != 200 or "access_token" not in issued:
            why = issued.get("error_description") or f"HTTP {answer.status_code}"
            return self._failed(f"The OpenID provider refused the sign-in: {why}.")
        assert self._verifier is not None
        try:
            principal = await self._verifier.verify(str(issued["access_token"]))
        except Unauthorized as refused:  # a provider that is away is a 503, from `_reporting`
            return self._failed(
                f"The OpenID provider's token does not check out: {refused.detail}."
            )
        target = _safe_next(str(login["next"]))
        # A page of our own moves on, so the Strict cookie goes with the next request even when
        # the provider is another site (a redirect chain from there would leave it behind).
        response = page(
            "Signed in",
            f'<h1>Signed in</h1><p><a href="{escape(target)}">Continue to the console</a></p>',
            head=f'<meta http-equiv=refresh content="0;url={escape(target)}">',
        )
        who = await self._email(str(issued["access_token"]))
        self.start_session(
            response,
            principal.subject,
            admin=principal.is_admin,
            who=who,
            provider_session=principal.session_id,
        )
        response.delete_cookie(self.login_cookie, path=CONSOLE_CALLBACK_PATH)
        return response

    async def _sign_out(self, request: Request) -> Response:
        session = self.session_of(request)
        if session is None or not self.csrf_ok(session, (await form_of(request)).get("csrf", "")):
            return self._problem(403, CSRF_REFUSED, "csrf")
        response = RedirectResponse(SIGNED_OUT_PATH, status_code=303)
        response.delete_cookie(
            self.cookie, path="/console", secure=self.secure, httponly=True, samesite="strict"
        )
        return response

    async def _signed_out(self, _request: Request) -> Response:
        return page(
            "Signed out",
            "<h1>Signed out of the console</h1><p><a href=/console>Sign in again</a></p>",
        )

    def _failed(self, why: str) -> Response:
        return page(
            "Sign-in failed",
            f"<h1>Sign-in failed</h1><p>{escape(why)}</p>"
            f"<p><a href={SIGN_IN_PATH}>Try again</a></p>",
            status=400,
        )

    async def _email(self, access_token: str) -> str:
        """The person's email from the provider's userinfo, or nothing (then their subject)."""
        endpoint = (await self._provider()).get("userinfo_endpoint")
        if not isinstance(endpoint, str):
            return ""
        answer = await self._http(
            "GET", endpoint, headers={"Authorization": f"Bearer {access_token}"}
        )
        try:
            claims = answer.json() if answer.status_code == 200 else {}
        except ValueError:
            return ""
        return str(claims.get("email", "")) if isinstance(claims, dict) else ""

    async def _provider(self) -> dict[str, Any]:
        if self._metadata is None:
            answer = await self._http("GET", self.issuer.rstrip("/") + DISCOVERY_PATH)
            try:
                document = answer.json() if answer.status_code == 200 else {}
            except ValueError:
                document = {}
            if not isinstance(document, dict) or document.get("issuer") != self.issuer:
                raise ServiceUnavailable(
                    f"{self.issuer} has no usable discovery document", code="issuer-unavailable"
                )
            self._metadata = document
        return self._metadata

    async def _http(self, method: str, url: str, **options: Any) -> httpx.Response:
        try:
            async with cookieless_client(transport=self._transport, timeout=10) as http:
                return await http.request(method, url, **options)
        except httpx.TransportError as error:
            raise ServiceUnavailable(
                f"the OpenID provider at {self.issuer} is not answering: {error}",
                code="issuer-unavailable",
            ) from None


def _reporting(endpoint: Endpoint) -> Endpoint:
    """A sign-in step whose provider is away answers 503 with a page that says so."""

    async def answer(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ServiceUnavailable as away:
            response = page(
                "Sign-in unavailable",
                f"<h1>Sign-in is unavailable</h1><p>{escape(away.detail)}; try again shortly.</p>",
                status=503,
            )
            response.headers["Retry-After"] = "1"
            return response

    return answer


async def form_of(request: Request) -> dict[str, str]:
    """A form-encoded body's fields (the first of each name); anything else has none."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    fields: dict[str, str] = {}
    for name, value in parse_qsl((await request.body()).decode("utf-8", "replace")):
        fields.setdefault(name, value)
    return fields


def _local(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def _safe_next(target: str) -> str:
    """Back into the console only: never an open redirect."""
    if target.startswith("/console") and "//" not in target and "\\" not in target:
        return target
    return "/console"
