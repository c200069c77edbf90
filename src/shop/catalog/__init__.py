"""Catalog: products, prices and stock, with stock reserved per order."""
