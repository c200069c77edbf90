"""Events and their CloudEvents 1.0 envelope: the wire name is declared, never the class name."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from cleave.clock import utcnow

SPEC_VERSION = "1.0"


class Event(BaseModel):
    """Subclasses declare `event_type`, like `<system>.<service>.<event>.v1`."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_type: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        event_type = cls.__dict__.get("event_type")
        if not isinstance(event_type, str) or event_type.count(".") < 3:
            raise TypeError(f"{cls.__name__} must declare event_type like 'org.service.name.v1'")


class EnvelopeError(ValueError):
    """A message that is not a well-formed CloudEvent."""


@dataclass(frozen=True)
class Envelope:
    """A CloudEvents 1.0 structured-mode event, with W3C trace context as an extension."""

    type: str
    source: str
    data: Mapping[str, Any]
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: datetime = field(default_factory=utcnow)
    subject: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None

    @classmethod
    def of(
        cls, event: Event, *, source: str, subject: str | None = None, trace: Mapping[str, str]
    ) -> Envelope:
        return cls(
            type=event.event_type,
            source=source,
            data=event.model_dump(mode="json"),
            subject=subject,
            traceparent=trace.get("traceparent"),
            tracestate=trace.get("tracestate"),
        )

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "specversion": SPEC_VERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time.isoformat(),
            "datacontenttype": "application/json",
            "data": dict(self.data),
        }
        for name in ("subject", "traceparent", "tracestate"):
            if (value := getattr(self, name)) is not None:
                body[name] = value
        return body

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Envelope:
        try:
            body = json.loads(raw)
        except ValueError as error:
            raise EnvelopeError(f"not JSON: {error}") from None
        if not isinstance(body, dict):
            raise EnvelopeError("a CloudEvent is a JSON object")
        if body.get("specversion") != SPEC_VERSION:
            raise EnvelopeError(f"unsupported specversion {body.get('specversion')!r}")
        missing = [name for name in ("id", "source", "type") if not body.get(name)]
        if missing:
            raise EnvelopeError(f"missing CloudEvents attributes: {', '.join(missing)}")
        data = body.get("data") or {}
        if not isinstance(data, dict):
            raise EnvelopeError("data must be a JSON object")
        try:
            time = datetime.fromisoformat(body["time"]) if body.get("time") else utcnow()
        except ValueError:
            raise EnvelopeError(f"bad time {body.get('time')!r}") from None
        return cls(
            type=body["type"],
            source=body["source"],
            data=data,
            id=body["id"],
            time=time,
            subject=body.get("subject"),
            traceparent=body.get("traceparent"),
            tracestate=body.get("tracestate"),
        )

    @property
    def trace_carrier(self) -> dict[str, str]:
        carrier = {"traceparent": self.traceparent} if self.traceparent else {}
        if self.tracestate:
            carrier["tracestate"] = self.tracestate
        return carrier
