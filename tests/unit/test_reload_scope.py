"""What `cleave up --reload` restarts for a change: the units of the service whose code changed,
every unit for shared code."""

from __future__ import annotations

from pathlib import Path

import pytest

from cleave.config import load_config
from cleave.serving.reload import service_homes, units_to_reload, watched_folders
from tests.conftest import ROOT

SHOP = ROOT / "src" / "shop"
CHASSIS = ROOT / "src" / "cleave"


def test_a_change_to_one_service_restarts_its_unit_alone() -> None:
    split = load_config(ROOT / "cleave.toml", topology="split")
    homes = service_homes(split)
    assert homes["ordering"] == SHOP / "ordering"
    assert units_to_reload(split, homes, [SHOP / "ordering" / "handlers.py"]) == ["ordering"]
    both = [SHOP / "ordering" / "saga.py", SHOP / "payment" / "handlers.py"]
    assert units_to_reload(split, homes, both) == ["ordering", "payment"]
    assert set(watched_folders(homes)) == {SHOP, CHASSIS}


def test_a_change_to_shared_code_restarts_every_unit() -> None:
    split = load_config(ROOT / "cleave.toml", topology="split")
    homes = service_homes(split)
    assert units_to_reload(split, homes, [CHASSIS / "saga.py"]) == list(split.topology.units)
    assert units_to_reload(split, homes, [SHOP / "__init__.py"]) == list(split.topology.units)


def test_services_declared_side_by_side_in_one_package_are_told_apart_by_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "sidebyside"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "first.py").write_text("")
    (package / "second.py").write_text("")
    config_file = tmp_path / "cleave.toml"
    config_file.write_text(
        '[services]\nfirst = "sidebyside.first:service"\nsecond = "sidebyside.second:service"\n'
        '[topology.two]\nunits = { a = ["first"], b = ["second"] }\n'
    )
    monkeypatch.syspath_prepend(tmp_path)
    config = load_config(config_file, topology="two")
    homes = service_homes(config)
    assert homes == {"first": package / "first.py", "second": package / "second.py"}
    assert units_to_reload(config, homes, [package / "second.py"]) == ["b"]
    assert units_to_reload(config, homes, [package / "__init__.py"]) == ["a", "b"]
