"""Payment rules: which status may follow which, and what a settled payment answers. No I/O."""

from __future__ import annotations

from typing import Final

from cleave.errors import Conflict

# One spelling each, both fixed by the wire: the operation is `authorise` (the port's method and
# its gRPC `Authorise`), the states and events `authorized` (`payment_authorized.v1`).
AUTHORIZING: Final = "authorizing"
AUTHORIZED: Final = "authorized"
DECLINED: Final = "declined"
# Capturing: the processor was (or is about to be) asked to take the money, with no answer yet.
CAPTURING: Final = "capturing"
CAPTURED: Final = "captured"
VOIDED: Final = "voided"
REFUNDED: Final = "refunded"
PROCESSOR_TIMEOUT = "processor_timeout"

# Each command, and the statuses it may start from.
_ALLOWED = {
    "capture": {AUTHORIZED, CAPTURING},
    "void": {AUTHORIZING, AUTHORIZED},
    "refund": {CAPTURED},
}
# Where a command leaves a payment: asking again there is a retry, answered as it stands.
_DONE = {
    "capture": {CAPTURED},
    "void": {VOIDED, DECLINED},
    "refund": {REFUNDED},
}
_HINTS = {
    ("void", CAPTURED): "refund it instead",
    ("void", CAPTURING): "the money is being taken; refund it once captured",
}


def may(command: str, status: str) -> bool:
    return status in _ALLOWED[command]


def is_done(command: str, status: str) -> bool:
    return status in _DONE[command]


def require(command: str, status: str) -> None:
    """Raise Conflict unless `command` may start from `status` or has already been done."""
    if may(command, status) or is_done(command, status):
        return
    hint = _HINTS.get((command, status))
    detail = f"cannot {command} a payment that is {status}" + (f": {hint}" if hint else "")
    raise Conflict(detail, code=f"cannot-{command}", payment_status=status)


def failure_reason(status: str, reason: str | None) -> str | None:
    """Why a settled authorisation failed, or None when the card holds the money.

    A repeated authorise answers with this, so it never asks the processor a second time."""
    if status in (AUTHORIZED, CAPTURING, CAPTURED, REFUNDED):
        return None
    if status == DECLINED:
        return reason or "declined"
    return status  # voided: the order was cancelled meanwhile


def capture_key(payment_id: str) -> str:
    """The processor's idempotency key for capturing a payment: asked again, the same capture."""
    return f"capture-{payment_id}"
