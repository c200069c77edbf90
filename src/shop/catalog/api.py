"""Catalog's REST routes, under /api/catalog/v1: browsing is public, changes need admin."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from cleave.auth.tokens import AdminPrincipal
from cleave.errors import NotFound
from cleave.money import Money, MoneyIn
from cleave.service import ServiceContext
from cleave.service.api import Cursor, Limit, Page, after_key, context_of, json_response, page_of
from shop.catalog import handlers, store
from shop.catalog.domain import MAX_STOCK, ProductDraft

router = APIRouter()
Context = Annotated[ServiceContext, Depends(context_of("catalog"))]
Sku = Annotated[str, Path(max_length=64)]


class ProductOut(BaseModel):
    sku: str
    name: str
    description: str
    price: Money
    stock: int


class ProductIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: str = Field(min_length=2, max_length=64, examples=["MUG-CLASSIC"])
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=4000)
    price: MoneyIn
    stock: int = Field(default=0, ge=0, le=MAX_STOCK)


class ProductChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=4000)
    price: MoneyIn | None = None


class StockAdjustment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delta: int = Field(
        ge=-MAX_STOCK, le=MAX_STOCK, description="Units to add (positive) or remove (negative)."
    )
    reason: str = Field(min_length=1, max_length=200, examples=["recount"])


def _out(row: store.ProductRow) -> ProductOut:
    return ProductOut(
        sku=row.sku,
        name=row.name,
        description=row.description,
        price=Money(amount=row.price_amount, currency=row.currency),
        stock=row.stock,
    )


async def _load(context: ServiceContext, sku: str) -> ProductOut:
    async with context.read() as connection:
        row = await store.get_product(connection, sku)
    if row is None:
        raise NotFound(f"no product {sku}")
    return _out(row)


@router.get("/products", summary="List products, with text search")
async def list_products(
    context: Context,
    q: Annotated[
        str | None, Query(max_length=100, description="Words in name or description.")
    ] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> Page[ProductOut]:
    async with context.read() as connection:
        rows = await store.list_products(
            connection, query=q, after=after_key(cursor), limit=limit + 1
        )
    return page_of(rows, limit, _out, lambda row: {"after": row.sku})


# The busiest read of the shop: its answer is built once, not validated again and re-serialised.
@router.get("/products/{sku}", summary="One product", response_model=ProductOut)
async def get_product(context: Context, sku: Sku) -> Response:
    return json_response(await _load(context, sku))


@router.post("/products", status_code=status.HTTP_201_CREATED, summary="Add a product (admin)")
async def create_product(context: Context, _admin: AdminPrincipal, body: ProductIn) -> ProductOut:
    draft = ProductDraft(
        sku=body.sku,
        name=body.name,
        description=body.description,
        price_amount=body.price.amount,
        currency=body.price.currency,
        stock=body.stock,
    )
    async with context.unit_of_work() as uow:
        await handlers.create_product(uow, draft)
    return await _load(context, body.sku)


@router.patch("/products/{sku}", summary="Change a product (admin)")
async def update_product(
    context: Context, _admin: AdminPrincipal, sku: Sku, body: ProductChanges
) -> ProductOut:
    changes = body.model_dump(exclude_none=True, exclude={"price"})
    if body.price is not None:
        changes.update(price_amount=body.price.amount, currency=body.price.currency)
    async with context.unit_of_work() as uow:
        await handlers.update_product(uow, sku, changes)
    return await _load(context, sku)


@router.post("/products/{sku}/stock-adjustments", summary="Add or remove stock (admin)")
async def adjust_stock(
    context: Context, admin: AdminPrincipal, sku: Sku, body: StockAdjustment
) -> ProductOut:
    async with context.unit_of_work() as uow:
        await handlers.adjust_stock(uow, sku, body.delta)
    context.log.info(
        "stock adjusted", sku=sku, delta=body.delta, reason=body.reason, by=admin.subject
    )
    return await _load(context, sku)
