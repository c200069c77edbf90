"""The customer service, declared once (skeleton, being written)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import MetaData

from cleave.service import Service

service = Service(name="customer", metadata=MetaData(), migrations=Path(__file__).parent / "migrations")
