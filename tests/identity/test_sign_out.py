"""The provider's pages against logout CSRF and weak passwords: a cross-site GET to sign-out ends
no session (the person confirms by a POST with the CSRF token, or the app proves it asked with an
ID token of this person), sign-up refuses common passwords, and every page forbids sniffing and
framing."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from shop.identity.contract.credentials import CLI_CLIENT, CLI_REDIRECT_URI
from tests.identity.conftest import CSRF, Provider, oauth_client


class Browser:
    """One person's browser: a cookie jar of its own, signed in at the provider."""

    def __init__(self, provider: Provider, http: httpx.AsyncClient) -> None:
        self.provider, self.http = provider, http

    async def sign_in(self, user: str) -> dict[str, Any]:
        """Authorization code with PKCE through the pages; the tokens the app gets."""
        demo = self.provider.credentials["users"][user]
        verifier = secrets.token_urlsafe(48)
        async with oauth_client(self.provider) as client:
            url, _state = client.create_authorization_url(
                f"{self.provider.issuer}/authorize", code_verifier=verifier
            )
            asked = await self.http.get(url)
            page = await self.http.get(urljoin(url, asked.headers["location"]))
            form = {
                "csrf": CSRF.search(page.text).group(1),  # type: ignore[union-attr]
                "next": parse_qs(urlsplit(str(page.url)).query)["next"][0],
                "email": demo["email"],
                "password": demo["password"],
            }
            signed_in = await self.http.post(f"{self.provider.issuer}/sign-in", data=form)
            back = await self.http.get(urljoin(url, signed_in.headers["location"]))
            assert back.status_code == 302, back.text
            self.authorize_url = url
            token = await client.fetch_token(
                f"{self.provider.issuer}/token",
                authorization_response=back.headers["location"],
                code_verifier=verifier,
            )
        return dict(token)

    async def signed_in(self) -> bool:
        """Whether the provider still knows this browser: authorize answers with a code."""
        answer = await self.http.get(self.authorize_url)
        return answer.status_code == 302 and "code=" in answer.headers["location"]


async def test_a_cross_site_get_ends_no_session_and_a_post_needs_the_csrf_token(
    provider: Provider,
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        alice = Browser(provider, http)
        await alice.sign_in("alice")
        # What an <img src> on another site sends: the cookie, and nothing the site cannot know.
        lured = await http.get(f"{provider.issuer}/sign-out")
        assert lured.status_code == 200
        assert "<button type='submit'>Sign out</button>" in lured.text
        assert await alice.signed_in()

        forged = await http.post(f"{provider.issuer}/sign-out", data={"csrf": "guessed"})
        assert forged.status_code == 400
        assert await alice.signed_in()

        csrf = CSRF.search(lured.text).group(1)  # type: ignore[union-attr]
        confirmed = await http.post(f"{provider.issuer}/sign-out", data={"csrf": csrf})
        assert "You are signed out." in confirmed.text
        assert not await alice.signed_in()


async def test_an_app_that_proves_it_asked_signs_the_person_out_at_once(
    provider: Provider,
) -> None:
    async with httpx.AsyncClient(timeout=10) as http, httpx.AsyncClient(timeout=10) as other:
        alice, bob = Browser(provider, http), Browser(provider, other)
        tokens = await alice.sign_in("alice")
        bobs = await bob.sign_in("bob")
        params = {"client_id": CLI_CLIENT, "post_logout_redirect_uri": CLI_REDIRECT_URI}
        # Someone else's ID token proves nothing about this session.
        wrong = await http.get(
            f"{provider.issuer}/sign-out", params={**params, "id_token_hint": bobs["id_token"]}
        )
        assert wrong.status_code == 200
        assert await alice.signed_in()

        right = await http.get(
            f"{provider.issuer}/sign-out",
            params={**params, "id_token_hint": tokens["id_token"], "state": "s1"},
        )
        assert right.status_code == 303
        assert right.headers["location"] == f"{CLI_REDIRECT_URI}?state=s1"
        assert not await alice.signed_in()
        assert await bob.signed_in()


async def test_sign_up_refuses_a_common_password_and_says_why(provider: Provider) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        page = await http.get(f"{provider.issuer}/sign-up")
        csrf = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
        for password in ("1234567890", "qwertyuiop", "erin@example.com"):
            refused = await http.post(
                f"{provider.issuer}/sign-up",
                data={
                    "csrf": csrf,
                    "name": "Erin",
                    "email": "erin@example.com",
                    "password": password,
                },
            )
            assert refused.status_code == 422
            assert "Choose a harder password" in refused.text
        accepted = await http.post(
            f"{provider.issuer}/sign-up",
            data={
                "csrf": csrf,
                "name": "Erin",
                "email": "erin@example.com",
                "password": "plum tractor velvet",
            },
        )
        assert accepted.status_code == 303


async def test_every_page_of_the_provider_forbids_sniffing_and_framing(
    provider: Provider,
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        for path in ("/sign-in", "/sign-up", "/sign-out", "/authorize?client_id=nobody"):
            page = await http.get(f"{provider.issuer}{path}")
            assert page.headers["x-content-type-options"] == "nosniff", path
            assert "frame-ancestors 'none'" in page.headers["content-security-policy"], path
