"""Customer's REST routes, under /api/customer/v1. A customer sees only their own profile."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError

from cleave.auth.tokens import AdminPrincipal, Principal, scoped
from cleave.errors import Conflict, NotFound
from cleave.service import ServiceContext
from cleave.service.api import Cursor, Limit, Page, after_key, context_of, page_of
from shop.customer import handlers, store
from shop.customer.domain import Address, Profile

router = APIRouter()
Context = Annotated[ServiceContext, Depends(context_of("customer"))]
Owner = Annotated[Principal, Depends(scoped("profile"))]


class CustomerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, max_length=64, description="Defaults to a new id.")
    email: str = Field(max_length=320, examples=["dana@example.com"])
    name: str = Field(min_length=1, max_length=200)


class CustomerOut(BaseModel):
    id: str
    email: str
    name: str
    confirmed_orders: int = Field(description="Orders confirmed so far, learned from events.")
    created_at: datetime


class AddressIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field(default="home", min_length=1, max_length=50)
    line1: str = Field(min_length=1, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str = Field(min_length=1, max_length=100)
    postal_code: str = Field(min_length=1, max_length=20)
    country: str = Field(pattern=r"^[A-Z]{2}$", examples=["NL"])


class AddressOut(AddressIn):
    id: str


def _out(row: store.CustomerRow) -> CustomerOut:
    return CustomerOut(
        id=row.id,
        email=row.email,
        name=row.name,
        confirmed_orders=row.confirmed_orders,
        created_at=row.created_at,
    )


async def _load(context: ServiceContext, customer_id: str) -> CustomerOut:
    async with context.read() as connection:
        row = await store.get_customer(connection, customer_id)
    if row is None:
        raise NotFound(f"no customer {customer_id}")
    return _out(row)


@router.post("/customers", status_code=status.HTTP_201_CREATED, summary="Add a customer (admin)")
async def create_customer(
    context: Context, _admin: AdminPrincipal, body: CustomerIn
) -> CustomerOut:
    profile = Profile(id=body.id or uuid.uuid4().hex, email=body.email, name=body.name)
    try:
        async with context.unit_of_work() as uow:
            customer_id = await handlers.create_customer(uow, profile)
    except IntegrityError:
        # A concurrent create with the same id or email committed between our check and insert.
        raise Conflict(
            "a customer with that id or email exists already", code="customer-exists"
        ) from None
    return await _load(context, customer_id)


@router.get("/customers", summary="All customers (admin)")
async def list_customers(
    context: Context, _admin: AdminPrincipal, limit: Limit = 20, cursor: Cursor = None
) -> Page[CustomerOut]:
    async with context.read() as connection:
        rows = await store.list_customers(connection, after=after_key(cursor), limit=limit + 1)
    return page_of(rows, limit, _out, lambda row: {"after": row.id})


@router.get("/customers/me", summary="Your profile")
async def my_profile(context: Context, principal: Owner) -> CustomerOut:
    return await _load(context, principal.subject)


@router.get("/customers/me/addresses", summary="Your shipping addresses")
async def my_addresses(context: Context, principal: Owner) -> list[AddressOut]:
    async with context.read() as connection:
        rows = await store.list_addresses(connection, principal.subject)
    return [
        AddressOut(
            id=row.id,
            label=row.label,
            line1=row.line1,
            line2=row.line2,
            city=row.city,
            postal_code=row.postal_code,
            country=row.country,
        )
        for row in rows
    ]


@router.post(
    "/customers/me/addresses", status_code=status.HTTP_201_CREATED, summary="Add a shipping address"
)
async def add_address(context: Context, principal: Owner, body: AddressIn) -> AddressOut:
    address = Address(**body.model_dump())
    async with context.unit_of_work() as uow:
        address_id = await handlers.add_address(uow, principal.subject, address)
    return AddressOut(id=address_id, **body.model_dump())


@router.get("/customers/{customer_id}", summary="A customer (yourself, or any for an admin)")
async def get_customer(
    context: Context, principal: Owner, customer_id: Annotated[str, Path(max_length=64)]
) -> CustomerOut:
    # Someone else's profile is "not found": its existence is not the caller's to learn.
    if customer_id != principal.subject and not principal.is_admin:
        raise NotFound(f"no customer {customer_id}")
    return await _load(context, customer_id)
