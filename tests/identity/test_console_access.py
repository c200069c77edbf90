"""The console in front of several units answers only an administrator signed in through the
system's own provider (code flow with PKCE), or an admin's bearer token on its API; its one
state-changing form needs the session's CSRF token; every answer carries its security headers;
and its OTLP receiver takes spans only from the system's own units.

The gateway is the real one (`create_gateway`) over ASGI, in front of the real provider served
on a port, exactly as the split's gateway is in front of its units."""

from __future__ import annotations

import re
from dataclasses import replace
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.util.re import parse_env_headers
from playwright.async_api import Browser
from starlette.applications import Starlette
from starlette.responses import Response

from cleave.config import SystemConfig
from cleave.runtime import Unit, build_verifier
from cleave.web.app import create_app
from cleave.web.console.access import CONTENT_SECURITY_POLICY, ConsoleAccess
from cleave.web.console.collect import span_export_headers, span_secret
from cleave.web.gateway import CONSOLE_REVOCATIONS_SECONDS
from shop.identity.contract import read_credentials
from shop.identity.domain import Account
from shop.identity.handlers import create_user, disable_user
from tests.conftest import eventually
from tests.identity.conftest import (
    CSRF,
    Provider,
    browsing,
    oauth_client,
    serving,
    sign_in_for_code,
    user_tokens,
)

HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
FORM_CSRF = re.compile(r'name=csrf value="([^"]+)"')
SECOND_ADMIN = "second-admin@example.com"
PASSWORD = "correct horse battery staple"
LIVE_AND_JSON = (
    "/console/api/logs",
    "/console/api/metrics",
    "/console/logs/stream",
    "/console/traces/stream",
)


async def sign_in(web: httpx.AsyncClient, provider: Provider, user: str) -> httpx.Response:
    """`sign_in_as` one of the seed's demo users."""
    demo = provider.credentials["users"][user]
    return await sign_in_as(web, provider, demo["email"], demo["password"])


async def sign_in_as(
    web: httpx.AsyncClient, provider: Provider, email: str, password: str
) -> httpx.Response:
    """From the console's sign-in, through the provider's page, to the console's callback."""
    response = await web.get("/console/sign-in?next=/console")
    for _ in range(10):
        if response.is_redirect:
            response = await web.get(urljoin(str(response.url), response.headers["location"]))
            continue
        match = CSRF.search(response.text)
        if match is None:
            return response
        form = {
            "csrf": match.group(1),
            "next": parse_qs(urlsplit(str(response.url)).query)["next"][0],
            "email": email,
            "password": password,
        }
        response = await web.post(f"{provider.issuer}/sign-in", data=form)
    raise AssertionError("the sign-in never came back to the console")


def assert_secured(response: httpx.Response) -> None:
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, (name, response.url)


async def test_anyone_is_sent_to_sign_in_and_the_api_answers_401(
    web: httpx.AsyncClient,
) -> None:
    page = await web.get("/console")
    assert page.status_code == 303
    assert page.headers["location"] == "/console/sign-in?next=%2Fconsole"
    assert_secured(page)
    for path in ("/console/api/traces", "/console/api/traces/" + "0" * 32):
        api = await web.get(path)
        assert api.status_code == 401
        assert api.headers["content-type"] == "application/problem+json"
        assert_secured(api)
    trace_page = await web.get("/console/traces/" + "0" * 32)
    assert trace_page.status_code == 303
    # Nor do the logs, the metrics or their live streams show anything to a visitor.
    for path in ("/console/logs", "/console/metrics"):
        refused = await web.get(path)
        assert refused.status_code == 303, path
        assert refused.headers["location"].startswith("/console/sign-in")
    for path in LIVE_AND_JSON:
        refused = await web.get(path)
        assert refused.status_code == 401, path
        assert_secured(refused)
    # A made-up session cookie opens nothing.
    web.cookies.set("cleave_console", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
    assert (await web.get("/console/api/traces")).status_code == 401


async def test_an_admin_signs_in_with_pkce_and_reads_every_page(
    web: httpx.AsyncClient, provider: Provider
) -> None:
    start = await web.get("/console/sign-in?next=/console")
    authorize = urlsplit(start.headers["location"])
    assert f"{authorize.scheme}://{authorize.netloc}{authorize.path}" == (
        f"{provider.issuer}/authorize"
    )
    query = parse_qs(authorize.query)
    assert query["client_id"] == ["cleave-console"]
    assert query["code_challenge_method"] == ["S256"]
    assert query["scope"] == ["openid email admin"]

    arrived = await sign_in(web, provider, "admin")
    assert arrived.status_code == 200, arrived.text
    assert 'http-equiv=refresh content="0;url=/console"' in arrived.text
    cookie = next(
        value
        for name, value in arrived.headers.multi_items()
        if name == "set-cookie" and value.startswith("cleave_console=")
    )
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/console"} <= flags
    assert "secure" not in flags  # served over plain http here

    page = await web.get("/console")
    assert page.status_code == 200
    assert "Signed in as <b>admin@example.com</b>" in page.text
    assert_secured(page)
    # One script, the console's own file (it follows the trace list live), nothing inline.
    assert page.text.count("<script") == 1
    assert '<script src="/console/console.js" defer></script>' in page.text
    assert "style=" not in page.text
    script = await web.get("/console/console.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "EventSource" in script.text
    for path in ("/console/logs", "/console/metrics"):
        shown = await web.get(path)
        assert shown.status_code == 200, path
        assert "Signed in as <b>admin@example.com</b>" in shown.text
        assert_secured(shown)
    assert (await web.get("/console/api/logs")).status_code == 200
    assert (await web.get("/console/api/metrics")).status_code == 200
    api = await web.get("/console/api/traces")
    assert api.status_code == 200
    assert api.json() == []
    assert_secured(api)
    css = await web.get("/console/console.css")
    assert css.headers["content-type"].startswith("text/css")

    # Signing out is a POST with the session's token; afterwards the console asks again.
    token = FORM_CSRF.search(page.text)
    assert token is not None
    refused = await web.post("/console/sign-out", data={"csrf": "forged"})
    assert refused.status_code == 403
    assert (await web.get("/console")).status_code == 200
    out = await web.post("/console/sign-out", data={"csrf": token.group(1)})
    assert (out.status_code, out.headers["location"]) == (303, "/console/signed-out")
    assert (await web.get("/console")).status_code == 303


async def test_a_customer_signed_in_is_refused(web: httpx.AsyncClient, provider: Provider) -> None:
    arrived = await sign_in(web, provider, "alice")
    assert arrived.status_code == 200, arrived.text
    page = await web.get("/console")
    assert page.status_code == 403
    assert "alice@example.com" in page.text
    assert "not an administrator" in page.text
    assert_secured(page)
    api = await web.get("/console/api/traces")
    assert api.status_code == 403
    assert api.json()["code"] == "not-admin"
    for path in ("/console/logs", "/console/metrics"):
        refused = await web.get(path)
        assert refused.status_code == 403, path
        assert "not an administrator" in refused.text
    for path in LIVE_AND_JSON:
        refused = await web.get(path)
        assert refused.status_code == 403, path
        assert refused.json()["code"] == "not-admin"


async def test_the_api_takes_an_admins_bearer_token_and_refuses_a_customers(
    web: httpx.AsyncClient, provider: Provider
) -> None:
    secret = provider.credentials["clients"]["cleave-admin"]["secret"]
    async with httpx.AsyncClient() as http:
        issued = await http.post(
            f"{provider.issuer}/token",
            data={"grant_type": "client_credentials", "scope": "admin"},
            auth=("cleave-admin", secret),
        )
    admin = {"Authorization": f"Bearer {issued.json()['access_token']}"}
    assert (await web.get("/console/api/traces", headers=admin)).status_code == 200
    # A bearer token opens only the API: pages and actions want a signed-in session.
    assert (await web.get("/console", headers=admin)).status_code == 303
    alice = (await user_tokens(provider, "alice"))["access_token"]
    refused = await web.get("/console/api/traces", headers={"Authorization": f"Bearer {alice}"})
    assert refused.status_code == 403
    forged = await web.get("/console/api/traces", headers={"Authorization": "Bearer x.y.z"})
    assert forged.status_code == 401


async def test_a_person_is_never_granted_admin_by_a_client_that_may_ask_for_it(
    provider: Provider,
) -> None:
    """The console's client may ask for `admin`; only an administrator's token carries it."""
    for user, granted in (("alice", ""), ("admin", "admin")):
        demo = provider.credentials["users"][user]
        async with oauth_client(
            provider,
            client_id="cleave-console",
            redirect_uri=f"{provider.url}/console/callback",
            scope="admin",
        ) as client:
            verifier = "v" * 64
            back = await sign_in_for_code(
                provider, client, demo["email"], demo["password"], verifier=verifier
            )
            token = await client.fetch_token(
                f"{provider.issuer}/token",
                authorization_response=back.headers["location"],
                code_verifier=verifier,
            )
        assert token["scope"] == granted, user


async def test_the_split_console_shows_every_services_messaging_and_reaches_its_dead_letters(
    web: httpx.AsyncClient, provider: Provider
) -> None:
    await sign_in(web, provider, "admin")
    page = await web.get("/console")
    assert "Outbox, inbox and dead letters" in page.text
    for service in ("identity", "catalog", "customer", "ordering", "payment", "storefront"):
        assert f"<tr><td>{service}</td>" in page.text
    token = FORM_CSRF.search(page.text)
    assert token is not None
    # The gateway reaches each service's own dead letters: a letter it lacks is that, not a
    # service it does not know.
    missing = await web.post("/console/dead-letters/customer/999/replay", data={"csrf": token[1]})
    assert missing.status_code == 404
    assert missing.json()["code"] == "unknown-dead-letter"


async def test_replay_needs_the_sessions_csrf_token_and_an_unknown_service_is_a_404(
    web: httpx.AsyncClient, provider: Provider
) -> None:
    anonymous = await web.post("/console/dead-letters/payment/1/replay")
    assert anonymous.status_code == 401
    await sign_in(web, provider, "admin")
    page = await web.get("/console")
    token = FORM_CSRF.search(page.text)
    assert token is not None
    for sent in ({}, {"csrf": "not-this-sessions"}):
        refused = await web.post("/console/dead-letters/payment/1/replay", data=sent)
        assert refused.status_code == 403
        assert refused.json()["code"] == "csrf"
        assert_secured(refused)
    unknown = await web.post(
        "/console/dead-letters/no-such-service/1/replay", data={"csrf": token.group(1)}
    )
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    assert unknown.json()["code"] == "unknown-service"


async def test_spans_are_taken_only_from_the_systems_own_units(
    web: httpx.AsyncClient, split_config: SystemConfig
) -> None:
    export = ExportTraceServiceRequest()
    span = export.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = b"\x01" * 16, b"\x02" * 8, "GET /from-a-unit"
    span.start_time_unix_nano, span.end_time_unix_nano = 1, 2
    body = export.SerializeToString()
    protobuf = {"Content-Type": "application/x-protobuf"}

    anyone = await web.post("/v1/traces", content=body, headers=protobuf)
    assert anyone.status_code == 401
    wrong = await web.post(
        "/v1/traces", content=body, headers={**protobuf, "Authorization": "Bearer guessed"}
    )
    assert wrong.status_code == 401

    # What the supervisor hands each unit, parsed as the OTLP exporter parses it.
    secret = span_secret(split_config.var_dir)
    sent = parse_env_headers(span_export_headers(secret), liberal=True)
    accepted = await web.post("/v1/traces", content=body, headers={**protobuf, **sent})
    assert accepted.status_code == 200
    path = split_config.var_dir / "span-secret"
    assert path.stat().st_mode & 0o777 == 0o600


def test_the_session_cookie_is_secure_over_https(split_config: SystemConfig) -> None:
    served = replace(split_config, auth=replace(split_config.auth, public_url="https://shop.test"))
    access = ConsoleAccess(served, sign_in=True, verifier=build_verifier(served))
    response = Response()
    access.start_session(response, "admin", admin=True)
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("__Secure-cleave_console=")
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "secure", "path=/console"} <= flags


async def test_a_monolith_off_loopback_signs_its_admin_in_through_its_own_provider(
    provider: Provider,
) -> None:
    """The one-unit app serves the provider itself: the code is exchanged in-process."""
    app = create_app(provider.unit, start_unit=False, console=True, host="0.0.0.0")  # noqa: S104
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=provider.url, timeout=10
    ) as monolith:
        assert (await monolith.get("/console")).status_code == 303
        arrived = await sign_in(monolith, provider, "admin")
        assert arrived.status_code == 200, arrived.text
        page = await monolith.get("/console")
        assert page.status_code == 200
        assert "Signed in as <b>admin@example.com</b>" in page.text
        assert "This console is open" not in page.text
        assert "id=messaging" in page.text  # the unit's own outbox, inbox and dead letters


async def test_a_disabled_admin_is_out_of_the_console_at_the_next_click(
    provider: Provider,
) -> None:
    """The console's session outlives the access token it was opened with: it is checked
    against the unit's revocations at each request, so disabling the person ends it."""
    app = create_app(provider.unit, start_unit=False, console=True, host="0.0.0.0")  # noqa: S104
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=provider.url, timeout=10
    ) as monolith:
        assert (await sign_in(monolith, provider, "admin")).status_code == 200
        assert (await monolith.get("/console")).status_code == 200
        async with provider.unit.context("identity").unit_of_work() as uow:
            await disable_user(uow, provider.credentials["users"]["admin"]["email"])

        async def sent_to_sign_in() -> bool:
            return (await monolith.get("/console")).status_code == 303

        assert await eventually(sent_to_sign_in, within=5)
        assert (await monolith.get("/console/api/traces")).status_code == 401


async def test_a_disabled_admin_is_out_of_the_gateways_console_within_seconds(
    web: httpx.AsyncClient, provider: Provider
) -> None:
    """The split's console, on the gateway, has no broker: it reads the provider's revocations
    every few seconds, and a session of a person disabled since then ends."""
    assert (await sign_in(web, provider, "admin")).status_code == 200
    assert (await web.get("/console")).status_code == 200
    async with provider.unit.context("identity").unit_of_work() as uow:
        await disable_user(uow, provider.credentials["users"]["admin"]["email"])

    async def sent_to_sign_in() -> bool:
        return (await web.get("/console")).status_code == 303

    assert await eventually(sent_to_sign_in, within=CONSOLE_REVOCATIONS_SECONDS + 5)


async def only_the_disabled_admin_is_out(
    provider: Provider, first: httpx.AsyncClient, second: httpx.AsyncClient, *, within: float
) -> None:
    """Two admins signed in to one console; disabling the first ends the first's session only:
    the provider revokes a person (a subject), never every session of the console."""
    async with provider.unit.context("identity").unit_of_work() as uow:
        await create_user(uow, Account(SECOND_ADMIN, "Second Admin", PASSWORD), admin=True)
    assert (await sign_in(first, provider, "admin")).status_code == 200
    assert (await sign_in_as(second, provider, SECOND_ADMIN, PASSWORD)).status_code == 200
    assert "Signed in as <b>admin@example.com</b>" in (await first.get("/console")).text
    assert f"Signed in as <b>{SECOND_ADMIN}</b>" in (await second.get("/console")).text
    async with provider.unit.context("identity").unit_of_work() as uow:
        await disable_user(uow, provider.credentials["users"]["admin"]["email"])

    async def first_sent_to_sign_in() -> bool:
        return (await first.get("/console")).status_code == 303

    assert await eventually(first_sent_to_sign_in, within=within)
    assert (await first.get("/console/api/traces")).status_code == 401
    page = await second.get("/console")
    assert page.status_code == 200
    assert f"Signed in as <b>{SECOND_ADMIN}</b>" in page.text
    assert (await second.get("/console/api/traces")).status_code == 200


async def test_disabling_one_admin_leaves_another_admins_console_session_open(
    provider: Provider,
) -> None:
    app = create_app(provider.unit, start_unit=False, console=True, host="0.0.0.0")  # noqa: S104
    async with browsing(app, provider.url) as first, browsing(app, provider.url) as second:
        await only_the_disabled_admin_is_out(provider, first, second, within=5)


async def test_disabling_one_admin_leaves_another_admins_gateway_console_session_open(
    provider: Provider, gateway: Starlette, web: httpx.AsyncClient, split_config: SystemConfig
) -> None:
    async with browsing(gateway, split_config.public_url) as second:
        await only_the_disabled_admin_is_out(
            provider, web, second, within=CONSOLE_REVOCATIONS_SECONDS + 5
        )


async def test_in_a_real_browser_the_admin_signs_in_and_the_strict_cookie_holds(
    provider_config: SystemConfig, browser: Browser
) -> None:
    """Chromium through the provider's own sign-in page and back: the SameSite=Strict session
    reaches the console (the callback moves on by a page of its own), and nothing is refused by
    the console's CSP."""
    unit = Unit(provider_config)
    await unit.migrate()
    await unit.seed()
    await unit.start()
    port = int(provider_config.public_url.rsplit(":", 1)[1])
    app = create_app(unit, start_unit=False, console=True, host="0.0.0.0")  # noqa: S104
    admin = read_credentials(provider_config.var_dir)["users"]["admin"]
    try:
        async with serving(app, port):
            page = await browser.new_page()
            refused: list[str] = []
            page.on("console", lambda message: refused.append(message.text))
            await page.goto(f"{provider_config.public_url}/console")
            await page.get_by_label("Email").fill(admin["email"])
            await page.get_by_label("Password").fill(admin["password"])
            await page.get_by_role("button", name="Sign in").click()
            await page.locator("#access").wait_for()
            assert page.url == f"{provider_config.public_url}/console"
            assert "Signed in as admin@example.com" in await page.locator("#access").inner_text()
            [session] = [c for c in await page.context.cookies() if c["name"] == "cleave_console"]
            assert (session["httpOnly"], session["sameSite"], session["path"]) == (
                True,
                "Strict",
                "/console",
            )
            await page.get_by_role("button", name="Sign out").click()
            await page.get_by_role("heading", name="Signed out of the console").wait_for()
            assert not [text for text in refused if "Content Security Policy" in text], refused
    finally:
        await unit.stop()
