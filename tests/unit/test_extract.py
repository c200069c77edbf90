"""`cleave extract` on the shop's own cleave.toml, copied: which line it writes, and when not."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cleave.config import load_config
from cleave.errors import CleaveError, ConfigError
from cleave.scaffold.extract import extract

ROOT = Path(__file__).resolve().parents[2]
CORE = ["identity", "catalog", "customer", "ordering", "storefront"]


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    copy = tmp_path / "cleave.toml"
    shutil.copy2(ROOT / "cleave.toml", copy)
    return copy


def units_line(path: Path, topology: str) -> str:
    lines = path.read_text().splitlines()
    start = lines.index(f"[topology.{topology}]")
    return next(line for line in lines[start:] if line.startswith("units = "))


def test_a_service_leaves_its_unit_for_a_new_one_at_the_end(config_file: Path) -> None:
    moved = extract("catalog", None, "payments-out", config_file)
    assert (moved.topology, moved.unit) == ("payments-out", "catalog")
    assert units_line(config_file, "payments-out") == (
        'units = { core = ["identity", "customer", "ordering", "storefront"], '
        'payments = ["payment"], catalog = ["catalog"] }'
    )
    units = load_config(config_file, "payments-out").topology.units
    assert list(units) == ["core", "payments", "catalog"]  # core and payments keep their ports


def test_a_service_alone_already_changes_nothing_unless_its_unit_is_renamed(
    config_file: Path,
) -> None:
    before = config_file.read_text()
    unchanged = extract("payment", None, "payments-out", config_file)
    assert (unchanged.unit, unchanged.after) == ("payments", before)
    assert config_file.read_text() == before
    renamed = extract("payment", "pay", "payments-out", config_file)
    assert renamed.after != before
    core = ", ".join(f'"{name}"' for name in CORE)
    assert units_line(config_file, "payments-out") == (
        f'units = {{ core = [{core}], pay = ["payment"] }}'
    )


def test_the_monolith_cannot_carry_events_between_units_on_its_in_process_broker(
    config_file: Path,
) -> None:
    before = config_file.read_text()
    with pytest.raises(CleaveError, match="would not wire: every unit subscribes to identity"):
        extract("catalog", None, "monolith", config_file)
    assert config_file.read_text() == before


def test_a_unit_of_every_service_is_spelt_out_without_the_one_extracted(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLEAVE_BROKER", "nats://127.0.0.1:4222")  # one that crosses processes
    extract("catalog", "products", "monolith", config_file)
    others = '"identity", "customer", "ordering", "payment", "storefront"'
    assert units_line(config_file, "monolith") == (
        f'units = {{ shop = [{others}], products = ["catalog"] }}'
    )


@pytest.mark.parametrize(
    ("service", "unit", "topology", "error"),
    [
        ("catalog", "payments", "payments-out", "unit 'payments' of topology 'payments-out' runs"),
        ("catalog", "Products", "payments-out", "'Products' is not a unit name"),
        ("catalog", "products", "split", "topology 'split' runs catalog alone in unit 'catalog'"),
        ("nobody", None, "split", "unknown service 'nobody'"),
    ],
)
def test_an_extraction_that_cannot_be_made_says_why(
    config_file: Path, service: str, unit: str | None, topology: str, error: str
) -> None:
    with pytest.raises(ConfigError, match=error):
        extract(service, unit, topology, config_file)
