"""How the supervisor restarts a unit: with a growing, jittered backoff that starts over once a
unit has run healthily for a while (measured from when it started), and never a unit that said
no restart can fix it (exit 78): then every unit stops and `cleave up` says that one line."""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from rich.console import Console

from cleave.config import load_config
from cleave.errors import EX_CONFIG, Unrecoverable
from cleave.serving.supervisor import Backoff, Supervisor
from tests.identity.conftest import free_port


def test_the_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    backoff = Backoff(first=1.0, cap=8.0, healthy_after=60.0)
    waits = [backoff.after_exit(ran_for=0.1) for _ in range(6)]
    for wait, ceiling in zip(waits, [1, 2, 4, 8, 8, 8], strict=True):
        assert ceiling / 2 <= wait <= ceiling
    assert len({round(wait, 6) for wait in waits}) > 1  # drawn, not fixed


def test_the_backoff_starts_over_after_a_healthy_run() -> None:
    backoff = Backoff(first=1.0, cap=30.0, healthy_after=60.0)
    for _ in range(5):
        backoff.after_exit(ran_for=0.5)
    assert backoff.current == 30.0
    assert backoff.after_exit(ran_for=61.0) <= 1.0


@pytest.fixture(autouse=True)
async def _collect_the_units_while_their_loop_runs() -> AsyncIterator[None]:
    # Python 3.11 closes a finished subprocess's transport only when it is collected, and
    # raises if its loop has closed by then; collecting here keeps that inside the test.
    yield
    gc.collect()


class Scripted(Supervisor):
    """A supervisor whose units are small Python scripts instead of `cleave run UNIT`."""

    def __init__(self, scripts: dict[str, str], tmp_path: Path) -> None:
        path = tmp_path / "cleave.toml"
        addresses = "\n".join(
            f'{unit} = "127.0.0.1:{free_port()}:{free_port()}"' for unit in scripts
        )
        path.write_text(
            '[services]\nnotes = "tests.integration.toy:notes_service"\n'
            'tally = "tests.integration.toy:tally_service"\n'
            '[topology.two]\nunits = { a = ["notes"], b = ["tally"] }\n'
            f"[topology.two.addresses]\n{addresses}\n"
        )
        config = load_config(path, topology="two")
        super().__init__(
            config, host="127.0.0.1", port=free_port(), console=Console(file=sys.stderr)
        )
        self.scripts = scripts

    def _command(self, unit: str) -> list[str]:
        return [sys.executable, "-c", self.scripts[unit]]


async def test_a_unit_that_cannot_start_stops_every_unit_with_its_one_line(
    tmp_path: Path,
) -> None:
    supervisor = Scripted(
        {
            "a": f"import sys; print('error: role \"x\" does not exist'); sys.exit({EX_CONFIG})",
            "b": "import time; time.sleep(60)",
        },
        tmp_path,
    )
    started = time.monotonic()
    with pytest.raises(Unrecoverable) as raised:
        await asyncio.wait_for(supervisor.run(), 20)
    assert time.monotonic() - started < 15
    assert str(raised.value).startswith('unit a cannot start: role "x" does not exist')
    assert "a restart cannot fix this" in str(raised.value)
    assert supervisor.child("a").restarts == 0
    other = supervisor.child("b").process
    assert other is not None
    assert other.returncode is not None  # stopped too


async def test_a_unit_that_keeps_running_a_while_is_restarted_promptly_each_time(
    tmp_path: Path,
) -> None:
    # Unit a runs 0.3 s and crashes; with 0.2 s counting as healthy, its backoff never grows.
    supervisor = Scripted(
        {"a": "import time, sys; time.sleep(0.3); sys.exit(1)", "b": "import time; time.sleep(60)"},
        tmp_path,
    )
    child = supervisor.child("a")
    child.backoff = Backoff(first=0.05, cap=10.0, healthy_after=0.2)
    stop = asyncio.Event()
    running = asyncio.create_task(supervisor.run(stop))
    deadline = time.monotonic() + 15
    while child.restarts < 4:
        assert time.monotonic() < deadline, f"only {child.restarts} restarts"
        await asyncio.sleep(0.05)
    assert child.backoff.current <= 0.1
    stop.set()
    await running
