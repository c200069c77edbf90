"""Catalog's public face: the port other services call, and the events it publishes."""

from shop.catalog.contract.events import StockReleased, StockReserved
from shop.catalog.contract.port import (
    CatalogPort,
    OrderLine,
    OutOfStock,
    PricedLine,
    UnknownProducts,
)

__all__ = [
    "CatalogPort",
    "OrderLine",
    "OutOfStock",
    "PricedLine",
    "StockReleased",
    "StockReserved",
    "UnknownProducts",
]
