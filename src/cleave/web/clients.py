"""HTTP clients that keep nothing of one caller for another.

An `httpx` client remembers every `Set-Cookie` it sees in its own jar and sends those cookies
with its later requests, whoever they are for. A client shared by many people (a proxy, a
backend-for-frontend) must never do that: one person's session would reach the next person.
"""

from __future__ import annotations

from http.cookiejar import Cookie, CookieJar, CookiePolicy
from typing import Any
from urllib.request import Request

import httpx


class RefuseAllCookies(CookiePolicy):
    """A cookie policy that stores no cookie and returns none."""

    netscape = True
    rfc2965 = False
    hide_cookie2 = True

    def set_ok(self, cookie: Cookie, request: Request) -> bool:
        return False

    def return_ok(self, cookie: Cookie, request: Request) -> bool:
        return False

    def domain_return_ok(self, domain: str, request: Request) -> bool:
        return False

    def path_return_ok(self, path: str, request: Request) -> bool:
        return False


def cookieless_client(**options: Any) -> httpx.AsyncClient:
    """A pooled `httpx.AsyncClient` whose cookie jar refuses every cookie."""
    return httpx.AsyncClient(cookies=CookieJar(policy=RefuseAllCookies()), **options)
