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


class Declined(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CardProcessor(Protocol):
    async def authorize(
        self, idempotency_key: str, card_token: str, amount: int, currency: str
    ) -> str:
        """Hold the amount; returns the processor's reference or raises Declined."""

    async def capture(self, reference: str) -> None: ...

    async def void(self, reference: str) -> None: ...

    async def refund(self, reference: str) -> None: ...


APPROVING = frozenset({"tok_approve", "tok_visa"})
DECLINING = {"tok_decline": "declined", "tok_insufficient_funds": "insufficient_funds"}
HANGING = "tok_timeout"


class SimulatedProcessor:
    """Idempotent per key, like real processors: a retried authorisation is not a second charge."""

    def __init__(self) -> None:
        self._by_key: dict[str, str] = {}
        self.authorizations = 0
        self.captures = 0
        self.voids = 0
        self.refunds = 0

    async def authorize(
        self, idempotency_key: str, card_token: str, amount: int, currency: str
    ) -> str:
        if idempotency_key in self._by_key:
            return self._by_key[idempotency_key]
        if card_token == HANGING:
            await asyncio.sleep(3600)
        await asyncio.sleep(0)  # a real processor answers asynchronously; so does this one
        if card_token not in APPROVING:
            raise Declined(DECLINING.get(card_token, "invalid_card"))
        reference = f"sim_{uuid.uuid4().hex[:16]}"
        self._by_key[idempotency_key] = reference
        self.authorizations += 1
        return reference

    async def capture(self, reference: str) -> None:
        self.captures += 1

    async def void(self, reference: str) -> None:
        self.voids += 1

    async def refund(self, reference: str) -> None:
        self.refunds += 1
