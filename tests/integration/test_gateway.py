"""The split's gateway as a reverse proxy, over real sockets: bodies stream both ways (server-sent
events arrive one by one), every header line of an answer comes through as often as it was sent,
hop-by-hop headers stay behind, `X-Forwarded-*` are the gateway's own unless the peer is a trusted
proxy, a unit that fails is a problem with the request id, and two people signed in through it
never share a session."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from cleave.config import SystemConfig, UnitAddress, load_config
from cleave.runtime import Unit
from cleave.web.app import create_app
from cleave.web.gateway import create_gateway, gateway_server
from shop.identity.contract import read_credentials
from shop.identity.contract.credentials import CLI_CLIENT, CLI_REDIRECT_URI
from tests.identity.conftest import CSRF, free_port, serving

TOY = """
[system]
name = "toy"
[services]
notes = "tests.integration.toy:notes_service"
tally = "tests.integration.toy:tally_service"
[topology.two]
units = {{ a = ["notes"], b = ["tally"] }}
{extra}
[topology.two.addresses]
a = "127.0.0.1:{a}:{grpc_a}"
b = "127.0.0.1:{b}:{grpc_b}"
"""


@dataclass
class Upstream:
    """A unit stand-in that shows what reached it and answers in ways a proxy must pass on."""

    seen: list[dict[str, Any]] = field(default_factory=list)
    next_event: asyncio.Event = field(default_factory=asyncio.Event)
    chunk_arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> Starlette:
        async def echo(request: Request) -> Response:
            chunks = []
            async for chunk in request.stream():
                if chunk:
                    chunks.append(len(chunk))
                    self.chunk_arrived.set()
            peer = request.client.port if request.client else None
            self.seen.append({"headers": request.headers.raw, "chunks": chunks, "peer": peer})
            answer = JSONResponse({"received": sum(chunks)})
            answer.raw_headers += [
                (b"set-cookie", b"a=1; Path=/; HttpOnly"),
                (b"set-cookie", b"b=2; Path=/; HttpOnly"),
                (b"vary", b"Accept"),
                (b"vary", b"Cookie"),
                (b"connection", b"x-unit-secret"),
                (b"x-unit-secret", b"for the next hop only"),
                (b"keep-alive", b"timeout=5"),
            ]
            return answer

        async def events(_request: Request) -> StreamingResponse:
            async def stream() -> AsyncIterator[str]:
                for number in range(3):
                    yield f"event: tick\ndata: {number}\n\n"
                    # The next event exists only once the client has read this one.
                    await self.next_event.wait()
                    self.next_event.clear()

            return StreamingResponse(stream(), media_type="text/event-stream")

        async def slow(_request: Request) -> Response:
            await asyncio.sleep(5)
            return PlainTextResponse("too late")

        async def metrics(_request: Request) -> Response:
            return PlainTextResponse("cleave_http_requests_total 1\n")

        async def refuse(_request: Request) -> Response:
            # Before reading the body, as a unit's size limit answers.
            return PlainTextResponse("too large", status_code=413)

        return Starlette(
            routes=[
                Route("/api/notes/v1/echo", echo, methods=["GET", "POST"]),
                Route("/api/notes/v1/events", events),
                Route("/api/notes/v1/slow", slow),
                Route("/api/notes/v1/refuse", refuse, methods=["POST"]),
                Route("/metrics", metrics),
            ]
        )


@dataclass
class Gateway:
    base: str
    upstream: Upstream
    # Where unit b (serving `tally`) should be: nothing listens there unless a test says so.
    other_port: int


@contextlib.asynccontextmanager
async def toy_gateway(tmp_path: Path, extra: str = "") -> AsyncIterator[Gateway]:
    unit_port, gateway_port, other_port = free_port(), free_port(), free_port()
    path = tmp_path / "cleave.toml"
    path.write_text(
        TOY.format(extra=extra, a=unit_port, b=other_port, grpc_a=free_port(), grpc_b=free_port())
    )
    config = load_config(path, topology="two")
    upstream = Upstream()
    gateway = create_gateway(config, timeout_seconds=0.5)
    server = gateway_server(gateway, "127.0.0.1", gateway_port)
    task = asyncio.create_task(server.serve())
    try:
        async with serving(upstream.app(), unit_port):
            while not server.started:
                assert not task.done(), "the gateway did not start"
                await asyncio.sleep(0.01)
            yield Gateway(f"http://127.0.0.1:{gateway_port}", upstream, other_port)
    finally:
        server.should_exit = True
        await task


async def test_server_sent_events_arrive_one_by_one_through_the_gateway(tmp_path: Path) -> None:
    async with toy_gateway(tmp_path) as gateway, httpx.AsyncClient(timeout=3) as client:
        url = f"{gateway.base}/api/notes/v1/events"
        async with client.stream("GET", url) as answer:
            assert answer.headers["content-type"].startswith("text/event-stream")
            received = []
            async for line in answer.aiter_lines():
                if line.startswith("data:"):
                    received.append(line)
                    gateway.upstream.next_event.set()  # only now does the unit send the next
        assert received == ["data: 0", "data: 1", "data: 2"]


async def test_a_request_body_streams_to_the_unit_as_it_is_sent(tmp_path: Path) -> None:
    async with toy_gateway(tmp_path) as gateway, httpx.AsyncClient(timeout=5) as client:

        async def upload() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield b"x" * 70_000
                # The next part is sent only once the unit has the one before: a gateway that
                # read the whole body first would wait here for ever.
                await asyncio.wait_for(gateway.upstream.chunk_arrived.wait(), 3)
                gateway.upstream.chunk_arrived.clear()

        answer = await client.post(f"{gateway.base}/api/notes/v1/echo", content=upload())
        assert answer.json() == {"received": 280_000}


async def test_every_header_line_comes_through_and_hop_by_hop_ones_stay_behind(
    tmp_path: Path,
) -> None:
    async with toy_gateway(tmp_path) as gateway, httpx.AsyncClient(timeout=5) as client:
        answer = await client.get(
            f"{gateway.base}/api/notes/v1/echo",
            headers={"Connection": "keep-alive, x-client-secret", "X-Client-Secret": "mine"},
        )
        assert answer.headers.get_list("set-cookie") == [
            "a=1; Path=/; HttpOnly",
            "b=2; Path=/; HttpOnly",
        ]
        assert answer.headers.get_list("vary") == ["Accept", "Cookie"]
        assert "x-unit-secret" not in answer.headers
        assert "keep-alive" not in answer.headers
        sent = dict(gateway.upstream.seen[-1]["headers"])
        assert b"x-client-secret" not in sent
        assert answer.headers["x-request-id"] == sent[b"x-request-id"].decode()


async def test_a_clients_own_forwarded_headers_are_replaced_by_what_the_gateway_saw(
    tmp_path: Path,
) -> None:
    lies = {
        "X-Forwarded-For": "6.6.6.6",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example",
        "Forwarded": "for=6.6.6.6;proto=https",
    }
    async with toy_gateway(tmp_path) as gateway, httpx.AsyncClient(timeout=5) as client:
        await client.get(f"{gateway.base}/api/notes/v1/echo", headers=lies)
        sent = gateway.upstream.seen[-1]["headers"]
        port = gateway.base.rsplit(":", 1)[1]
        forwarded = [(k, v) for k, v in sent if k.startswith((b"x-forwarded", b"forwarded"))]
        assert sorted(forwarded) == [
            (b"x-forwarded-for", b"127.0.0.1"),
            (b"x-forwarded-host", f"127.0.0.1:{port}".encode()),
            (b"x-forwarded-proto", b"http"),
        ]


async def test_a_trusted_proxy_in_front_says_who_the_client_is(tmp_path: Path) -> None:
    async with (
        toy_gateway(tmp_path, 'trusted_proxies = ["127.0.0.0/8"]') as gateway,
        httpx.AsyncClient(timeout=5) as client,
    ):
        await client.get(
            f"{gateway.base}/api/notes/v1/echo",
            headers={
                "X-Forwarded-For": "203.0.113.7, 127.0.0.5",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "shop.example",
            },
        )
        sent = dict(gateway.upstream.seen[-1]["headers"])
        assert sent[b"x-forwarded-for"] == b"203.0.113.7"
        assert sent[b"x-forwarded-proto"] == b"https"
        assert sent[b"x-forwarded-host"] == b"shop.example"


async def test_the_gateway_keeps_its_connection_to_a_unit_for_the_next_request(
    tmp_path: Path,
) -> None:
    async with toy_gateway(tmp_path) as gateway:
        for _ in range(3):  # a new client each time: the gateway's side is what is kept
            async with httpx.AsyncClient(timeout=5) as client:
                answer = await client.get(f"{gateway.base}/api/notes/v1/echo")
                assert answer.status_code == 200
        peers = {seen["peer"] for seen in gateway.upstream.seen}
    assert len(peers) == 1


async def test_a_body_refused_before_it_was_all_sent_never_garbles_the_next_request(
    tmp_path: Path,
) -> None:
    """The unit answered while part of the body was still unsent: its connection owes the rest,
    and is not one to reuse."""
    async with toy_gateway(tmp_path) as gateway, httpx.AsyncClient(timeout=5) as client:
        for _ in range(3):
            refused = await client.post(
                f"{gateway.base}/api/notes/v1/refuse", content=b"x" * 4_000_000
            )
            assert refused.status_code == 413
            answer = await client.get(f"{gateway.base}/api/notes/v1/echo")
            assert (answer.status_code, answer.json()) == (200, {"received": 0})


def test_the_hop_to_a_unit_works_on_uvloop_as_the_gateway_is_served() -> None:
    """`cleave up` runs on uvloop, whose transports are not asyncio's classes."""
    import uvloop

    from cleave.web.upstream import UpstreamPool

    answers = [
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    ]

    async def unit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in answers:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
        writer.close()

    async def scenario() -> list[tuple[int, bytes]]:
        server = await asyncio.start_server(unit, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = UpstreamPool(f"http://127.0.0.1:{port}", timeout=2, connect_timeout=2)
        got = []
        async with server:
            for _ in answers:
                response = await pool.request("GET", "/x", [(b"accept", b"*/*")])
                body = b"".join([chunk async for chunk in response.body()])
                response.close()
                got.append((response.status, body))
        pool.close()
        return got

    assert uvloop.run(asyncio.wait_for(scenario(), 5)) == [(200, b"hello"), (200, b"abcde")]


async def test_a_failing_unit_is_a_problem_with_the_request_id(tmp_path: Path) -> None:
    async with toy_gateway(tmp_path) as gateway, httpx.AsyncClient(timeout=5) as client:
        down = await client.get(f"{gateway.base}/api/tally/v1/anything")  # nothing listens
        late = await client.get(
            f"{gateway.base}/api/notes/v1/slow", headers={"X-Request-Id": "req-42"}
        )
    assert (down.status_code, down.headers["content-type"]) == (503, "application/problem+json")
    assert down.json()["request_id"] == down.headers["x-request-id"]
    assert down.headers["retry-after"] == "1"
    assert late.status_code == 504
    assert (late.json()["code"], late.json()["request_id"]) == ("gateway-timeout", "req-42")


async def test_a_unit_that_hangs_up_without_answering_is_a_bad_gateway(tmp_path: Path) -> None:
    async def hang_up(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with toy_gateway(tmp_path) as gateway, httpx.AsyncClient(timeout=5) as client:
        rude = await asyncio.start_server(hang_up, "127.0.0.1", gateway.other_port)
        async with rude:
            answer = await client.get(f"{gateway.base}/api/tally/v1/anything")
    assert (answer.status_code, answer.headers["content-type"]) == (
        502,
        "application/problem+json",
    )
    assert (answer.json()["code"], answer.json()["title"]) == ("bad-gateway", "Bad Gateway")
    assert answer.json()["request_id"] == answer.headers["x-request-id"]


async def test_the_gateway_never_serves_a_units_metrics(tmp_path: Path) -> None:
    async with toy_gateway(tmp_path) as gateway, httpx.AsyncClient(timeout=5) as client:
        answer = await client.get(f"{gateway.base}/metrics")
    assert answer.status_code == 404
    assert "cleave_http_requests_total" not in answer.text


# Two people, one gateway: the shop's real identity provider behind it.


@pytest.fixture
async def shop_behind_gateway(base_config: SystemConfig) -> AsyncIterator[tuple[str, Any]]:
    unit_port, gateway_port = free_port(), free_port()
    public = f"http://127.0.0.1:{gateway_port}"
    auth = replace(base_config.auth, issuer="self", public_url=public, jwks_refresh_seconds=0.0)
    everything = tuple(base_config.services)
    topology = replace(
        base_config.topology,
        units={"shop": everything},
        addresses={"shop": UnitAddress("127.0.0.1", unit_port, free_port())},
    )
    config = replace(base_config, auth=auth, topology=topology)
    unit = Unit(config)
    await unit.migrate()
    await unit.seed()
    await unit.start()
    server = gateway_server(create_gateway(config), "127.0.0.1", gateway_port)
    task = asyncio.create_task(server.serve())
    try:
        async with serving(create_app(unit, start_unit=False), unit_port):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
                await asyncio.sleep(0.01)
            yield public, read_credentials(config.var_dir)
    finally:
        server.should_exit = True
        await task
        await unit.stop()


async def authorize(browser: httpx.AsyncClient, issuer: str) -> httpx.Response:
    """The start of a sign-in with PKCE, as the command line's public client sends it."""
    params = {
        "response_type": "code",
        "client_id": CLI_CLIENT,
        "redirect_uri": CLI_REDIRECT_URI,
        "scope": "openid",
        "state": secrets.token_urlsafe(8),
        "code_challenge": secrets.token_urlsafe(32),
        "code_challenge_method": "S256",
    }
    return await browser.get(f"{issuer}/authorize", params=params)


async def sign_in(browser: httpx.AsyncClient, issuer: str, email: str, password: str) -> None:
    started = await authorize(browser, issuer)
    page = await browser.get(urljoin(str(started.url), started.headers["location"]))
    form = {
        "csrf": CSRF.search(page.text).group(1),  # type: ignore[union-attr]
        "next": parse_qs(urlsplit(str(page.url)).query)["next"][0],
        "email": email,
        "password": password,
    }
    signed_in = await browser.post(f"{issuer}/sign-in", data=form)
    assert signed_in.status_code == 303, signed_in.text


async def subject_signed_in(browser: httpx.AsyncClient, issuer: str) -> str:
    """Whom the provider takes this browser for: the `sub` of the token its session yields."""
    async with AsyncOAuth2Client(
        CLI_CLIENT,
        redirect_uri=CLI_REDIRECT_URI,
        code_challenge_method="S256",
        scope="openid",
        timeout=10,
    ) as oauth:
        verifier = secrets.token_urlsafe(48)
        url, _state = oauth.create_authorization_url(f"{issuer}/authorize", code_verifier=verifier)
        back = await browser.get(url)
        assert back.status_code == 302, back.text  # signed in: straight back with a code
        token = await oauth.fetch_token(
            f"{issuer}/token",
            authorization_response=back.headers["location"],
            code_verifier=verifier,
        )
    payload = token["access_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["sub"])


async def test_two_people_signed_in_through_the_gateway_never_share_a_session(
    shop_behind_gateway: tuple[str, Any],
) -> None:
    public, credentials = shop_behind_gateway
    issuer = f"{public}/api/identity/v1"
    users = credentials["users"]
    async with (
        httpx.AsyncClient(timeout=10) as alice,
        httpx.AsyncClient(timeout=10) as bob,
        httpx.AsyncClient(timeout=10) as stranger,
    ):
        await sign_in(alice, issuer, users["alice"]["email"], users["alice"]["password"])
        await sign_in(bob, issuer, users["bob"]["email"], users["bob"]["password"])
        assert await subject_signed_in(alice, issuer) == "alice"
        assert await subject_signed_in(bob, issuer) == "bob"
        assert await subject_signed_in(alice, issuer) == "alice"  # bob signing in changed nothing
        # Someone who never signed in gets the sign-in page, not anyone's code.
        answer = await authorize(stranger, issuer)
        assert answer.status_code == 303, answer.text
        assert "code=" not in answer.headers["location"]
        assert not stranger.cookies


async def test_a_client_claiming_https_gets_no_secure_cookie_over_plain_http(
    shop_behind_gateway: tuple[str, Any],
) -> None:
    public, credentials = shop_behind_gateway
    issuer = f"{public}/api/identity/v1"
    alice = credentials["users"]["alice"]
    lies = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.23"}
    async with httpx.AsyncClient(timeout=10, headers=lies) as browser:
        started = await authorize(browser, issuer)
        page = await browser.get(urljoin(str(started.url), started.headers["location"]))
        form = {
            "csrf": CSRF.search(page.text).group(1),  # type: ignore[union-attr]
            "next": parse_qs(urlsplit(str(page.url)).query)["next"][0],
            "email": alice["email"],
            "password": alice["password"],
        }
        signed_in = await browser.post(f"{issuer}/sign-in", data=form)
    assert signed_in.status_code == 303, signed_in.text
    cookies = signed_in.headers.get_list("set-cookie")
    assert cookies
    assert not [cookie for cookie in cookies if "secure" in cookie.lower()]
