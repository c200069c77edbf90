"""What a pact's messages carry: an event as the publisher puts it on the wire (a CloudEvent), and
a port call as JSON in the shape the port's signature gives it (`{"method", "arguments"}`, then
`{"result"}` or `{"problem"}`). Consumers and providers both go through these, so a pact checks
the real encoding, never a copy of it."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, get_type_hints

from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python

from cleave.errors import Problem
from cleave.events import Envelope, Event

JsonObject = dict[str, Any]


class ContractGap(Exception):
    """The provider cannot produce what a pact asks for (a missing event type or port method)."""


def event_message(event: Event, *, source: str) -> JsonObject:
    """An event exactly as the outbox relay publishes it: a structured-mode CloudEvent."""
    return Envelope.of(event, source=source, trace={}).to_dict()


def example_event(event_type: type[Event], example: Mapping[str, Any]) -> Event:
    """An instance of the provider's event model, taking the consumer's example values for the
    fields the consumer names and a value of the declared type for every other field."""
    schema = event_type.model_json_schema()
    data = _example(schema, schema.get("$defs", {}), dict(example))
    try:
        return event_type.model_validate(data)
    except ValidationError as error:
        raise ContractGap(_first_error(event_type.event_type, error)) from None


def _example(schema: Mapping[str, Any], defs: Mapping[str, Any], hint: Any) -> Any:
    """A JSON value of `schema`: the hint where it is given, else the simplest valid value."""
    if "$ref" in schema:
        return _example(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, hint)
    if schema.get("type") == "object" and "properties" in schema:
        given = hint if isinstance(hint, dict) else {}
        required = set(schema.get("required", ()))
        return {
            name: _example(field, defs, given.get(name))
            for name, field in schema["properties"].items()
            if name in given or name in required
        }
    if hint is not None:
        return hint
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for choice in schema.get("anyOf", ()):
        if choice.get("type") != "null":
            return _example(choice, defs, None)
    kind = schema.get("type")
    if kind == "string":
        if schema.get("format") == "date-time":
            return datetime(2026, 1, 1, tzinfo=UTC).isoformat()
        return "x" * max(1, int(schema.get("minLength", 1)))
    if kind in ("integer", "number"):
        return max(1, int(schema.get("minimum", 1)), int(schema.get("exclusiveMinimum", 0)) + 1)
    if kind == "boolean":
        return True
    if kind == "array":
        return [_example(schema.get("items", {}), defs, None)]
    if kind == "object":
        extra = schema.get("additionalProperties")
        return {"x": _example(extra, defs, None)} if isinstance(extra, dict) else {}
    return None


def _first_error(what: str, error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{what}: {where}: {first['msg']}"


def port_methods(protocol: type) -> list[str]:
    """The methods a port offers: its Protocol's public coroutine functions."""
    return [
        name
        for name, member in vars(protocol).items()
        if not name.startswith("_") and inspect.iscoroutinefunction(member)
    ]


def _signature(protocol: type, method: str) -> dict[str, Any]:
    if method not in port_methods(protocol):
        raise ContractGap(f"{protocol.__name__} has no method {method!r}")
    return get_type_hints(getattr(protocol, method))


def port_request(protocol: type, method: str, **arguments: Any) -> JsonObject:
    """A call of `method` as JSON, each argument encoded by its declared type."""
    hints = _signature(protocol, method)
    return {
        "method": method,
        "arguments": {
            name: TypeAdapter(hints[name]).dump_python(value, mode="json")
            for name, value in arguments.items()
        },
    }


async def answer_call(protocol: type, implementation: object, request: Mapping[str, Any]) -> Any:
    """Call the provider's implementation with a JSON request; its answer as JSON."""
    method = str(request.get("method"))
    hints = _signature(protocol, method)
    arguments: dict[str, Any] = {}
    for name, value in dict(request.get("arguments") or {}).items():
        if name not in hints or name == "return":
            raise ContractGap(f"{protocol.__name__}.{method} takes no argument {name!r}")
        try:
            arguments[name] = TypeAdapter(hints[name]).validate_python(value)
        except ValidationError as error:
            raise ContractGap(_first_error(f"{protocol.__name__}.{method}", error)) from None
    try:
        result = await getattr(implementation, method)(**arguments)
    except Problem as problem:
        return {"problem": problem_json(problem)}
    return {"result": to_jsonable_python(result)}


def problem_json(problem: Problem) -> JsonObject:
    """A Problem as it crosses between units: its type, code and status, and its extensions."""
    return {
        "type": problem.problem_type(),
        "code": problem.code,
        "status": problem.status,
        "extensions": to_jsonable_python(problem.extensions),
    }


def read_answer(protocol: type, method: str, answer: Mapping[str, Any]) -> Any:
    """What the consumer gets from a JSON answer: the decoded result, or the Problem raised."""
    hints = _signature(protocol, method)
    if problem := answer.get("problem"):
        raise Problem.restore(
            problem["type"], "", problem["code"], problem["status"], problem.get("extensions", {})
        )
    value = answer["result"]
    return TypeAdapter(hints["return"]).validate_python(value)
