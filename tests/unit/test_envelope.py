"""CloudEvents envelopes: the declared, versioned wire name, and strict parsing."""

from __future__ import annotations

import json

import pytest

from cleave.events import Envelope, EnvelopeError, Event


class ParcelShipped(Event):
    event_type = "test.shipping.parcel_shipped.v1"

    parcel_id: str
    weight_grams: int


def test_the_wire_name_is_the_declared_type_never_the_class_name() -> None:
    envelope = Envelope.of(
        ParcelShipped(parcel_id="p1", weight_grams=250), source="/cleave/shipping", trace={}
    )
    body = json.loads(envelope.to_json())
    assert body["type"] == "test.shipping.parcel_shipped.v1"
    assert "ParcelShipped" not in envelope.to_json()
    assert body["specversion"] == "1.0"
    assert body["datacontenttype"] == "application/json"
    assert body["data"] == {"parcel_id": "p1", "weight_grams": 250}


def test_round_trip_keeps_id_time_subject_and_trace_context() -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    original = Envelope.of(
        ParcelShipped(parcel_id="p1", weight_grams=1),
        source="/cleave/shipping",
        subject="p1",
        trace={"traceparent": traceparent},
    )
    parsed = Envelope.from_json(original.to_json())
    assert parsed == original
    assert parsed.trace_carrier == {"traceparent": traceparent}


def test_every_envelope_gets_a_unique_id() -> None:
    event = ParcelShipped(parcel_id="p1", weight_grams=1)
    ids = {Envelope.of(event, source="/s", trace={}).id for _ in range(100)}
    assert len(ids) == 100


def test_an_event_class_must_declare_a_versioned_type() -> None:
    with pytest.raises(TypeError, match="event_type"):

        class Nameless(Event):
            value: int


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not json", "not JSON"),
        ("[]", "JSON object"),
        ('{"specversion": "0.3", "id": "1", "source": "/s", "type": "t"}', "specversion"),
        (
            '{"specversion": "1.0", "source": "/s", "type": "t"}',
            "missing CloudEvents attributes: id",
        ),
        (
            '{"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data": [1]}',
            "data must be",
        ),
    ],
)
def test_malformed_envelopes_are_refused_with_a_reason(raw: str, message: str) -> None:
    with pytest.raises(EnvelopeError, match=message):
        Envelope.from_json(raw)
