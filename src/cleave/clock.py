"""The one clock every layer reads: timezone-aware UTC, so no naive timestamp slips through."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
