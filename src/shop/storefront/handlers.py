"""Storefront use cases: carts, signing in and out, the person's tokens, checkout. `Storefront`
is the pages' entry point (docs/handlers.md): each of its methods that changes something opens
one unit of work of the storefront's own database around one handler below (`add_to_cart`,
`take_over`, ...), and asks the provider or the services' API only outside it."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from sqlalchemy.exc import IntegrityError

from cleave.auth.oidc import OidcKeySource
from cleave.clock import utcnow
from cleave.errors import NotFound
from cleave.service import ServiceContext, UnitOfWork
from cleave.web.clients import cookieless_client
from shop.identity.contract import client_secret
from shop.storefront import contract, store
from shop.storefront.domain import LineChange, add_line, change_line, merge_carts
from shop.storefront.oidc import RelyingParty, SignInFailed
from shop.storefront.session import SESSION_DAYS, BrowserSession, Held
from shop.storefront.upstream import ShopApi, TokenRejected

T = TypeVar("T")


class SignInNeeded(Exception):
    """The page needs a signed-in person, and this browser has none (or their session ended)."""


# --- handlers: each takes the unit of work an entry point opens (docs/handlers.md) ----------


async def save_session(uow: UnitOfWork, session: BrowserSession) -> None:
    await store.put_session(
        uow.connection, session.id_hash, session.seal(), utcnow() + timedelta(days=SESSION_DAYS)
    )


async def take_over(uow: UnitOfWork, visitor: BrowserSession, signed_in: BrowserSession) -> None:
    """The signed-in session replaces the visitor's, the visitor's cart merged into the person's;
    sessions and visitors' carts past their time go too."""
    await save_session(uow, signed_in)
    await store.delete_session(uow.connection, visitor.id_hash)
    visitor_cart = await store.cart(uow.connection, visitor.cart_owner)
    if visitor_cart:
        await _merge_into_cart(uow, signed_in.cart_owner, visitor_cart)
        await store.clear_cart(uow.connection, visitor.cart_owner)
    await store.delete_expired(
        uow.connection, visitors_before=utcnow() - timedelta(days=SESSION_DAYS)
    )


async def end_session(uow: UnitOfWork, session: BrowserSession) -> None:
    await store.delete_session(uow.connection, session.id_hash)


async def add_to_cart(
    uow: UnitOfWork, owner: str, sku: str, quantity: int, *, in_stock: int
) -> LineChange:
    change = add_line(await store.cart(uow.connection, owner), sku, quantity, in_stock=in_stock)
    await store.set_line(uow.connection, owner, sku, change.quantity)
    return change


async def change_quantity(
    uow: UnitOfWork, owner: str, sku: str, quantity: int, *, in_stock: int
) -> LineChange:
    change = change_line(sku, quantity, in_stock=in_stock)
    await store.set_line(uow.connection, owner, sku, change.quantity)
    return change


async def put_back(uow: UnitOfWork, owner: str, lines: dict[str, int]) -> None:
    await _merge_into_cart(uow, owner, lines)


async def _merge_into_cart(uow: UnitOfWork, owner: str, lines: dict[str, int]) -> None:
    merged = merge_carts(await store.cart(uow.connection, owner), lines)
    for sku, quantity in merged.items():
        await store.set_line(uow.connection, owner, sku, quantity)


async def record_checkout(uow: UnitOfWork, owner: str, key: str, order_id: str) -> None:
    await store.clear_cart(uow.connection, owner)
    await store.record_checkout(uow.connection, owner, key, order_id)


# --- entry points ----------------------------------------------------------------------------


class Storefront:
    """The storefront running in one unit: its HTTP client, the services' API, the OIDC client."""

    def __init__(self, context: ServiceContext) -> None:
        self.context = context
        self.public_url = context.system.public_url.rstrip("/")
        self.secure = self.public_url.startswith("https://")
        # Where the services' REST API is reached: the public address unless told otherwise.
        api_url = str(context.settings.get("api_url") or self.public_url)
        self.http = cookieless_client(timeout=context.setting("upstream_timeout_seconds", 5.0))
        self.api = ShopApi(api_url, self.http)
        issuer = context.system.trusted_issuer or context.system.issuer
        state_dir = context.system.state_dir
        self.oidc = RelyingParty(
            issuer=issuer,
            client_id=contract.CLIENT_ID,
            secret=lambda: client_secret(state_dir, contract.CLIENT_ID),
            redirect_uri=contract.redirect_uris(self.public_url)[0],
            scopes=contract.SCOPES,
            http=self.http,
            keys=OidcKeySource(issuer, refresh_interval=60.0),
        )
        # One refresh at a time per session: a refresh token is single-use, and a second use
        # would end the whole grant.
        self._refreshing: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    async def close(self) -> None:
        _running.pop(self.context, None)
        await self.http.aclose()

    # --- sessions -----------------------------------------------------------------------------

    async def load(self, session: BrowserSession) -> BrowserSession:
        """Fill in what the server keeps for the session, if anything."""
        if not session.is_new:
            async with self.context.read() as connection:
                row = await store.get_session(connection, session.id_hash)
            if row is not None:
                session.held = session.unseal(row.sealed)
        return session

    async def save(self, session: BrowserSession) -> None:
        async with self.context.unit_of_work() as uow:
            await save_session(uow, session)

    async def start_sign_in(self, session: BrowserSession, return_to: str, *, sign_up: bool) -> str:
        login = self.oidc.new_login(return_to)
        url = await self.oidc.authorization_url(login, sign_up=sign_up)
        session.held.login = login
        await self.save(session)
        return url

    async def finish_sign_in(
        self, visitor: BrowserSession, query: dict[str, str]
    ) -> tuple[BrowserSession, str]:
        """The session after the provider sent the person back: a new cookie, their tokens, and
        the visitor's cart merged into theirs. Returns it and where to go next."""
        login = visitor.held.login
        if login is None:
            raise SignInFailed("this browser started no sign-in (or it was finished already)")
        person, tokens = await self.oidc.finish(login, query)
        signed_in = BrowserSession.new()
        signed_in.held.person, signed_in.held.tokens = person, tokens
        async with self.context.unit_of_work() as uow:
            await take_over(uow, visitor, signed_in)
        return signed_in, login["return_to"]

    async def sign_out(self, session: BrowserSession) -> str | None:
        """End this session and revoke its tokens; where the browser ends the provider's too."""
        tokens = session.held.tokens
        async with self.context.unit_of_work() as uow:
            await end_session(uow, session)
        if tokens is None:
            return None
        try:
            await self.oidc.revoke(tokens)
        except Exception as error:  # the session here is over either way
            self.context.log.warning("could not revoke the refresh token", error=str(error))
        return await self.oidc.end_session_url(tokens, contract.redirect_uris(self.public_url)[1])

    async def access_token(self, session: BrowserSession, *, renew: bool = False) -> str:
        """The person's access token, refreshed first when it is about to run out."""
        tokens = session.held.tokens
        if tokens is None:
            raise SignInNeeded()
        if not renew and not tokens.expiring():
            return tokens.access_token
        lock = self._refreshing.setdefault(session.id_hash, asyncio.Lock())
        async with lock:
            stale = tokens.access_token
            await self.load(session)  # another request may have refreshed meanwhile
            current = session.held.tokens
            if current is None:
                raise SignInNeeded()
            if current.access_token != stale or (not renew and not current.expiring()):
                return current.access_token
            try:
                session.held.tokens = await self.oidc.refresh(current)
            except SignInFailed as error:
                self.context.log.info("session ended: refresh refused", reason=error.reason)
                session.held = Held()
                await self.save(session)
                raise SignInNeeded() from None
            await self.save(session)
            return session.held.tokens.access_token

    async def as_person(self, session: BrowserSession, call: Callable[[str], Awaitable[T]]) -> T:
        """Call a service as the signed-in person; a rejected token is renewed once."""
        try:
            return await call(await self.access_token(session))
        except TokenRejected:
            pass
        try:
            return await call(await self.access_token(session, renew=True))
        except TokenRejected:
            raise SignInNeeded() from None

    # --- carts --------------------------------------------------------------------------------

    async def cart(self, session: BrowserSession) -> dict[str, int]:
        async with self.context.read() as connection:
            return await store.cart(connection, session.cart_owner)

    async def cart_size(self, session: BrowserSession) -> int:
        async with self.context.read() as connection:
            return await store.cart_size(connection, session.cart_owner)

    async def add_to_cart(self, session: BrowserSession, sku: str, quantity: int) -> LineChange:
        product = await self.api.product(sku)
        if product is None:
            raise NotFound(f"no product {sku}")
        async with self.context.unit_of_work() as uow:
            return await add_to_cart(uow, session.cart_owner, sku, quantity, in_stock=product.stock)

    async def change_quantity(self, session: BrowserSession, sku: str, quantity: int) -> LineChange:
        stock = 0
        if quantity > 0:
            product = await self.api.product(sku)
            stock = product.stock if product is not None else 0
        async with self.context.unit_of_work() as uow:
            return await change_quantity(uow, session.cart_owner, sku, quantity, in_stock=stock)

    async def put_back(self, session: BrowserSession, lines: dict[str, int]) -> None:
        """An order's lines back into the cart (after it was cancelled), to try again."""
        async with self.context.unit_of_work() as uow:
            await put_back(uow, session.cart_owner, lines)

    # --- checkout -----------------------------------------------------------------------------

    async def checked_out(self, session: BrowserSession, key: str) -> str | None:
        async with self.context.read() as connection:
            return await store.checkout(connection, session.cart_owner, key)

    async def record_checkout(self, session: BrowserSession, key: str, order_id: str) -> None:
        """The order is placed: the cart is emptied and the key remembers the order."""
        try:
            async with self.context.unit_of_work() as uow:
                await record_checkout(uow, session.cart_owner, key, order_id)
        except IntegrityError:
            pass  # a double submit recorded the same order a moment ago


_running: weakref.WeakKeyDictionary[ServiceContext, Storefront] = weakref.WeakKeyDictionary()


def storefront_of(context: ServiceContext) -> Storefront:
    """The storefront of this unit, made on first use (a service has no start-up hook)."""
    running = _running.get(context)
    if running is None:
        running = _running[context] = Storefront(context)
        context.at_stop(running.close)
    return running
