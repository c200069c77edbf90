"""The card processor port, and a simulated processor whose answer is decided by the card token.

| token | outcome |
|---|---|
| `tok_approve`, `tok_visa` | approved |
| `tok_decline` | declined: `declined` |
| `tok_insufficient_funds` | declined: `insufficient_funds` |
| `tok_timeout` | never answers: the caller's timeout cuts it |
| anything else | declined: `invalid_card` |
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Protocol

from cleave.money import Money


class Declined(Exception):
    """The processor said no; `reason` is machine-readable, like `insufficient_funds`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CardProcessor(Protocol):
    async def authorize(self, idempotency_key: str, card_token: str, amount: Money) -> str:
        """Hold the amount; returns the processor's reference or raises Declined.

        Idempotent per key: asked again, it gives the first answer and holds nothing more."""

    async def capture(self, reference: str) -> None:
        """Take the held amount. Idempotent."""

    async def void(self, reference: str) -> None:
        """Release the hold. Idempotent."""

    async def refund(self, reference: str) -> None:
        """Give a captured amount back. Idempotent."""

    async def cancel(self, idempotency_key: str) -> None:
        """Void whatever the authorisation under this key did or will do: the way out when its
        answer never came."""


APPROVING = frozenset({"tok_approve", "tok_visa"})
DECLINING = {"tok_decline": "declined", "tok_insufficient_funds": "insufficient_funds"}
HANGING = "tok_timeout"
CANCELLED = "cancelled"
NEVER = 24 * 3600.0

AUTHORIZED, CAPTURED, VOIDED, REFUNDED = "authorized", "captured", "voided", "refunded"
# Each operation on a hold: the state it leaves, and the states it may start from.
_MOVES = {
    "capture": (CAPTURED, {AUTHORIZED}),
    "void": (VOIDED, {AUTHORIZED}),
    "refund": (REFUNDED, {CAPTURED}),
}


class SimulatedProcessor:
    """Behaves like a real processor where it matters: idempotent per key and per reference, so
    a retried call is never a second charge. The counters say what was really done."""

    def __init__(self) -> None:
        self._answers: dict[str, str | Declined] = {}
        self._keys: dict[str, asyncio.Lock] = {}
        self._cancelled: set[str] = set()
        self._holds: dict[str, str] = {}
        self._reference_of: dict[str, str] = {}
        self.authorizations = 0
        self.captures = 0
        self.voids = 0
        self.refunds = 0

    async def authorize(self, idempotency_key: str, card_token: str, amount: Money) -> str:
        # One decision per key: a concurrent duplicate waits for it instead of charging again.
        async with self._keys.setdefault(idempotency_key, asyncio.Lock()):
            if idempotency_key not in self._answers:
                self._answers[idempotency_key] = await self._decide(idempotency_key, card_token)
            answer = self._answers[idempotency_key]
        if isinstance(answer, Declined):
            raise Declined(answer.reason)
        return answer

    async def _decide(self, idempotency_key: str, card_token: str) -> str | Declined:
        if card_token == HANGING:
            await asyncio.sleep(NEVER)
        await asyncio.sleep(0)  # a real processor answers asynchronously; so does this one
        if idempotency_key in self._cancelled:
            return Declined(CANCELLED)
        if card_token not in APPROVING:
            return Declined(DECLINING.get(card_token, "invalid_card"))
        reference = f"sim_{uuid.uuid4().hex[:16]}"
        self._holds[reference] = AUTHORIZED
        self._reference_of[idempotency_key] = reference
        self.authorizations += 1
        return reference

    async def capture(self, reference: str) -> None:
        if self._move(reference, "capture"):
            self.captures += 1

    async def void(self, reference: str) -> None:
        if self._move(reference, "void"):
            self.voids += 1

    async def refund(self, reference: str) -> None:
        if self._move(reference, "refund"):
            self.refunds += 1

    async def cancel(self, idempotency_key: str) -> None:
        self._cancelled.add(idempotency_key)
        if (reference := self._reference_of.get(idempotency_key)) is not None:
            await self.void(reference)

    def state(self, reference: str) -> str | None:
        """Where a hold stands at the processor, for tests to compare with the payment."""
        return self._holds.get(reference)

    def _move(self, reference: str, operation: str) -> bool:
        """Apply `operation` to a hold; False when it was applied before (a retry)."""
        target, sources = _MOVES[operation]
        current = self._holds.get(reference)
        if current == target:
            return False
        if current not in sources:
            raise Declined(f"hold_{current or 'unknown'}")  # like hold_voided: no such move
        self._holds[reference] = target
        return True
