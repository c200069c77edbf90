"""Versioned event schemas: a JSON Schema per published event type, generated from its model and
checked in as `contracts/events/<type>.json`, and the gate that refuses an incompatible change.

A published type may only gain optional fields: nothing removed, renamed, retyped or newly
required, since consumers read new events and new consumers read old ones. A change that cannot
be compatible is a new type (`...v2`), published beside the old one until no consumer reads it;
a type may stop being published only once no service subscribes to it.

`python -m cleave.contracts.events` lists the problems; `--write` refreshes the files.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from cleave.config import SystemConfig
from cleave.contracts import baseline
from cleave.contracts.baseline import Document, Findings
from cleave.contracts.compat import BOTH, breaking_changes
from cleave.errors import ConfigError
from cleave.events import Event
from cleave.runtime import load_services
from cleave.service import Service

KIND = "events"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
WRITE_COMMAND = "python -m cleave.contracts.events --write"


def event_schema(event: type[Event], publisher: str) -> Document:
    """The JSON Schema of an event's `data`, titled by its wire name (never the class name)."""
    schema = event.model_json_schema()
    schema.pop("title", None)
    return {
        "$schema": DIALECT,
        "$id": f"urn:cleave:event:{event.event_type}",
        "title": event.event_type,
        "x-publisher": publisher,
        **schema,
    }


def published_schemas(services: Mapping[str, Service]) -> dict[str, Document]:
    """The schema of every event type the services publish, by type."""
    schemas: dict[str, Document] = {}
    for name, service in services.items():
        for event in service.publishes:
            if event.event_type in schemas:
                first = schemas[event.event_type]["x-publisher"]
                raise ConfigError(f"{event.event_type} is published by both {first} and {name}")
            schemas[event.event_type] = event_schema(event, name)
    return dict(sorted(schemas.items()))


def consumers(services: Mapping[str, Service]) -> dict[str, list[str]]:
    """The services that subscribe to each event type."""
    readers: dict[str, list[str]] = {}
    for name, service in services.items():
        for subscription in service.subscriptions:
            readers.setdefault(subscription.event.event_type, []).append(name)
    return readers


def compare(
    current: Mapping[str, Document],
    checked_in: Mapping[str, Document],
    readers: Mapping[str, list[str]],
    service: str | None = None,
) -> Findings:
    """Today's schemas against the checked-in ones; with `service`, only the types it publishes."""
    found = Findings()
    for event_type, old in checked_in.items():
        if service is not None and old.get("x-publisher") != service:
            continue
        who = f"read by {', '.join(readers[event_type])}" if readers.get(event_type) else None
        new = current.get(event_type)
        if new is None:
            if who:
                found.breaking.append(
                    f"events: {event_type} is no longer published, but is {who}: publish it "
                    "beside its successor until no consumer subscribes to it"
                )
            else:
                found.outdated.append(f"events: {event_type} is no longer published: {_fix()}")
            continue
        label = f"{event_type} ({who})" if who else event_type
        changes = breaking_changes(old, new, BOTH)
        found.breaking.extend(
            f"events: {label}: {change}; publish the change as a new version" for change in changes
        )
        if not changes and old != new:
            found.outdated.append(f"events: {event_type} changed compatibly: {_fix()}")
    for event_type, new in current.items():
        if event_type not in checked_in and service in (None, new["x-publisher"]):
            found.outdated.append(f"events: {event_type} has no checked-in schema yet: {_fix()}")
    return found


def findings(config: SystemConfig, service: str | None = None) -> Findings:
    if service is not None:
        config.require_service(service)
    services = load_services(config)
    checked_in = baseline.read_documents(baseline.folder(config, KIND))
    return compare(published_schemas(services), checked_in, consumers(services), service)


def verify(config: SystemConfig, service: str | None = None) -> list[str]:
    """The problems of the event schemas of `service` (or of every service), one line each."""
    return findings(config, service).problems


def write(config: SystemConfig) -> list[Path]:
    """Write every published type's schema, and delete those of types no longer published."""
    current = published_schemas(load_services(config))
    return baseline.write_documents(baseline.folder(config, KIND), current)


def _fix() -> str:
    return f"run {WRITE_COMMAND}"


if __name__ == "__main__":
    sys.exit(baseline.command(sys.argv[1:], KIND, findings, write))
