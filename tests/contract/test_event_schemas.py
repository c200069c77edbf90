"""Event schemas: the checked-in files are what the models make today, and the compatibility
gate refuses a change that would break a consumer, naming the type, the field and the consumer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from cleave.config import load_config
from cleave.contracts import baseline, events
from cleave.events import Event
from cleave.money import Money
from cleave.runtime import load_services
from tests.conftest import ROOT

CONFIRMED = "shop.ordering.order_confirmed.v1"


def current() -> dict[str, baseline.Document]:
    return events.published_schemas(load_services(load_config(ROOT / "cleave.toml")))


def readers() -> dict[str, list[str]]:
    return events.consumers(load_services(load_config(ROOT / "cleave.toml")))


def checked_in() -> dict[str, baseline.Document]:
    return baseline.read_documents(ROOT / "contracts" / "events")


def with_model(model: type[Event], publisher: str = "ordering") -> dict[str, baseline.Document]:
    return {**current(), model.event_type: events.event_schema(model, publisher)}


def breaking(schemas: dict[str, baseline.Document]) -> list[str]:
    return events.compare(schemas, checked_in(), readers()).breaking


def test_every_checked_in_schema_is_what_its_model_makes_today(tmp_path: Path) -> None:
    events.write(replace(load_config(ROOT / "cleave.toml"), root=tmp_path))
    fresh = sorted(path.name for path in (tmp_path / "contracts" / "events").glob("*.json"))
    kept = sorted(path.name for path in (ROOT / "contracts" / "events").glob("*.json"))
    assert fresh == kept, f"run {events.WRITE_COMMAND}"
    assert f"{CONFIRMED}.json" in fresh
    for name in fresh:
        assert (tmp_path / "contracts/events" / name).read_text() == (
            ROOT / "contracts/events" / name
        ).read_text(), f"{name} drifted from its model: run {events.WRITE_COMMAND}"
    assert events.verify(load_config(ROOT / "cleave.toml")) == []


def test_the_schema_is_titled_by_the_wire_name_and_names_its_publisher() -> None:
    schema = checked_in()[CONFIRMED]
    assert schema["title"] == CONFIRMED
    assert schema["x-publisher"] == "ordering"
    assert schema["required"] == ["order_id", "customer_id", "total"]


def test_a_removed_field_fails_naming_the_type_the_field_and_its_consumer() -> None:
    class OrderConfirmed(Event):
        event_type = CONFIRMED
        order_id: str
        customer_id: str

    assert breaking(with_model(OrderConfirmed)) == [
        f"events: {CONFIRMED} (read by customer): field 'total': removed (or renamed); "
        "publish the change as a new version"
    ]


def test_a_renamed_field_fails_as_removed_and_newly_required() -> None:
    class OrderConfirmed(Event):
        event_type = CONFIRMED
        order_id: str
        client_id: str
        total: Money

    problems = breaking(with_model(OrderConfirmed))
    assert any("field 'customer_id': removed" in line for line in problems), problems
    assert any("field 'client_id': new and required" in line for line in problems), problems


def test_a_retyped_nested_field_fails_naming_its_path() -> None:
    class Total(Event):
        event_type = "x.y.total.v1"
        amount: str
        currency: str

    class OrderConfirmed(Event):
        event_type = CONFIRMED
        order_id: str
        customer_id: str
        total: Total

    problems = breaking(with_model(OrderConfirmed))
    assert any("field 'total.amount': retyped from integer to string" in p for p in problems)


def test_a_field_made_optional_or_nullable_fails() -> None:
    class OrderConfirmed(Event):
        event_type = CONFIRMED
        order_id: str
        customer_id: str | None = None
        total: Money

    problems = breaking(with_model(OrderConfirmed))
    assert any("'customer_id': no longer required" in line for line in problems), problems
    assert any("'customer_id': retyped from string to null | string" in p for p in problems)


def test_a_new_optional_field_passes_and_only_asks_for_the_file_to_be_written() -> None:
    class OrderConfirmed(Event):
        event_type = CONFIRMED
        order_id: str
        customer_id: str
        total: Money
        coupon: str | None = None

    found = events.compare(with_model(OrderConfirmed), checked_in(), readers())
    assert found.breaking == []
    assert found.outdated == [f"events: {CONFIRMED} changed compatibly: run {events.WRITE_COMMAND}"]


def test_a_breaking_v2_published_beside_v1_passes() -> None:
    class OrderConfirmedV2(Event):
        event_type = "shop.ordering.order_confirmed.v2"
        order_id: str
        total_cents: int

    found = events.compare(with_model(OrderConfirmedV2), checked_in(), readers())
    assert found.breaking == []
    assert found.outdated == [
        "events: shop.ordering.order_confirmed.v2 has no checked-in schema yet: "
        f"run {events.WRITE_COMMAND}"
    ]


def test_retiring_v1_while_a_service_still_subscribes_to_it_fails_naming_the_consumer() -> None:
    schemas = current()
    del schemas[CONFIRMED]
    assert breaking(schemas) == [
        f"events: {CONFIRMED} is no longer published, but is read by customer: publish it "
        "beside its successor until no consumer subscribes to it"
    ]
    unread = current()
    del unread["shop.ordering.order_rejected.v1"]  # no service subscribes to it
    assert breaking(unread) == []


def copy_of_the_system(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "cleave.toml", tmp_path / "cleave.toml")
    shutil.copytree(ROOT / "contracts" / "events", tmp_path / "contracts" / "events")
    return tmp_path


def test_verify_reads_the_system_s_checked_in_files_and_filters_by_service(tmp_path: Path) -> None:
    root = copy_of_the_system(tmp_path)
    path = root / "contracts/events" / f"{CONFIRMED}.json"
    schema = json.loads(path.read_text())
    schema["properties"]["tax"] = {"type": "integer"}  # a field the model no longer has
    path.write_text(baseline.serialise(schema))
    config = load_config(root / "cleave.toml")
    expected = (
        f"events: {CONFIRMED} (read by customer): field 'tax': removed (or renamed); "
        "publish the change as a new version"
    )
    assert events.verify(config) == [expected]
    assert events.verify(config, "ordering") == [expected]
    assert events.verify(config, "catalog") == []


def run(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CLEAVE_")}
    return subprocess.run(
        [sys.executable, "-m", "cleave.contracts.events", *arguments],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_command_checks_and_refuses_to_write_a_breaking_change(tmp_path: Path) -> None:
    root = copy_of_the_system(tmp_path)
    path = root / "contracts/events" / f"{CONFIRMED}.json"
    schema = json.loads(path.read_text())
    schema["properties"]["total"] = {"type": "string"}
    path.write_text(baseline.serialise(schema))
    checked = run(cwd=root)
    assert checked.returncode == 1
    assert f"{CONFIRMED} (read by customer): field 'total': retyped" in checked.stdout
    refused = run("--write", cwd=root)
    assert refused.returncode == 1
    assert "events: nothing written" in refused.stdout
    assert json.loads(path.read_text())["properties"]["total"] == {"type": "string"}
    (root / "contracts/events" / "shop.ordering.order_placed.v1.json").unlink()
    path.write_text((ROOT / "contracts/events" / f"{CONFIRMED}.json").read_text())
    written = run("--write", cwd=root)
    assert written.returncode == 0, written.stdout + written.stderr
    assert written.stdout == "wrote contracts/events/shop.ordering.order_placed.v1.json\n"


def test_the_command_refuses_arguments_it_does_not_know(capsys: pytest.CaptureFixture[str]) -> None:
    assert baseline.command(["--bogus"], "events", events.findings, events.write) == 2
    assert "usage: python -m cleave.contracts.events [--write]" in capsys.readouterr().err
