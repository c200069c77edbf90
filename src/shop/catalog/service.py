"""The catalog service, declared once."""

from __future__ import annotations

from pathlib import Path

from cleave.service import PortBinding, Service
from shop.catalog import api, handlers, seed, store
from shop.catalog.contract import CatalogPort, StockReleased, StockReserved, catalog_pb2

service = Service(
    name="catalog",
    description="Products, prices and stock; stock is reserved per order.",
    metadata=store.metadata,
    migrations=Path(__file__).parent / "migrations",
    router=api.router,
    publishes=(StockReserved, StockReleased),
    port=PortBinding(CatalogPort, handlers.LocalCatalog, rpc=catalog_pb2),
    seed=seed.seed,
)
