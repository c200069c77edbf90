"""`cleave up` on a topology of several units: child processes, prefixed logs, the gateway,
restart of a crashed unit, and a clean stop on Ctrl-C. Runs the toy system, which needs no
cross-unit calls, so that it tests the supervisor alone."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import free_port, started_own_system


def wait_for(check: object, what: str, seconds: float = 90.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {seconds} s")


def unit_pids(config: Path, unit: str) -> list[int]:
    """The processes running `unit` of this test's system (by its CLEAVE_CONFIG), none else's."""
    found = subprocess.run(
        ["pgrep", "-f", f"cleave run {unit} --topology two"],
        capture_output=True,
        text=True,
        check=False,
    )
    mine = f"CLEAVE_CONFIG={config}".encode()
    pids = []
    for pid in map(int, found.stdout.split()):
        with contextlib.suppress(OSError):  # gone since pgrep saw it
            if mine in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                pids.append(pid)
    return pids


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path, Path]]:
    gateway, port_a, port_b = free_port(), free_port(), free_port()
    config = tmp_path / "cleave.toml"
    config.write_text(
        f"""
[system]
name = "toy"
[services]
notes = "tests.integration.toy:notes_service"
tally = "tests.integration.toy:tally_service"
[topology.two]
units = {{ a = ["notes"], b = ["tally"] }}
broker = "memory"
database = "sqlite+aiosqlite:///{{var}}/{{service}}.db"
http_port = {gateway}
[topology.two.addresses]
a = "127.0.0.1:{port_a}:{free_port()}"
b = "127.0.0.1:{port_b}:{free_port()}"
"""
    )
    try:
        with started_own_system(tmp_path, "two", gateway) as up:
            yield up.base, up.process, config, up.log
    finally:
        for unit in ("a", "b"):  # any left behind by a gateway that had to be killed
            for pid in unit_pids(config, unit):
                os.kill(pid, signal.SIGKILL)


def test_units_run_as_processes_behind_one_gateway(
    supervised: tuple[str, subprocess.Popen[bytes], Path, Path],
) -> None:
    base, _process, config, log = supervised
    assert httpx.get(f"{base}/readyz").json()["units"] == {"a": "ok", "b": "ok"}
    assert len(unit_pids(config, "a")) == 1
    assert len(unit_pids(config, "b")) == 1
    text = log.read_text()
    assert "a │" in text
    assert "b │" in text
    unknown = httpx.get(f"{base}/api/nowhere/v1/things")
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "unknown-service"
    routed = httpx.get(f"{base}/api/notes/v1/nothing-here")
    assert routed.status_code == 404
    assert routed.headers["content-type"] == "application/problem+json"  # answered by unit a


def test_a_crashed_unit_is_reported_and_restarted(
    supervised: tuple[str, subprocess.Popen[bytes], Path, Path],
) -> None:
    base, _process, config, log = supervised
    [victim] = unit_pids(config, "b")
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: "unit b exited with code -9; restarting" in log.read_text(), "the crash report"
    )

    def back() -> bool:
        pids = unit_pids(config, "b")
        return bool(pids) and victim not in pids and httpx.get(f"{base}/readyz").status_code == 200

    wait_for(back, "unit b coming back")


def test_ctrl_c_stops_every_unit(
    supervised: tuple[str, subprocess.Popen[bytes], Path, Path],
) -> None:
    _base, process, config, log = supervised
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)
    assert unit_pids(config, "a") == []
    assert unit_pids(config, "b") == []
    assert "all units stopped" in log.read_text()
