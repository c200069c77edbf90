"""payment service."""
