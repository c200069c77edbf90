"""The chassis (`src/cleave`) must run any system, so it may not name a part of this one: no
service of cleave.toml, no demo user or client, no word of the shop's domain. import-linter keeps
the chassis from importing the shop; this keeps it from knowing the shop by name."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHASSIS = ROOT / "src" / "cleave"
# Generated from a contract's .proto: not written by hand, and not the chassis's own.
GENERATED = ("_pb2.py", "_pb2.pyi")
# The shop's own vocabulary beyond its service names: demo data, its clients and its domain.
SHOP_WORDS = {
    "shop",
    "alice",
    "bob",
    "carol",
    "cleave-cli",
    "cleave-admin",
    "dev-credentials",
    "sku",
    "skus",
    "orders",
    "products",
    "customers",
    "payments",
}


def shop_words() -> set[str]:
    config = tomllib.loads((ROOT / "cleave.toml").read_text())
    return SHOP_WORDS | set(config["services"])


def mentions(text: str, words: set[str]) -> list[str]:
    pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, words)) + r")(?![\w-])", re.I)
    return [
        f"line {number}: {line.strip()}"
        for number, line in enumerate(text.splitlines(), 1)
        if pattern.search(line)
    ]


def test_no_chassis_module_names_a_part_of_the_shop() -> None:
    words = shop_words()
    found = {
        str(path.relative_to(ROOT)): hits
        for path in sorted(CHASSIS.rglob("*.py"))
        if not path.name.endswith(GENERATED) and (hits := mentions(path.read_text(), words))
    }
    assert not found, "the chassis names the shop:\n" + "\n".join(
        f"{path}: {hit}" for path, hits in found.items() for hit in hits
    )


@pytest.mark.parametrize(
    "line",
    [
        'DEMO_USER = "alice"',
        "    # ordering's saga runner stays at one replica",
        'client_id: str = "cleave-cli",',
        "SCOPES = ('orders:read',)",
    ],
)
def test_the_check_catches_a_shop_word(line: str) -> None:
    assert mentions(line, shop_words())


def test_the_check_leaves_ordinary_words_alone() -> None:
    text = "keep their order on one partition; an event's subject; the service's identity_hint"
    assert not mentions(text, shop_words())
