"""cleave.toml: topologies, units and the errors a person gets for a wrong file."""

from __future__ import annotations

from pathlib import Path

import pytest

from cleave.config import load_config
from cleave.errors import ConfigError

SERVICES = """
[services]
a = "x:a"
b = "x:b"
c = "x:c"
"""


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "cleave.toml"
    path.write_text(SERVICES + body)
    return path


def test_the_shipped_file_defaults_to_the_monolith(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLEAVE_TOPOLOGY", raising=False)
    monkeypatch.delenv("CLEAVE_DATABASE", raising=False)
    config = load_config(Path(__file__).parents[2] / "cleave.toml")
    assert config.topology.name == "monolith"
    assert list(config.topology.units) == ["shop"]
    assert set(config.topology.units["shop"]) == {
        "identity",
        "catalog",
        "customer",
        "ordering",
        "payment",
        "storefront",
    }
    assert config.database_url("catalog").endswith("/catalog.db")


def test_units_group_services_and_each_service_gets_its_own_database(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
[topology.split]
units = "one-per-service"
database = "postgresql+asyncpg://{service}@db/{service}"
[topology.c-out]
units = { core = ["a", "b"], c = ["c"] }
""",
        ),
        topology="c-out",
    )
    assert config.topology.units == {"core": ("a", "b"), "c": ("c",)}
    assert config.topology.unit_of("c") == "c"
    split = config.with_topology("split")
    assert split.topology.units == {"a": ("a",), "b": ("b",), "c": ("c",)}
    assert split.database_url("b") == "postgresql+asyncpg://b@db/b"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[topology.t]\nunits = { u = ["a", "b"] }', "places no unit for c"),
        ('[topology.t]\nunits = { u = ["a", "b", "c", "d"] }', "unknown service 'd'"),
        ('[topology.t]\nunits = { u = ["a", "b", "c"], v = ["a"] }', "in two units"),
        ("", "no [topology.<name>] table"),
        ("[topology.t\n", "cleave.toml"),
    ],
)
def test_a_wrong_file_gets_a_clear_error(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        load_config(write(tmp_path, body))


def test_an_unknown_topology_names_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path, '[topology.one]\nunits = { u = ["*"] }')
    with pytest.raises(ConfigError, match=r"unknown topology 'two' \(known: one\)"):
        load_config(path, topology="two")


async def test_each_unit_sizes_its_connection_pools_from_its_topology(tmp_path: Path) -> None:
    from dataclasses import replace

    from cleave.messaging.broker import MemoryBroker
    from cleave.runtime import Unit

    parsed = load_config(
        write(tmp_path, "[topology.small]\npool_size = 3\n[topology.plain]\n"), topology="small"
    )
    assert parsed.topology.pool_size == 3
    assert parsed.topologies["plain"].pool_size == 5

    shipped = load_config(Path(__file__).parents[2] / "cleave.toml", topology="split")
    config = replace(shipped, topology=replace(shipped.topology, pool_size=3))
    unit = Unit(config, "catalog", broker=MemoryBroker())
    try:
        pool = unit.context("catalog").database.engine.pool
        assert pool.size() == 3  # type: ignore[attr-defined]
    finally:
        await unit.stop()
