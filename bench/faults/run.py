"""One fault class under load: products of its own, the open-loop load in its own process, the
fault injected meanwhile, then the wait for the system to settle and the invariant check."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.faults.classes import Context, FaultClass, parked_in_rabbitmq
from bench.faults.invariants import Verdict, check, wait_until_settled
from bench.faults.system import ROOT, create_products, write_plan

SETTLE_SECONDS = 150.0  # past any retry ceiling (10 attempts, backoff up to 10 s)


@dataclass
class ClassResult:
    name: str
    title: str
    verdict: Verdict
    notes: list[str] = field(default_factory=list)
    load_cpu_seconds: float = 0.0
    load_seconds: float = 0.0
    rate: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        v = self.verdict
        return {
            "class": self.name,
            "title": self.title,
            "orders": v.orders,
            "refused": v.refused,
            "lost": v.lost,
            "duplicated": v.duplicated,
            "stuck": v.stuck,
            "unexpected": v.unexpected,
            "recovery_seconds": v.recovery_seconds,
            "passed": v.passed,
            "outcomes": dict(v.outcomes),
            "violations": v.violations,
            "notes": self.notes,
            "load": {
                "rate_per_second": self.rate,
                "seconds": round(self.load_seconds, 1),
                "cpu_seconds": round(self.load_cpu_seconds, 2),
            },
        }


async def run_class(fault: FaultClass, context: Context, *, count: int, rate: float) -> ClassResult:
    system = context.system
    tag = f"{fault.name}-{int(time.time()) % 100000}"
    scarce = max(count // 25, 5)
    skus = await create_products(system, tag, scarce_stock=scarce)
    initial = {skus["bulk"]: 1_000_000, skus["scarce"]: scarce}
    workdir = Path(tempfile.mkdtemp(prefix=f"cleave-{fault.name}-"))
    plan, out = workdir / "plan.json", workdir / "placed.json"
    write_plan(plan, system, tag, skus, count, rate)
    context.load_seconds = count / rate
    load = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.faults.load", str(plan), str(out), cwd=ROOT
    )
    healed_at = await fault.inject(context)
    await load.wait()
    if load.returncode != 0:
        raise RuntimeError(f"the load generator failed ({load.returncode})")
    placed = json.loads(out.read_text())
    accepted = [p["order_id"] for p in placed["orders"] if p["order_id"]]
    await wait_until_settled(system, accepted, within=SETTLE_SECONDS)
    parked = await parked_in_rabbitmq(context) if context.rabbitmq is not None else 0
    verdict = await check(
        system,
        placed["orders"],
        skus,
        initial,
        healed_at=healed_at,
        poison=context.poison,
        parked_in_broker=parked,
    )
    for note in context.notes:
        if note.startswith("VIOLATION"):
            verdict.violate(note)
    if fault.name == "F8" and verdict.refused:
        verdict.violate(f"{verdict.refused} orders refused while identity was down")
    return ClassResult(
        fault.name,
        fault.title,
        verdict,
        list(context.notes),
        load_cpu_seconds=placed["cpu_seconds"],
        load_seconds=placed["sent_seconds"],
        rate=rate,
    )
