"""Payment rules: which status may follow which. No I/O."""

from __future__ import annotations

from cleave.errors import Conflict

AUTHORIZING, AUTHORIZED, DECLINED = "authorizing", "authorized", "declined"
CAPTURED, VOIDED, REFUNDED = "captured", "voided", "refunded"

# Each command, and the statuses it may start from.
_ALLOWED = {
    "capture": {AUTHORIZED},
    "void": {AUTHORIZING, AUTHORIZED},
    "refund": {CAPTURED},
}


def may(command: str, status: str) -> bool:
    return status in _ALLOWED[command]


def require(command: str, status: str) -> None:
    if not may(command, status):
        raise Conflict(f"cannot {command} a payment that is {status}", code=f"cannot-{command}")


def card_hint(card_token: str) -> str:
    """What a payment keeps of the card token: its last four characters, never the token."""
    return card_token[-4:] if len(card_token) >= 4 else "****"
