"""The console's topology picture: Graphviz's DOT for a topology (a cluster per unit, calls and
events drawn differently), laid out by the real `dot`, and the hand-drawn picture with a note
when `dot` is missing, fails or hangs."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from cleave.config import SystemConfig, load_config
from cleave.runtime import load_services
from cleave.service import Service
from cleave.web.console import picture
from cleave.web.console.picture import NO_GRAPHVIZ, topology_dot, topology_picture
from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
EDGE = re.compile(r'^\s*"([^"]+)" -> "([^"]+)" \[(.*)\];$', re.MULTILINE)


def shop(topology: str) -> tuple[SystemConfig, dict[str, Service]]:
    config = load_config(ROOT / "cleave.toml", topology=topology)
    return config, load_services(config)


@pytest.fixture(autouse=True)
def _nothing_laid_out_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(picture, "_laid_out", {})


def clusters(dot: str) -> dict[str, list[str]]:
    """Each cluster's name and the nodes declared inside it."""
    found: dict[str, list[str]] = {}
    for block in re.finditer(r'subgraph "cluster_([^"]+)" \{(.*?)\n  \}', dot, re.DOTALL):
        found[block.group(1)] = re.findall(r'^\s*"([^"]+)" \[id=', block.group(2), re.MULTILINE)
    return found


def test_the_splits_dot_has_a_cluster_per_unit_and_calls_unlike_events() -> None:
    config, services = shop("split")
    dot = topology_dot(config, services)

    assert clusters(dot) == {unit: list(members) for unit, members in config.topology.units.items()}
    edges = [(source, target, attributes) for source, target, attributes in EDGE.findall(dot)]
    calls = [e for e in edges if "class=call" in e[2]]
    events = [e for e in edges if "class=event" in e[2]]
    assert len(calls) + len(events) == len(edges)
    assert {(s, t) for s, t, _ in calls} == {
        ("ordering", "catalog"),
        ("ordering", "customer"),
        ("ordering", "payment"),
    }
    assert ("ordering", "customer") in {(s, t) for s, t, _ in events}
    assert all("style=dashed" in a and "gRPC" not in a for *_, a in events)
    assert all("style=dashed" not in a and "· gRPC" in a for *_, a in calls)  # across units
    colour = re.compile(r'\bcolor="([^"]+)"')
    assert {colour.findall(a)[0] for *_, a in calls}.isdisjoint(
        colour.findall(a)[0] for *_, a in events
    )


def test_the_monoliths_dot_is_one_cluster_whose_calls_stay_in_process() -> None:
    config, services = shop("monolith")
    dot = topology_dot(config, services)
    assert clusters(dot) == {"shop": list(config.topology.units["shop"])}
    assert "gRPC" not in dot


async def test_dot_lays_it_out_once_and_each_service_is_a_link_with_its_hook() -> None:
    require(shutil.which("dot") is not None, "no Graphviz dot (tests/browser.sh adds it)")
    config, services = shop("split")
    svg = await topology_picture(config, services)
    assert svg.startswith("<svg ")
    assert svg.endswith("</svg>")
    assert 'class="topology laid-out"' in svg
    assert "viewBox=" in svg
    assert NO_GRAPHVIZ not in svg
    assert "<?xml" not in svg
    assert "<!--" not in svg
    assert " style=" not in svg  # nothing the console's CSP (no inline style) would refuse
    for name in services:
        assert svg.count(f'data-service="{name}"') == 1, name
        assert f'<a href="/console/services/{name}"' in svg
    assert svg.count('class="cluster unit"') == len(config.topology.units)
    assert svg.count('class="edge call"') == 3
    # The topology does not change while the console runs: dot runs once for it.
    assert await topology_picture(config, services) is svg


async def test_without_dot_the_picture_is_drawn_by_hand_with_a_note(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine without Graphviz
    config, services = shop("split")
    svg = await topology_picture(config, services)
    assert 'class="topology drawn"' in svg
    assert svg.count(NO_GRAPHVIZ) == 1
    assert all(f'data-service="{name}"' in svg for name in services)


@pytest.mark.parametrize(
    "script",
    ["echo 'Error: syntax error in line 1' >&2; exit 1", "exec sleep 30"],
    ids=["fails", "hangs"],
)
async def test_a_dot_that_fails_or_hangs_leaves_the_hand_drawn_picture(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, script: str
) -> None:
    dot = tmp_path / "dot"
    dot.write_text(f"#!/bin/sh\n{script}\n")
    dot.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setattr(picture, "DOT_TIMEOUT_SECONDS", 0.5)
    config, services = shop("split")
    svg = await topology_picture(config, services)
    assert 'class="topology drawn"' in svg
    assert NO_GRAPHVIZ not in svg  # dot is there; it is not the one to install
    assert picture._laid_out == {}  # tried again next time, not remembered as the picture
