"""The other services, as the storefront reaches them: their public REST API, as the signed-in
person (their own access token on each call) or anonymously for the public catalog.

Why REST and not their ports: the storefront acts for a person, and the REST API is where each
service decides what that person may see and do (their own orders, their own profile), from the
token alone. A port is a trusted call between services that carries no caller; a storefront on
ports would have to be trusted to pass the right customer id, and a bug in it would show one
person another's orders. The ports also lack what a shop page needs (search, order history,
placing an order with an Idempotency-Key), and ordering offers none. So the storefront is a
client like any other and exercises the public API from the outside, in every topology. The
cost, one HTTP call per fetch (about half a millisecond on one machine), is kept small by one
pooled keep-alive client and by fetching what a page needs concurrently; `bench/storefront`
measures it.

The one client is shared by every person, so it must keep nothing of anyone: it has no cookie
jar (`cookieless_client`), and each call carries its own caller's token and nothing else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import httpx
from pydantic import BaseModel

from cleave.errors import NotFound, ServiceUnavailable, Unprocessable

SAFE_METHODS = frozenset({"GET", "HEAD"})


class ServiceDown(ServiceUnavailable):
    """A service did not answer, or answered that it cannot serve now."""

    def __init__(self, service: str, detail: str) -> None:
        super().__init__(detail, code="service-down", service=service)
        self.service = service


class TokenRejected(Exception):
    """The service did not accept the person's access token (expired or revoked)."""


class Money(BaseModel):
    amount: int
    currency: str


class Product(BaseModel):
    sku: str
    name: str
    description: str
    price: Money
    stock: int

    @property
    def currency(self) -> str:
        return self.price.currency


class ProductPage(BaseModel):
    items: list[Product]
    next_cursor: str | None


class OrderLine(BaseModel):
    sku: str
    quantity: int
    name: str | None
    unit_price: Money | None


class Address(BaseModel):
    id: str
    label: str
    line1: str
    line2: str | None = None
    city: str
    postal_code: str
    country: str


class Order(BaseModel):
    id: str
    status: str
    reason: str | None
    lines: list[OrderLine]
    total: Money | None
    shipping_address: dict[str, Any]
    card: str
    created_at: datetime


class OrderPage(BaseModel):
    items: list[Order]
    next_cursor: str | None


class Profile(BaseModel):
    id: str
    email: str
    name: str
    confirmed_orders: int


class ShopApi:
    def __init__(self, base_url: str, http: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = http

    # --- catalog (public) ---------------------------------------------------------------------

    async def products(
        self, *, query: str | None = None, cursor: str | None = None, limit: int = 12
    ) -> ProductPage:
        params: dict[str, str | int] = {"limit": limit}
        if query:
            params["q"] = query
        if cursor:
            params["cursor"] = cursor
        answer = await self._call("catalog", "GET", "/products", params=params)
        return ProductPage.model_validate_json(answer.content)

    async def product(self, sku: str) -> Product | None:
        try:
            answer = await self._call("catalog", "GET", f"/products/{sku}")
        except NotFound:
            return None
        return Product.model_validate_json(answer.content)

    async def products_by_sku(self, skus: Sequence[str]) -> dict[str, Product]:
        """Each product that exists, fetched concurrently."""
        found = await asyncio.gather(*(self.product(sku) for sku in skus))
        return {product.sku: product for product in found if product is not None}

    # --- the signed-in person's own ------------------------------------------------------------

    async def profile(self, token: str) -> Profile | None:
        try:
            answer = await self._call("customer", "GET", "/customers/me", token=token)
        except NotFound:
            return None  # signed up a moment ago: the profile is on its way through the broker
        return Profile.model_validate_json(answer.content)

    async def addresses(self, token: str) -> list[Address]:
        answer = await self._call("customer", "GET", "/customers/me/addresses", token=token)
        return [Address.model_validate(item) for item in answer.json()]

    async def add_address(self, token: str, address: dict[str, Any]) -> Address:
        answer = await self._call(
            "customer", "POST", "/customers/me/addresses", token=token, json=address
        )
        return Address.model_validate_json(answer.content)

    async def place_order(self, token: str, order: dict[str, Any], idempotency_key: str) -> str:
        answer = await self._call(
            "ordering",
            "POST",
            "/orders",
            token=token,
            json=order,
            headers={"Idempotency-Key": idempotency_key},
        )
        return str(answer.json()["id"])

    async def order(self, token: str, order_id: str) -> Order | None:
        try:
            answer = await self._call("ordering", "GET", f"/orders/{order_id}", token=token)
        except NotFound:
            return None
        return Order.model_validate_json(answer.content)

    async def orders(self, token: str, *, cursor: str | None, limit: int = 10) -> OrderPage:
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        answer = await self._call("ordering", "GET", "/orders", token=token, params=params)
        return OrderPage.model_validate_json(answer.content)

    # --- one call -----------------------------------------------------------------------------

    async def _call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        **options: Any,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        url = f"{self.base_url}/api/{service}/v1{path}"
        # A kept-alive connection the server closes as it is reused ends before any answer: a
        # request that changes nothing is sent once more, on a new connection.
        attempts = 2 if method in SAFE_METHODS else 1
        for attempt in range(1, attempts + 1):
            try:
                answer = await self._http.request(method, url, headers=sent, **options)
                break
            except httpx.RemoteProtocolError as error:
                if attempt == attempts:
                    raise ServiceDown(service, f"{service} is not answering: {error!r}") from None
            except httpx.TransportError as error:
                raise ServiceDown(service, f"{service} is not answering: {error!r}") from None
        if answer.status_code < 400:
            return answer
        problem = _problem(answer)
        detail = str(problem.get("detail") or answer.reason_phrase)
        if answer.status_code >= 500:
            raise ServiceDown(service, f"{service} answered {answer.status_code}: {detail}")
        if answer.status_code == 401:
            raise TokenRejected(detail)
        if answer.status_code == 404:
            raise NotFound(detail)
        raise Unprocessable(detail, code=str(problem.get("code") or "rejected"))


def _problem(answer: httpx.Response) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
