"""A three-step toy saga for the saga runner's own tests, run in the `notes` service.

Every action, compensation and hook records itself in `Script.calls`, and can be told to fail
(`StepFailed`), raise (a transient error), hang, or stall (return or raise late) on its next
calls. The hooks also write a note in their transaction, so what a saga's end committed can be
read back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from cleave.clock import utcnow
from cleave.saga import Action, Compensation, SagaDefinition, SagaState, Step, StepFailed
from cleave.service import UnitOfWork
from tests.integration.toy import write_note

NAME = "errand"
STEPS = ("reserve", "charge", "ship")
CARD = "card"  # a forward-only key of the saga's data

Behaviour = Literal["fail", "raise", "hang", "stall", "stall then raise"]


@dataclass(frozen=True)
class Call:
    saga_id: str
    name: str  # a step's name, "undo <step>", "completed" or "failed"
    at: datetime
    by: str  # the orchestrator whose runner made the call


@dataclass
class Script:
    calls: list[Call] = field(default_factory=list)
    # What the next calls of each name do, in turn; a call with nothing planned succeeds.
    plans: dict[str, list[Behaviour]] = field(default_factory=dict)
    # Each action takes this long, so that two runners would overlap if both ran one.
    pause_seconds: float = 0.0
    stall_seconds: float = 1.0
    # The (saga, call) pairs running now, and each one that started while it already ran.
    running: list[tuple[str, str]] = field(default_factory=list)
    overlaps: list[tuple[str, str]] = field(default_factory=list)
    hanging: asyncio.Event = field(default_factory=asyncio.Event)

    def plan(self, name: str, *behaviours: Behaviour) -> None:
        self.plans.setdefault(name, []).extend(behaviours)

    def of(self, saga_id: str) -> list[str]:
        return [call.name for call in self.calls if call.saga_id == saga_id]

    def times_of(self, saga_id: str, name: str) -> list[datetime]:
        return [call.at for call in self.calls if (call.saga_id, call.name) == (saga_id, name)]

    async def perform(self, saga_id: str, name: str, by: str) -> None:
        key = (saga_id, name)
        if key in self.running:
            self.overlaps.append(key)
        self.running.append(key)
        self.calls.append(Call(saga_id, name, utcnow(), by))
        try:
            planned = self.plans.get(name)
            behaviour = planned.pop(0) if planned else None
            if self.pause_seconds:
                await asyncio.sleep(self.pause_seconds)
            if behaviour in ("stall", "stall then raise"):
                await asyncio.sleep(self.stall_seconds)
            if behaviour == "fail":
                raise StepFailed(f"{name}_refused")
            if behaviour in ("raise", "stall then raise"):
                raise ConnectionError(f"{name} is unreachable")
            if behaviour == "hang":
                self.hanging.set()
                await asyncio.Event().wait()
        finally:
            self.running.remove(key)


def errand(script: Script, *, retriable: Collection[str] = (), by: str = "") -> SagaDefinition:
    """The toy saga over `script` as orchestrator `by` runs it, with the steps named in
    `retriable` past the pivot."""

    def action(name: str) -> Action:
        async def act(state: SagaState) -> Mapping[str, Any]:
            await script.perform(state.id, name, by)
            return {f"{name}_done": True}

        return act

    def compensation(name: str) -> Compensation:
        async def undo(state: SagaState) -> None:
            await script.perform(state.id, f"undo {name}", by)

        return undo

    async def on_completed(uow: UnitOfWork, state: SagaState) -> None:
        await write_note(uow, f"{state.id}:completed", "completed")
        await script.perform(state.id, "completed", by)

    async def on_failed(uow: UnitOfWork, state: SagaState) -> None:
        await write_note(uow, f"{state.id}:failed", f"{state.failed_step}: {state.reason}")
        await script.perform(state.id, "failed", by)

    return SagaDefinition(
        name=NAME,
        steps=[
            Step(name, action(name), compensation(name), retriable=name in retriable)
            for name in STEPS
        ],
        on_completed=on_completed,
        on_failed=on_failed,
        forward_only=frozenset({CARD}),
    )
