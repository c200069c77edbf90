"""The JSON Schema differ behind the event and OpenAPI gates: which side a change breaks."""

from __future__ import annotations

from typing import Any

from cleave.contracts.compat import BOTH, READ, WRITE, breaking_changes


def obj(required: list[str] | None = None, **properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required or []}


INTEGER, NUMBER, TEXT = {"type": "integer"}, {"type": "number"}, {"type": "string"}
NULLABLE_TEXT = {"anyOf": [TEXT, {"type": "null"}]}


def test_widening_breaks_readers_and_narrowing_breaks_writers() -> None:
    old, new = obj(n=INTEGER), obj(n=NUMBER)
    assert breaking_changes(old, new, READ) == ["field 'n': retyped from integer to number"]
    assert breaking_changes(old, new, WRITE) == []
    assert breaking_changes(new, old, WRITE) == ["field 'n': retyped from number to integer"]
    assert breaking_changes(new, old, READ) == []


def test_null_allowed_breaks_a_reader_but_not_a_writer() -> None:
    assert breaking_changes(obj(s=TEXT), obj(s=NULLABLE_TEXT), READ) == [
        "field 's': retyped from string to null | string"
    ]
    assert breaking_changes(obj(s=TEXT), obj(s=NULLABLE_TEXT), WRITE) == []


def test_enums_breaking_each_side() -> None:
    ab, abc = {"enum": ["a", "b"]}, {"enum": ["a", "b", "c"]}
    assert breaking_changes(obj(e=ab), obj(e=abc), WRITE) == []
    assert breaking_changes(obj(e=abc), obj(e=ab), WRITE) == [
        "field 'e': enum no longer accepts 'c'"
    ]
    assert breaking_changes(obj(e=ab), obj(e=abc), READ) == [
        "field 'e': enum gains 'c', unknown to the other side"
    ]
    assert breaking_changes(obj(e=TEXT), obj(e={"type": "string", **ab}), BOTH) == [
        "field 'e': now restricted to 'a', 'b'"
    ]


def test_bounds_only_tightening_breaks_a_writer_and_an_equal_bound_is_no_change() -> None:
    old = obj(n={"type": "integer", "minimum": 0, "maximum": 10})
    assert breaking_changes(old, old, WRITE) == []
    looser = obj(n={"type": "integer", "minimum": -1, "maximum": 20})
    assert breaking_changes(old, looser, WRITE) == []
    tighter = obj(n={"type": "integer", "minimum": 1, "maximum": 5})
    assert breaking_changes(old, tighter, WRITE) == [
        "field 'n': maximum tightened from 10 to 5",
        "field 'n': minimum tightened from 0 to 1",
    ]


def test_fields_of_maps_and_lists_are_named_by_their_path() -> None:
    old = obj(
        lines={"type": "object", "additionalProperties": INTEGER}, items={"items": obj(p=TEXT)}
    )
    new = obj(lines={"type": "object", "additionalProperties": TEXT}, items={"items": obj()})
    assert breaking_changes(old, new, READ) == [
        "field 'lines.*': retyped from integer to string",
        "field 'items[].p': removed (or renamed)",
    ]


def test_a_closed_request_that_drops_a_field_refuses_what_clients_send() -> None:
    old = {**obj(a=TEXT, b=TEXT), "additionalProperties": False}
    new = {**obj(a=TEXT), "additionalProperties": False}
    assert breaking_changes(old, new, WRITE) == ["field 'b': no longer accepted"]
    assert breaking_changes(obj(a=TEXT), new, WRITE) == [
        "the whole body: no longer accepts fields it does not name"
    ]


def test_references_resolve_in_their_own_document_and_recursion_ends() -> None:
    children = {"type": "array", "items": {"$ref": "#/$defs/Node"}}
    tree: dict[str, Any] = {
        "$defs": {"Node": obj(name=TEXT, children=children)},
        "$ref": "#/$defs/Node",
    }
    assert breaking_changes(tree, tree, BOTH) == []
    pruned: dict[str, Any] = {"$defs": {"Node": obj(children=children)}, "$ref": "#/$defs/Node"}
    assert breaking_changes(tree, pruned, READ) == ["field 'name': removed (or renamed)"]
