"""What a topology cannot wire, as `cleave extract` checks it: port calls and events between
units. The services here are declared in this module and named by it in cleave.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from sqlalchemy import MetaData

from cleave.config import load_config
from cleave.events import Event
from cleave.runtime import wiring_problems
from cleave.service import PortBinding, Service, ServiceContext, Subscription, UnitOfWork


class NoticePort(Protocol):
    async def notice(self, text: str) -> None: ...


class UnknownPort(Protocol):
    async def anything(self) -> None: ...


class Noticed(Event):
    event_type = "test.board.noticed.v1"

    text: str


class Board:
    def __init__(self, context: ServiceContext) -> None:
        self.context = context

    async def notice(self, text: str) -> None:
        return None


async def on_noticed(event: Noticed, uow: UnitOfWork) -> None:
    return None


HERE = Path(__file__).parent
# A port without an rpc contract: callable in its own unit only.
board = Service(
    name="board",
    metadata=MetaData(),
    migrations=HERE,
    publishes=(Noticed,),
    port=PortBinding(NoticePort, Board),
)
reader = Service(
    name="reader",
    metadata=MetaData(),
    migrations=HERE,
    calls=(NoticePort,),
    subscriptions=(Subscription(Noticed, on_noticed, name="on_noticed"),),
)
stray = Service(name="stray", metadata=MetaData(), migrations=HERE, calls=(UnknownPort,))


def config_file(tmp_path: Path, units: str, broker: str = "memory") -> Path:
    path = tmp_path / "cleave.toml"
    path.write_text(
        f'[services]\nboard = "{__name__}:board"\nreader = "{__name__}:reader"\n'
        f'[topology.t]\nunits = {units}\nbroker = "{broker}"\n'
    )
    return path


def test_one_unit_wires_everything(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path, '{ one = ["*"] }'))
    assert wiring_problems(config) == []


def test_a_call_and_an_event_between_units_need_an_rpc_contract_and_a_broker(
    tmp_path: Path,
) -> None:
    config = load_config(config_file(tmp_path, '{ a = ["board"], b = ["reader"] }'))
    assert wiring_problems(config) == [
        "reader (unit b) calls NoticePort of board (unit a), whose port declares no rpc contract",
        "reader (unit b) subscribes to test.board.noticed.v1 of board (unit a), but the broker "
        "'memory' carries events only within one process",
    ]
    over_nats = load_config(
        config_file(tmp_path, '{ a = ["board"], b = ["reader"] }', "nats://127.0.0.1:4222")
    )
    assert wiring_problems(over_nats) == [wiring_problems(config)[0]]


def test_a_call_no_service_provides_and_an_event_no_one_publishes(tmp_path: Path) -> None:
    path = tmp_path / "cleave.toml"
    path.write_text(
        f'[services]\nstray = "{__name__}:stray"\nreader = "{__name__}:reader"\n'
        '[topology.t]\nunits = { one = ["*"] }\n'
    )
    assert wiring_problems(load_config(path)) == [
        "stray calls UnknownPort, which no service provides",
        "reader calls NoticePort, which no service provides",
        "reader subscribes to test.board.noticed.v1, which no service publishes",
    ]
