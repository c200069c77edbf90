"""The OpenID Connect provider's routes, under /api/identity/v1: discovery, JWKS, authorize,
token, revocation, introspection, userinfo, and the sign-in, sign-up and sign-out pages."""

from __future__ import annotations

import base64
import hmac
import secrets
from typing import Annotated, Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from joserfc import jwt
from joserfc.errors import JoseError

from cleave.auth.revocation import LISTING_PATH
from cleave.auth.tokens import CurrentPrincipal
from cleave.auth.units import is_unit
from cleave.clock import utcnow
from cleave.errors import Forbidden, Unauthorized, Unprocessable
from cleave.service import ServiceContext
from cleave.service.api import context_of
from shop.identity import handlers, pages, tokens
from shop.identity.domain import Account, OAuthError, granted_scopes, person_scopes

router = APIRouter()
Context = Annotated[ServiceContext, Depends(context_of("identity"))]

SESSION_COOKIE = "cleave_session"
CSRF_COOKIE = "cleave_csrf"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
REGISTERED_NOTICE = "If that email was not registered before, your account is ready: sign in."
FAILED_SIGN_IN = "That email and password do not match an active account."
PAUSED_SIGN_IN = "Too many failed attempts: sign-in is paused for a while. Try again later."


def _oauth_error(error: OAuthError) -> JSONResponse:
    headers = dict(NO_STORE)
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="cleave"'
    return JSONResponse(
        {"error": error.error, "error_description": error.description},
        status_code=error.status,
        headers=headers,
    )


async def _form(request: Request) -> dict[str, str]:
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise OAuthError("invalid_request", "send the parameters form-encoded")
    body = (await request.body()).decode("utf-8", "replace")
    pairs = parse_qsl(body, keep_blank_values=True)
    names = [name for name, _ in pairs]
    if len(names) != len(set(names)):
        raise OAuthError("invalid_request", "a parameter appears twice")
    return dict(pairs)


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str | None, str | None]:
    """client_secret_basic or client_secret_post; a public client sends only its client_id."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            raise OAuthError("invalid_client", "malformed Basic credentials", status=401) from None
        return unquote(client_id), unquote(secret)
    return form.get("client_id"), form.get("client_secret")


async def _authenticated_client(
    context: ServiceContext, request: Request, form: dict[str, str]
) -> handlers.Client:
    client_id, secret = _client_credentials(request, form)
    async with context.read() as connection:
        return await handlers.authenticate_client(connection, client_id, secret)


# --- discovery and keys -----------------------------------------------------------------------


@router.get("/.well-known/openid-configuration", summary="OpenID Connect discovery")
async def discovery(context: Context) -> dict[str, Any]:
    issuer = context.system.issuer
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/jwks",
        "revocation_endpoint": f"{issuer}/revoke",
        "introspection_endpoint": f"{issuer}/introspect",
        "end_session_endpoint": f"{issuer}/sign-out",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [tokens.ALGORITHM],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["none", "login", "create"],
        "scopes_supported": sorted(
            {"openid", "profile", "email", "orders:read", "orders:write", "payments:read", "admin"}
        ),
        "claims_supported": ["sub", "email", "email_verified", "name", "auth_time", "nonce"],
        "authorization_response_iss_parameter_supported": True,
    }


@router.get("/jwks", summary="The provider's public signing keys (JWKS)")
async def jwks(context: Context, response: Response) -> dict[str, Any]:
    now = utcnow()
    async with context.read() as connection:
        key_set = await tokens.public_key_set(connection, now)
    if not key_set.keys:
        async with context.unit_of_work() as uow:
            await tokens.ensure_signing_key(uow.connection, now)
            key_set = await tokens.public_key_set(uow.connection, now)
    response.headers["Cache-Control"] = "public, max-age=60"
    return tokens.jwks(key_set)


# --- the authorization endpoint ---------------------------------------------------------------


@router.get("/authorize", name="authorize", summary="Authorization code flow with PKCE (S256)")
async def authorize(request: Request, context: Context) -> Response:
    query = dict(request.query_params)
    async with context.read() as connection:
        client = await handlers.find_client(connection, query.get("client_id", ""))
    redirect_uri = query.get("redirect_uri", "")
    # Never redirect to an address that is not registered exactly: show the error instead.
    if client is None:
        return pages.message("Sign-in failed", "This application is not known.", status=400)
    if redirect_uri not in client.redirect_uris:
        return pages.message(
            "Sign-in failed", "The redirect address is not registered for this app.", status=400
        )
    state = query.get("state")

    def back(**params: str) -> RedirectResponse:
        params = {**params, "iss": context.system.issuer}
        if state is not None:
            params["state"] = state
        separator = "&" if urlsplit(redirect_uri).query else "?"
        return RedirectResponse(f"{redirect_uri}{separator}{urlencode(params)}", status_code=302)

    if query.get("response_type") != "code":
        return back(error="unsupported_response_type", error_description="only code is supported")
    if "authorization_code" not in client.grant_types:
        return back(error="unauthorized_client", error_description="no code flow for this client")
    challenge = query.get("code_challenge", "")
    if query.get("code_challenge_method") != "S256" or not 43 <= len(challenge) <= 128:
        return back(
            error="invalid_request",
            error_description="PKCE is required, with code_challenge_method S256",
        )
    scopes = granted_scopes(query.get("scope"), client.scopes)
    if scopes is None:
        refused = " ".join(sorted(set(query.get("scope", "").split()) - client.scopes))
        return back(
            error="invalid_scope", error_description=f"{client.id} may not ask for: {refused}"
        )
    if query.get("prompt") == "create":
        # OpenID Connect's "Initiating User Registration": sign up first, then come back here.
        sign_up_url = request.url_for("sign_up_page").path
        next_url = request.url.path + "?" + request.url.query.replace("prompt=create", "")
        return RedirectResponse(f"{sign_up_url}?{urlencode({'next': next_url})}", 303)
    signed_in = await handlers.session_user(context, request.cookies.get(SESSION_COOKIE))
    if signed_in is None or query.get("prompt") == "login":
        if query.get("prompt") == "none":
            return back(error="login_required", error_description="nobody is signed in")
        sign_in_url = request.url_for("sign_in_page").path
        next_url = request.url.path + "?" + request.url.query.replace("prompt=login", "")
        return RedirectResponse(f"{sign_in_url}?{urlencode({'next': next_url})}", 303)
    user, auth_time = signed_in
    async with context.unit_of_work() as uow:
        code = await handlers.issue_code(
            uow,
            client,
            user_id=user.id,
            redirect_uri=redirect_uri,
            scopes=person_scopes(scopes, admin=user.admin),
            code_challenge=challenge,
            nonce=query.get("nonce"),
            auth_time=auth_time,
        )
    return back(code=code)


# --- the token endpoint and friends -----------------------------------------------------------


@router.post(
    "/token", summary="Token endpoint: authorization_code, refresh_token, client_credentials"
)
async def token(request: Request, context: Context) -> JSONResponse:
    try:
        form = await _form(request)
        client = await _authenticated_client(context, request, form)
        grant_type = form.get("grant_type", "")
        if grant_type not in client.grant_types:
            # The implicit and password grants are not offered at all: neither is in any client.
            raise OAuthError(
                "unsupported_grant_type" if grant_type not in _GRANTS else "unauthorized_client",
                f"grant_type {grant_type!r} is not available to this client",
            )
        failure: OAuthError | None = None
        issued: dict[str, Any] = {}
        async with context.unit_of_work() as uow:
            try:
                issued = await _GRANTS[grant_type](uow, client, form)
            except OAuthError as error:
                failure = error
        # Revocations done while refusing (a replayed code or refresh token) are committed first.
        if failure is not None:
            raise failure
    except OAuthError as error:
        return _oauth_error(error)
    return JSONResponse(issued, headers=NO_STORE)


_GRANTS = {
    "authorization_code": handlers.exchange_code,
    "refresh_token": handlers.refresh,
    "client_credentials": handlers.client_credentials,
}


@router.post("/revoke", summary="Token revocation (RFC 7009)")
async def revoke(request: Request, context: Context) -> Response:
    try:
        form = await _form(request)
        client = await _authenticated_client(context, request, form)
        async with context.unit_of_work() as uow:
            await handlers.revoke(uow, client, form.get("token", ""))
    except OAuthError as error:
        return _oauth_error(error)
    return Response(status_code=200, headers=NO_STORE)


@router.get(LISTING_PATH, summary="The revocations in force, for the system's units")
async def revocations(principal: CurrentPrincipal, context: Context) -> dict[str, Any]:
    """Read by every unit as it starts, so it refuses what was revoked before it ran."""
    if not (
        principal.is_admin or is_unit(principal.subject, principal.client_id, principal.scopes)
    ):
        raise Forbidden("only the system's units and administrators", code="insufficient-scope")
    listed = await handlers.revocations_in_force(context)
    return {"revocations": [revocation.model_dump(mode="json") for revocation in listed]}


@router.post("/introspect", summary="Token introspection (RFC 7662), for confidential clients")
async def introspect(request: Request, context: Context) -> JSONResponse:
    try:
        form = await _form(request)
        client = await _authenticated_client(context, request, form)
        if client.public:
            raise OAuthError(
                "invalid_client", "introspection is for confidential clients", status=401
            )
    except OAuthError as error:
        return _oauth_error(error)
    return JSONResponse(await handlers.introspect(context, form.get("token", "")), headers=NO_STORE)


# OpenID Connect Core §5.3: GET and POST both; one operation id each in the OpenAPI document.
@router.get("/userinfo", summary="The signed-in user's claims", operation_id="userinfo")
@router.post("/userinfo", summary="The signed-in user's claims", operation_id="userinfo_post")
async def userinfo(request: Request, context: Context) -> JSONResponse:
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not bearer:
        raise Unauthorized("a bearer token is required", code="missing-token")
    return JSONResponse(await handlers.userinfo(context, bearer.strip()), headers=NO_STORE)


# --- pages: sign in, sign up, sign out --------------------------------------------------------


def _safe_next(request: Request, next_url: str | None) -> str:
    """Only back to this provider's authorize endpoint: never an open redirect."""
    authorize_path = request.url_for("authorize").path
    if next_url and next_url.startswith(authorize_path + "?") and "//" not in next_url:
        return next_url
    return ""


def _csrf(request: Request) -> str:
    return request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)


def _set_cookie(request: Request, response: Response, name: str, value: str, age: int) -> None:
    base = request.url_for("authorize").path.rsplit("/", 1)[0]
    response.set_cookie(
        name,
        value,
        max_age=age,
        path=base,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def _with_csrf(request: Request, response: Response, csrf: str) -> Response:
    if request.cookies.get(CSRF_COOKIE) != csrf:
        _set_cookie(request, response, CSRF_COOKIE, csrf, 3600)
    return response


def _csrf_ok(request: Request, form: dict[str, str]) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie, form.get("csrf", ""))


def _sign_in_page(request: Request, **options: Any) -> Response:
    csrf = _csrf(request)
    next_url = _safe_next(request, options.pop("next_url", request.query_params.get("next")))
    response = pages.sign_in(
        action=request.url_for("sign_in").path,
        csrf=csrf,
        next_url=next_url,
        sign_up_url=request.url_for("sign_up_page").path
        + (f"?{urlencode({'next': next_url})}" if next_url else ""),
        **options,
    )
    return _with_csrf(request, response, csrf)


@router.get("/sign-in", name="sign_in_page", include_in_schema=False)
async def sign_in_page(request: Request) -> Response:
    notice = REGISTERED_NOTICE if request.query_params.get("registered") else None
    return _sign_in_page(request, notice=notice)


@router.post("/sign-in", name="sign_in", include_in_schema=False)
async def sign_in(request: Request, context: Context) -> Response:
    form = await _page_form(request)
    next_url = form.get("next", "")
    if not _csrf_ok(request, form):
        return _sign_in_page(
            request, next_url=next_url, error="The form expired; try again.", status=400
        )
    address = request.client.host if request.client else "unknown"
    result = await handlers.sign_in(
        context, form.get("email", ""), form.get("password", ""), address
    )
    if result.user is None:
        return _sign_in_page(
            request,
            next_url=next_url,
            email=form.get("email", ""),
            error=PAUSED_SIGN_IN if result.locked else FAILED_SIGN_IN,
            status=429 if result.locked else 401,
        )
    async with context.unit_of_work() as uow:
        session = await handlers.start_session(uow, result.user.id)
    target = _safe_next(request, next_url)
    response: Response = (
        RedirectResponse(target, status_code=303)
        if target
        else pages.message("Signed in", f"You are signed in as {result.user.email}.")
    )
    span = int(handlers.lifetimes(context).session.total_seconds())
    _set_cookie(request, response, SESSION_COOKIE, session, span)
    return response


@router.get("/sign-up", name="sign_up_page", include_in_schema=False)
async def sign_up_page(request: Request) -> Response:
    csrf = _csrf(request)
    response = pages.sign_up(
        action=request.url_for("sign_up").path,
        csrf=csrf,
        next_url=_safe_next(request, request.query_params.get("next")),
    )
    return _with_csrf(request, response, csrf)


@router.post("/sign-up", name="sign_up", include_in_schema=False)
async def sign_up(request: Request, context: Context) -> Response:
    form = await _page_form(request)
    next_url = _safe_next(request, form.get("next"))
    csrf = _csrf(request)
    account = Account(form.get("email", ""), form.get("name", ""), form.get("password", ""))
    try:
        if not _csrf_ok(request, form):
            raise Unprocessable("The form expired; try again.")
        async with context.unit_of_work() as uow:
            await handlers.sign_up(uow, account)
    except Unprocessable as error:
        response = pages.sign_up(
            action=request.url_for("sign_up").path,
            csrf=csrf,
            next_url=next_url,
            error=error.detail[:1].upper() + error.detail[1:] + ".",
            email=account.email,
            name=account.name,
            status=422,
        )
        return _with_csrf(request, response, csrf)
    params = {"registered": "1", **({"next": next_url} if next_url else {})}
    return RedirectResponse(f"{request.url_for('sign_in_page').path}?{urlencode(params)}", 303)


# Parameters of RP-initiated logout that the confirmation form carries over to its POST.
_LOGOUT_PARAMS = ("client_id", "post_logout_redirect_uri", "state", "id_token_hint")


@router.get("/sign-out", name="sign_out_page", include_in_schema=False)
async def sign_out_page(request: Request, context: Context) -> Response:
    """RP-initiated logout. A GET alone never ends the session (a cross-site link or image could
    send it): only an app's `id_token_hint` naming this session's user proves the app asked, and
    otherwise the person confirms with a POST that carries the CSRF token."""
    params = {name: value for name in _LOGOUT_PARAMS if (value := request.query_params.get(name))}
    signed_in = await handlers.session_user(context, request.cookies.get(SESSION_COOKIE))
    if signed_in is None:
        return await _signed_out(request, context, params)
    if await _hint_names(context, params, signed_in[0].id):
        return await _signed_out(request, context, params)
    csrf = _csrf(request)
    hidden = {name: value for name, value in params.items() if name != "id_token_hint"}
    response = pages.sign_out(action=request.url_for("sign_out").path, csrf=csrf, hidden=hidden)
    return _with_csrf(request, response, csrf)


@router.post("/sign-out", name="sign_out", include_in_schema=False)
async def sign_out(request: Request, context: Context) -> Response:
    form = await _page_form(request)
    params = {name: value for name in _LOGOUT_PARAMS if (value := form.get(name))}
    if not _csrf_ok(request, form):
        csrf = _csrf(request)
        hidden = {name: value for name, value in params.items() if name != "id_token_hint"}
        response = pages.sign_out(
            action=request.url_for("sign_out").path, csrf=csrf, hidden=hidden, status=400
        )
        return _with_csrf(request, response, csrf)
    return await _signed_out(request, context, params)


async def _signed_out(
    request: Request, context: ServiceContext, params: dict[str, str]
) -> Response:
    """End the session; go back only to a URI registered for the client."""
    async with context.unit_of_work() as uow:
        await handlers.end_session(uow, request.cookies.get(SESSION_COOKIE))
    target = await _logout_target(context, params)
    response: Response = (
        RedirectResponse(target, status_code=303)
        if target
        else pages.message("Signed out", "You are signed out.")
    )
    response.delete_cookie(SESSION_COOKIE, path=request.url_for("authorize").path.rsplit("/", 1)[0])
    return response


async def _hint_names(context: ServiceContext, params: dict[str, str], user_id: str) -> bool:
    """Whether `id_token_hint` is an ID token this provider signed for the named client and this
    user. An expired one still proves who asked (RP-Initiated Logout 1.0 §2)."""
    hint, client_id = params.get("id_token_hint"), params.get("client_id")
    if not hint or not client_id:
        return False
    async with context.read() as connection:
        keys = await tokens.public_key_set(connection, utcnow())
    try:
        decoded = jwt.decode(hint, keys, algorithms=[tokens.ALGORITHM])
    except (JoseError, ValueError, TypeError):
        return False
    if decoded.header.get("typ") != "JWT":  # an access token is no ID token
        return False
    claims = decoded.claims
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    return (
        claims.get("iss") == context.system.issuer
        and client_id in audiences
        and claims.get("sub") == user_id
    )


async def _logout_target(context: ServiceContext, params: dict[str, str]) -> str:
    uri, client_id = params.get("post_logout_redirect_uri"), params.get("client_id")
    if not uri or not client_id:
        return ""
    async with context.read() as connection:
        client = await handlers.find_client(connection, client_id)
    if client is None or uri not in client.redirect_uris:
        return ""
    state = params.get("state")
    return uri + (("&" if "?" in uri else "?") + urlencode({"state": state}) if state else "")


async def _page_form(request: Request) -> dict[str, str]:
    try:
        return await _form(request)
    except OAuthError:
        return {}
