"""Whether a JSON Schema may replace another without breaking the other side of a contract.

Two questions, asked of each field: can the other side still *read* what the new schema allows
(a response, an event: nothing it relied on is removed, loosened or retyped, no enum value it
does not know appears), and can what the other side *writes* still be accepted (a request, an old
event replayed to a new consumer: nothing newly required, narrowed or tightened). An event asks
both. Each difference names the field by its path: `total.currency`, `items[].price`, `lines.*`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Schema = Mapping[str, Any]

# Bounds whose tightening refuses what was accepted before: a smaller maximum, a larger minimum.
_UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
_LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")


@dataclass(frozen=True)
class Compatibility:
    """Which side of the contract the schema's data crosses to: `reads` when the other side reads
    it (responses, events), `writes` when the other side writes it (requests, old events)."""

    reads: bool
    writes: bool


READ = Compatibility(reads=True, writes=False)
WRITE = Compatibility(reads=False, writes=True)
BOTH = Compatibility(reads=True, writes=True)


def breaking_changes(
    old: Schema,
    new: Schema,
    compatibility: Compatibility,
    *,
    old_root: Schema | None = None,
    new_root: Schema | None = None,
    at: str = "",
) -> list[str]:
    """Each change from `old` to `new` that breaks the other side, as "field 'x': what changed".
    `$ref`s resolve within `old_root` / `new_root` (by default the schemas themselves)."""
    differ = _Differ(old_root or old, new_root or new, compatibility)
    differ.compare(old, new, at)
    return differ.problems


@dataclass
class _Differ:
    old_root: Schema
    new_root: Schema
    compatibility: Compatibility
    problems: list[str] = field(default_factory=list)
    seen: set[tuple[int, int]] = field(default_factory=set)

    def compare(self, old: Schema, new: Schema, at: str) -> None:
        old, new = _resolve(old, self.old_root), _resolve(new, self.new_root)
        if (id(old), id(new)) in self.seen:  # a recursive schema: this pair is being compared
            return
        self.seen.add((id(old), id(new)))
        old_kinds, new_kinds = _kinds(old, self.old_root), _kinds(new, self.new_root)
        lost = {kind for kind in old_kinds if not _covered(kind, new_kinds)}
        gained = {kind for kind in new_kinds if not _covered(kind, old_kinds)}
        if (self.compatibility.writes and lost) or (self.compatibility.reads and gained):
            self.fail(at, f"retyped from {_name(old_kinds)} to {_name(new_kinds)}")
            return
        self.compare_values(old, new, at)
        if "object" in old_kinds & new_kinds:
            self.compare_objects(old, new, at)
        if "array" in old_kinds & new_kinds:
            old_items = _alternative(old, "items", self.old_root)
            new_items = _alternative(new, "items", self.new_root)
            if old_items is not None and new_items is not None:
                self.compare(old_items, new_items, f"{at}[]")

    def compare_values(self, old: Schema, new: Schema, at: str) -> None:
        old_values, new_values = _enum(old, self.old_root), _enum(new, self.new_root)
        if self.compatibility.writes and old_values is not None:
            if new_values is not None and (dropped := old_values - new_values):
                self.fail(at, f"enum no longer accepts {_listed(dropped)}")
        elif self.compatibility.writes and new_values is not None:
            self.fail(at, f"now restricted to {_listed(new_values)}")
        if self.compatibility.reads and new_values is not None:
            if old_values is not None and (added := new_values - old_values):
                self.fail(at, f"enum gains {_listed(added)}, unknown to the other side")
        elif self.compatibility.reads and old_values is not None:
            self.fail(at, f"no longer restricted to {_listed(old_values)}")
        if not self.compatibility.writes:
            return
        for bounds, tighter in ((_UPPER_BOUNDS, _smaller), (_LOWER_BOUNDS, _larger)):
            for bound in bounds:
                limit, before = new.get(bound), old.get(bound)
                if limit is not None and (before is None or tighter(limit, before)):
                    self.fail(at, f"{bound} tightened from {before} to {limit}")
        if (pattern := new.get("pattern")) is not None and pattern != old.get("pattern"):
            self.fail(at, f"pattern changed from {old.get('pattern')!r} to {pattern!r}")

    def compare_objects(self, old: Schema, new: Schema, at: str) -> None:
        old_object = _object(old, self.old_root)
        new_object = _object(new, self.new_root)
        old_fields, old_required, old_extra = old_object
        new_fields, new_required, new_extra = new_object
        for name, old_field in old_fields.items():
            where = f"{at}.{name}" if at else name
            if name not in new_fields:
                if self.compatibility.reads:
                    self.fail(where, "removed (or renamed)")
                elif new_extra is False:
                    self.fail(where, "no longer accepted")
                continue
            if self.compatibility.reads and name in old_required and name not in new_required:
                self.fail(where, "no longer required: the other side may find it missing")
            if self.compatibility.writes and name in new_required and name not in old_required:
                self.fail(where, "now required: what the other side sends may lack it")
            self.compare(old_field, new_fields[name], where)
        if self.compatibility.writes:
            for name in sorted(new_required - set(old_fields)):
                self.fail(f"{at}.{name}" if at else name, "new and required")
        if self.compatibility.writes and new_extra is False and old_extra is not False:
            self.fail(at, "no longer accepts fields it does not name")
        if isinstance(old_extra, Mapping) and isinstance(new_extra, Mapping):
            self.compare(old_extra, new_extra, f"{at}.*" if at else "*")

    def fail(self, at: str, what: str) -> None:
        self.problems.append(f"field '{at}': {what}" if at else f"the whole body: {what}")


def _resolve(schema: Schema, root: Schema) -> Schema:
    """Follow `$ref` (a JSON pointer into `root`) and one-element `allOf` wrappers."""
    for _ in range(64):
        if isinstance(ref := schema.get("$ref"), str) and ref.startswith("#/"):
            target: Any = root
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            schema = target
        elif isinstance(every := schema.get("allOf"), list) and len(every) == 1:
            schema = every[0]
        else:
            return schema
    raise ValueError("a $ref chain that never ends")


def _alternatives(schema: Schema, root: Schema) -> list[Schema]:
    schema = _resolve(schema, root)
    options = schema.get("anyOf") or schema.get("oneOf")
    if not isinstance(options, list):
        return [schema]
    return [each for option in options for each in _alternatives(option, root)]


def _kinds(schema: Schema, root: Schema) -> set[str]:
    """The JSON types a schema admits; "any" when it says nothing of them."""
    kinds: set[str] = set()
    for option in _alternatives(schema, root):
        declared = option.get("type")
        if isinstance(declared, str):
            kinds.add(declared)
        elif isinstance(declared, list):
            kinds.update(declared)
        elif "const" in option or "enum" in option:
            values = [option["const"]] if "const" in option else option["enum"]
            kinds.update(_json_type(value) for value in values)
        elif "properties" in option or "additionalProperties" in option:
            kinds.add("object")
        elif "items" in option:
            kinds.add("array")
        else:
            kinds.add("any")
    return kinds


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string" if isinstance(value, str) else "object"


def _covered(kind: str, kinds: set[str]) -> bool:
    return kind in kinds or "any" in kinds or (kind == "integer" and "number" in kinds)


def _name(kinds: set[str]) -> str:
    return " | ".join(sorted(kinds))


def _enum(schema: Schema, root: Schema) -> set[str] | None:
    """The values a schema is restricted to (as JSON text, to compare), or None if unrestricted."""
    values: set[str] = set()
    for option in _alternatives(schema, root):
        if "const" in option:
            values.add(repr(option["const"]))
        elif isinstance(option.get("enum"), list):
            values.update(repr(value) for value in option["enum"])
        elif option.get("type") != "null":
            return None
    return values or None


def _object(schema: Schema, root: Schema) -> tuple[dict[str, Schema], set[str], Any]:
    """The object alternative's fields, required names, and `additionalProperties`."""
    for option in _alternatives(schema, root):
        if option.get("type") == "object" or "properties" in option:
            return (
                dict(option.get("properties", {})),
                set(option.get("required", ())),
                option.get("additionalProperties"),
            )
    return {}, set(), None


def _alternative(schema: Schema, key: str, root: Schema) -> Schema | None:
    return next((o[key] for o in _alternatives(schema, root) if isinstance(o.get(key), dict)), None)


def _smaller(limit: Any, before: Any) -> bool:
    return bool(limit < before)


def _larger(limit: Any, before: Any) -> bool:
    return bool(limit > before)


def _listed(values: set[str]) -> str:
    return ", ".join(sorted(values))
