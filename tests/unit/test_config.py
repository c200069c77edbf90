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


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        (
            '[topology.split]\nunits = "one-per-service"\nhttp_port = 8000\nhtp_port = 8001\n',
            9,
            "unknown key 'htp_port' in [topology.split]",
        ),
        (
            "[topology.a]\nbroker = 'memory'\n[topology.b]\nbrokr = 'memory'\n",
            9,
            "unknown key 'brokr' in [topology.b]",
        ),
        ("[topology.t]\n[auth]\nissuer = 'self'\naudiance = 'x'\n", 9, "unknown key 'audiance'"),
        ("[system]\nname = 'x'\ndefault_topolgy = 't'\n[topology.t]\n", 8, "'default_topolgy'"),
        ("[topology.t]\n[setings.a]\nx = 1\n", 7, "unknown key 'setings' in the file's top"),
        ("[topology.t]\n[settings.d]\nx = 1\n", 7, "settings for unknown service 'd'"),
        ("[topology.t]\nhttp_port = 'eighty'\n", 7, "'http_port' must be a port number"),
        ("[topology.t]\npool_size = 0\n", 7, "pool_size must be a whole number from 1"),
        ("[topology.t]\n[auth]\njwks_refresh_seconds = 'soon'\n", 8, "must be seconds"),
        ("[topology.t]\n[auth]\nissuer = 42\n", 8, "'issuer' must be a string"),
        ("[topology.t]\ntrusted_proxies = ['10.0.0.0/33']\n", 7, "is no address or network"),
        ("[topology.t]\n[topology.t.databases]\nd = 'sqlite://'\n", 8, "unknown service 'd'"),
        ("[topology.t]\n[topology.t.addresses]\nv = 'h:1:2'\n", 8, "unknown unit 'v'"),
    ],
)
def test_a_wrong_key_is_one_line_naming_it_the_file_and_the_line(
    tmp_path: Path, body: str, line: int, message: str
) -> None:
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    text = str(raised.value)
    assert "\n" not in text
    assert text.startswith(f"{path}:{line}: "), text
    assert message in text


def test_every_documented_topology_key_is_read(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
[topology.full]
units = { core = ["a", "b"], c = ["c"] }
broker = "amqp://guest:guest@127.0.0.1:5672/"
database = "postgresql+asyncpg://{service}@db/{service}"
host = "127.0.0.2"
http_port = 7000
grpc_port = 7100
metrics_port = 7200
pool_size = 2
admin_url = "postgresql://postgres@db/postgres"
trusted_proxies = ["10.0.0.0/8", "192.0.2.1"]
[topology.full.databases]
c = "sqlite+aiosqlite:///{var}/c.db"
[topology.full.addresses]
c = "127.0.0.3:7301:7302:7303"
""",
        ),
        topology="full",
    )
    topology = config.topology
    assert topology.admin_url == "postgresql://postgres@db/postgres"
    assert topology.trusted_proxies == ("10.0.0.0/8", "192.0.2.1")
    assert (topology.host, topology.pool_size) == ("127.0.0.2", 2)
    assert topology.address_of("core").http_port == 7001
    assert topology.address_of("core").metrics_port == 7201  # unit N scrapes on metrics_port + N
    assert topology.address_of("c").metrics_port == 7303
    assert config.database_url("c").endswith("/c.db")


def test_the_shipped_split_provisions_through_its_admin_url_and_trusts_no_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CLEAVE_METRICS_PORT", raising=False)
    shipped = load_config(Path(__file__).parents[2] / "cleave.toml", topology="split")
    assert shipped.topology.admin_url == "postgresql://postgres@127.0.0.1:5432/postgres"
    assert shipped.topology.trusted_proxies == ()
    assert shipped.topology.address_of("catalog").metrics_port is not None
