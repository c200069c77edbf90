"""The system's events as one AsyncAPI 3 document, `contracts/asyncapi.json`, generated from the
same models as the event schemas: a channel per event type (its address is the type, which is
the routing key on the broker), a `send` operation for its publisher and a `receive` operation
for each subscription, and each message as the CloudEvents 1.0 envelope it travels in.

`python -m cleave.contracts.asyncapi` says whether the file is current; `--write` rewrites it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cleave.config import SystemConfig
from cleave.contracts import baseline
from cleave.contracts.baseline import Document, Findings
from cleave.contracts.events import published_schemas
from cleave.errors import ConfigError
from cleave.events import SPEC_VERSION
from cleave.runtime import load_services
from cleave.service import Service

KIND = "asyncapi"
FILE = "asyncapi.json"
WRITE_COMMAND = "python -m cleave.contracts.asyncapi --write"
# What an event schema carries for its own file, and an AsyncAPI payload must not.
_FILE_KEYWORDS = ("$schema", "$id", "x-publisher")


def document(config: SystemConfig, services: Mapping[str, Service]) -> Document:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for event_type, schema in published_schemas(services).items():
        channel = _identifier(event_type)
        messages[channel] = {
            "name": event_type,
            "title": event_type,
            "contentType": "application/cloudevents+json",
            "payload": _envelope(event_type, _lift_definitions(schema, schemas)),
        }
        channels[channel] = {
            "address": event_type,
            "messages": {channel: {"$ref": f"#/components/messages/{channel}"}},
        }
        reference = {"$ref": f"#/channels/{channel}"}
        message = [{"$ref": f"#/channels/{channel}/messages/{channel}"}]
        publisher = schema["x-publisher"]
        operations[f"{publisher}_sends_{channel}"] = {
            "action": "send",
            "channel": reference,
            "messages": message,
            "summary": f"{publisher} publishes {event_type} through its outbox.",
        }
    for name, service in services.items():
        for subscription in service.subscriptions:
            channel = _identifier(subscription.event.event_type)
            if channel not in channels:
                raise ConfigError(
                    f"{name} subscribes to {subscription.event.event_type}, "
                    "which no service publishes"
                )
            operations[f"{name}_{subscription.name}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{channel}"},
                "messages": [{"$ref": f"#/channels/{channel}/messages/{channel}"}],
                "summary": f"{name} applies it once, through its inbox.",
            }
    return {
        "asyncapi": "3.1.0",
        "info": {
            "title": f"{config.name} events",
            "version": "1",
            "description": "Every event the services publish, and who consumes it: CloudEvents "
            "1.0 in structured mode, delivered at least once, applied once.",
        },
        "defaultContentType": "application/cloudevents+json",
        "channels": channels,
        "operations": dict(sorted(operations.items())),
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }


def findings(config: SystemConfig, service: str | None = None) -> Findings:
    """Whether the checked-in document is today's; it records, the event schemas guard."""
    if service is not None:
        config.require_service(service)
    path = config.root / "contracts" / FILE
    today = baseline.serialise(document(config, load_services(config)))
    if not path.is_file():
        return Findings(outdated=[f"asyncapi: contracts/{FILE} is missing: run {WRITE_COMMAND}"])
    if path.read_text() != today:
        return Findings(
            outdated=[f"asyncapi: contracts/{FILE} is out of date: run {WRITE_COMMAND}"]
        )
    return Findings()


def verify(config: SystemConfig, service: str | None = None) -> list[str]:
    return findings(config, service).problems


def write(config: SystemConfig) -> list[Path]:
    path = config.root / "contracts" / FILE
    text = baseline.serialise(document(config, load_services(config)))
    if path.is_file() and path.read_text() == text:
        return []
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return [path]


def _envelope(event_type: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The CloudEvents structured-mode body an event of `event_type` travels in."""
    text = {"type": "string"}
    return {
        "type": "object",
        "required": ["specversion", "id", "source", "type", "data"],
        "properties": {
            "specversion": {"const": SPEC_VERSION},
            "id": text,
            "source": text,
            "type": {"const": event_type},
            "time": {"type": "string", "format": "date-time"},
            "subject": text,
            "datacontenttype": {"const": "application/json"},
            "traceparent": text,
            "tracestate": text,
            "data": data,
        },
    }


def _lift_definitions(schema: Mapping[str, Any], shared: dict[str, Any]) -> dict[str, Any]:
    """The schema without its file's keywords, its `$defs` moved into the document's shared
    schemas (a `$ref` resolves against the whole document)."""
    text = json.dumps({k: v for k, v in schema.items() if k not in _FILE_KEYWORDS})
    lifted: dict[str, Any] = json.loads(text.replace('"#/$defs/', '"#/components/schemas/'))
    for name, definition in lifted.pop("$defs", {}).items():
        if shared.setdefault(name, definition) != definition:
            raise ConfigError(f"two event models define {name!r} differently: rename one")
    return lifted


def _identifier(event_type: str) -> str:
    return event_type.replace(".", "_")


if __name__ == "__main__":
    sys.exit(baseline.command(sys.argv[1:], KIND, findings, write))
