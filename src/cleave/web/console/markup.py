"""Small pieces of HTML that more than one of the console's pages renders the same way."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape


def select_options(chosen: str, values: Sequence[str], any_label: str) -> str:
    """A filter's `<option>`s: first "any" (the empty value), then `values`, `chosen` selected."""
    return f"<option value=''>{any_label}</option>" + "".join(
        f"<option{' selected' if value == chosen else ''}>{escape(value)}</option>"
        for value in values
    )


def clock_time(nanoseconds: int) -> str:
    """A time in nanoseconds since the epoch as the console's tables show it: HH:MM:SS, UTC."""
    return datetime.fromtimestamp(nanoseconds / 1e9, UTC).strftime("%H:%M:%S")
