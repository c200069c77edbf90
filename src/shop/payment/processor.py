"""The card processor port, and a simulated processor whose answer is decided by the card token.

| token | outcome |
|---|---|
| `tok_approve`, `tok_visa` | approved |
| `tok_decline` | declined: `declined` |
| `tok_insufficient_funds` | declined: `insufficient_funds` |
| `tok_timeout` | never answers: the caller's timeout cuts it |
| anything else | declined: `invalid_card` |

The simulated processor stands for a system outside the shop: it keeps its own state in its own
SQLite file (never the payment service's database), so a payment unit that restarts finds its
holds where it left them, as it would at a real processor.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Protocol

from cleave.files import private_file
from cleave.money import Money


class Declined(Exception):
    """The processor said no; `reason` is machine-readable, like `insufficient_funds`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CardProcessor(Protocol):
    async def authorise(self, idempotency_key: str, card_token: str, amount: Money) -> str:
        """Hold the amount; returns the processor's reference or raises Declined.

        Idempotent per key: asked again, it gives the first answer and holds nothing more."""

    async def capture(self, reference: str, *, idempotency_key: str) -> None:
        """Take the held amount, or raise Declined when the hold is gone. Idempotent per key:
        asked again after an answer that never arrived, it answers the same and takes nothing
        more."""

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

# An authorisation request: asked (no answer yet), approved, declined, or cancelled by the shop.
PENDING, APPROVED, DECLINED = "pending", "approved", "declined"
AUTHORIZED, CAPTURED, VOIDED, REFUNDED = "authorized", "captured", "voided", "refunded"
# Each operation on a hold: the state it leaves, and the states it may start from.
_MOVES = {
    "capture": (CAPTURED, {AUTHORIZED}),
    "void": (VOIDED, {AUTHORIZED}),
    "refund": (REFUNDED, {CAPTURED}),
}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS authorizations (
    key TEXT PRIMARY KEY, state TEXT NOT NULL, reference TEXT, reason TEXT,
    amount INTEGER, currency TEXT, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS holds (
    reference TEXT PRIMARY KEY, key TEXT NOT NULL, state TEXT NOT NULL,
    amount INTEGER NOT NULL, currency TEXT NOT NULL,
    authorized_at REAL NOT NULL, captured_at REAL, voided_at REAL, refunded_at REAL);
CREATE TABLE IF NOT EXISTS captures (
    key TEXT PRIMARY KEY, reference TEXT NOT NULL, outcome TEXT NOT NULL);
"""


class SimulatedProcessor:
    """Behaves like a real processor where it matters: idempotent per key and per reference, so
    a retried call is never a second charge, and durable, so it outlives the shop's restarts.
    Without a path it keeps its state in memory (unit tests). The counters say what was done."""

    def __init__(self, path: Path | str | None = None) -> None:
        if path is not None:
            private_file(Path(path))  # what it holds stands for a bank's records
        # Each statement is a few microseconds on a local file: no thread hop is worth it.
        self._db = sqlite3.connect(
            str(path) if path is not None else ":memory:",
            isolation_level=None,
            check_same_thread=False,
            timeout=10,
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._keys: dict[str, asyncio.Lock] = {}

    def close(self) -> None:
        self._db.close()

    def _one(self, sql: str, *parameters: object) -> tuple[object, ...] | None:
        row: tuple[object, ...] | None = self._db.execute(sql, parameters).fetchone()
        return row

    def _count(self, sql: str) -> int:
        row = self._one(sql)
        return int(str(row[0])) if row else 0

    @property
    def authorizations(self) -> int:
        return self._count("SELECT count(*) FROM holds")

    @property
    def captures(self) -> int:
        return self._count("SELECT count(*) FROM holds WHERE captured_at IS NOT NULL")

    @property
    def voids(self) -> int:
        return self._count("SELECT count(*) FROM holds WHERE voided_at IS NOT NULL")

    @property
    def refunds(self) -> int:
        return self._count("SELECT count(*) FROM holds WHERE refunded_at IS NOT NULL")

    async def authorise(self, idempotency_key: str, card_token: str, amount: Money) -> str:
        # One decision per key: a concurrent duplicate waits for it instead of charging again.
        async with self._keys.setdefault(idempotency_key, asyncio.Lock()):
            known = self._one(
                "SELECT state, reference, reason FROM authorizations WHERE key = ?", idempotency_key
            )
            if known is None:
                self._db.execute(
                    "INSERT INTO authorizations (key, state, amount, currency, at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (idempotency_key, PENDING, amount.amount, amount.currency, time.time()),
                )
            elif known[0] != PENDING:  # answered before: the same answer
                if known[0] == APPROVED:
                    return str(known[1])
                raise Declined(str(known[2] or CANCELLED))
            return await self._decide(idempotency_key, card_token, amount)

    async def _decide(self, idempotency_key: str, card_token: str, amount: Money) -> str:
        if card_token == HANGING:
            await asyncio.sleep(NEVER)  # stays pending until the shop cancels it
        await asyncio.sleep(0)  # a real processor answers asynchronously; so does this one
        if card_token not in APPROVING:
            reason = DECLINING.get(card_token, "invalid_card")
            self._answer(idempotency_key, DECLINED, reason=reason)
            raise Declined(reason)
        reference = f"sim_{uuid.uuid4().hex[:16]}"
        if not self._answer(idempotency_key, APPROVED, reference=reference):
            raise Declined(CANCELLED)  # the shop cancelled while the processor was deciding
        self._db.execute(
            "INSERT INTO holds (reference, key, state, amount, currency, authorized_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (reference, idempotency_key, AUTHORIZED, amount.amount, amount.currency, time.time()),
        )
        return reference

    def _answer(
        self, key: str, state: str, *, reference: str | None = None, reason: str | None = None
    ) -> bool:
        """Settle a pending request; False when it was cancelled (or answered) meanwhile."""
        changed = self._db.execute(
            "UPDATE authorizations SET state = ?, reference = ?, reason = ?, at = ? "
            "WHERE key = ? AND state = ?",
            (state, reference, reason, time.time(), key, PENDING),
        )
        return changed.rowcount == 1

    async def capture(self, reference: str, *, idempotency_key: str) -> None:
        answered = self._one("SELECT outcome FROM captures WHERE key = ?", idempotency_key)
        if answered is None:
            try:
                self._move(reference, "capture")
                outcome = CAPTURED
            except Declined as refused:
                outcome = refused.reason
            self._db.execute(
                "INSERT OR IGNORE INTO captures (key, reference, outcome) VALUES (?, ?, ?)",
                (idempotency_key, reference, outcome),
            )
            answered = self._one("SELECT outcome FROM captures WHERE key = ?", idempotency_key)
        assert answered is not None
        if answered[0] != CAPTURED:
            raise Declined(str(answered[0]))

    async def void(self, reference: str) -> None:
        self._move(reference, "void")

    async def refund(self, reference: str) -> None:
        self._move(reference, "refund")

    async def cancel(self, idempotency_key: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO authorizations (key, state, reason, at) VALUES (?, ?, ?, ?)",
            (idempotency_key, CANCELLED, CANCELLED, time.time()),
        )
        self._db.execute(
            "UPDATE authorizations SET state = ?, reason = ? WHERE key = ? AND state = ?",
            (CANCELLED, CANCELLED, idempotency_key, PENDING),
        )
        approved = self._one(
            "SELECT reference FROM authorizations WHERE key = ? AND state = ?",
            idempotency_key,
            APPROVED,
        )
        if approved is not None:
            await self.void(str(approved[0]))

    def state(self, reference: str) -> str | None:
        """Where a hold stands at the processor, for tests to compare with the payment."""
        row = self._one("SELECT state FROM holds WHERE reference = ?", reference)
        return str(row[0]) if row else None

    def open_authorizations(self) -> list[tuple[str, str]]:
        """(key, state) of every request still unanswered and every hold neither captured nor
        released: what the shop still owes the processor an answer about."""
        rows = self._db.execute(
            "SELECT key, state FROM authorizations WHERE state = ? "
            "UNION ALL SELECT key, state FROM holds WHERE state = ? ORDER BY 1",
            (PENDING, AUTHORIZED),
        ).fetchall()
        return [(str(key), str(state)) for key, state in rows]

    def _move(self, reference: str, operation: str) -> bool:
        """Apply `operation` to a hold; False when it was applied before (a retry)."""
        target, sources = _MOVES[operation]
        row = self._one("SELECT state FROM holds WHERE reference = ?", reference)
        current = str(row[0]) if row else None
        if current == target:
            return False
        if current not in sources:
            raise Declined(f"hold_{current or 'unknown'}")  # like hold_voided: no such move
        changed = self._db.execute(
            f"UPDATE holds SET state = ?, {target}_at = ? WHERE reference = ? AND state = ?",
            (target, time.time(), reference, current),
        )
        return changed.rowcount == 1
