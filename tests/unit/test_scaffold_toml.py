"""Line edits of cleave.toml: one line changes, its comment and every other line stay."""

from __future__ import annotations

from pathlib import Path

import pytest

from cleave.errors import ConfigError
from cleave.scaffold import toml_lines

TEXT = """\
[services]
a = "pkg.a.service:service"  # the first
b = "pkg.b.service:service"

# a comment about the topology
[topology.two]
units = { core = ["a"], "other-one" = ["b"] }   # moved by hand once
broker = "nats://127.0.0.1:4222"

[topology.each]
units = "one-per-service"

[topology.bare]
broker = "memory"
"""


def test_the_units_line_is_rewritten_in_place_keeping_its_comment() -> None:
    after = toml_lines.with_units(TEXT, "two", {"core": ["a", "b"], "x y": ["c"]})
    changed = [
        (old, new)
        for old, new in zip(TEXT.splitlines(), after.splitlines(), strict=True)
        if old != new
    ]
    assert changed == [
        (
            'units = { core = ["a"], "other-one" = ["b"] }   # moved by hand once',
            'units = { core = ["a", "b"], "x y" = ["c"] }   # moved by hand once',
        )
    ]


def test_a_topology_without_units_gets_the_line_after_its_header() -> None:
    after = toml_lines.with_units(TEXT, "bare", {"one": ["a", "b"]})
    assert '[topology.bare]\nunits = { one = ["a", "b"] }\nbroker = "memory"\n' in after
    assert toml_lines.units_line(TEXT, "each") == toml_lines.UnitsLine(10, "one-per-service", "")


def test_a_service_joins_the_end_of_its_table() -> None:
    after = toml_lines.with_service(TEXT, "c", "pkg.c.service:service")
    assert after.startswith(
        '[services]\na = "pkg.a.service:service"  # the first\nb = "pkg.b.service:service"\n'
        'c = "pkg.c.service:service"\n\n# a comment'
    )


def test_units_over_several_lines_are_left_to_a_person() -> None:
    text = '[topology.wide]\nunits = { core = [\n  "a",\n] }\n'
    with pytest.raises(ConfigError, match=r"not on one line of cleave\.toml: edit them by hand"):
        toml_lines.units_line(text, "wide")


def test_an_unknown_topology_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"no \[topology.nowhere\] table"):
        toml_lines.with_units(TEXT, "nowhere", {"core": ["a"]})


def test_the_diff_shows_only_the_changed_lines() -> None:
    after = toml_lines.with_service(TEXT, "c", "pkg.c.service:service")
    assert toml_lines.diff(TEXT, after, Path("cleave.toml")).splitlines() == [
        "--- cleave.toml (before)",
        "+++ cleave.toml (after)",
        "@@ -3,0 +4 @@",
        '+c = "pkg.c.service:service"',
    ]
