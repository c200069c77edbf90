"""The `.proto` contracts: each checked-in copy is the port's `.proto` today, and `buf breaking`
fails a change that would break a unit at another version, naming the port, its callers and the
field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cleave.config import load_config
from cleave.contracts import baseline, proto
from cleave.errors import CleaveError
from cleave.runtime import load_services
from tests.conftest import ROOT, require

CATALOG = "shop/catalog/contract/catalog.proto"


@pytest.fixture(scope="module")
def buf() -> Path:
    found = proto.find_buf(load_config(ROOT / "cleave.toml"))
    require(found is not None, f"buf is not installed: run {proto.INSTALL_BUF}")
    assert found is not None
    return found


def current(change: tuple[str, str] | None = None) -> dict[str, tuple[str, str]]:
    services = load_services(load_config(ROOT / "cleave.toml"))
    texts = {
        path: (owner, src.read_text()) for path, (owner, src) in proto.offered(services).items()
    }
    if change is not None:
        owner, text = texts[CATALOG]
        assert change[0] in text
        texts[CATALOG] = (owner, text.replace(*change))
    return texts


def callers() -> dict[str, list[str]]:
    return proto.callers(load_services(load_config(ROOT / "cleave.toml")))


def checked_in() -> dict[str, str]:
    return proto.read_copies(load_config(ROOT / "cleave.toml"))


def test_every_checked_in_copy_is_the_port_s_proto_today() -> None:
    copies = checked_in()
    today = current()
    assert sorted(copies) == sorted(today), f"run {proto.WRITE_COMMAND}"
    assert CATALOG in copies
    for path, (_, text) in today.items():
        assert copies[path] == text, f"{path} differs from its copy: run {proto.WRITE_COMMAND}"
    assert proto.verify(load_config(ROOT / "cleave.toml")) == []


def test_a_renumbered_field_fails_naming_the_port_its_callers_and_the_field(buf: Path) -> None:
    renumbered = current(("  int32 quantity = 2;\n}", "  int32 quantity = 3;\n}"))
    found = proto.compare(renumbered, checked_in(), callers(), buf)
    assert (
        f'proto: catalog (called by ordering): {CATALOG}:24: Previously present field "2" with '
        'name "quantity" on message "OrderLine" was deleted without reserving the number "2".'
    ) in found.breaking
    assert found.outdated == []


def test_a_retyped_field_fails(buf: Path) -> None:
    retyped = current(("int64 unit_price = 4;", "string unit_price = 4;"))
    problems = proto.compare(retyped, checked_in(), callers(), buf).breaking
    assert len(problems) == 1
    assert problems[0].startswith(f"proto: catalog (called by ordering): {CATALOG}:")
    assert 'Field "4" with name "unit_price" on message "PricedLine" changed type' in problems[0]


def test_a_new_field_or_one_removed_with_reserved_passes(buf: Path) -> None:
    compatible = current(
        (
            "  string sku = 1;\n  int32 quantity = 2;\n}",
            '  reserved 2;\n  reserved "quantity";\n  string sku = 1;\n  string note = 3;\n}',
        )
    )
    found = proto.compare(compatible, checked_in(), callers(), buf)
    assert found.breaking == []
    assert found.outdated == [f"proto: {CATALOG} changed compatibly: run {proto.WRITE_COMMAND}"]


def test_a_port_no_longer_offered_fails_and_missing_buf_says_how_to_install_it() -> None:
    without_catalog = current()
    del without_catalog[CATALOG]
    assert proto.compare(without_catalog, checked_in(), callers(), None).breaking == [
        f"proto: {CATALOG} is no longer offered: a unit still calling it would break"
    ]
    changed = current(("int32 quantity = 2;", "int32 quantity = 3;"))
    assert proto.compare(changed, checked_in(), callers(), None).breaking == [
        f"proto: buf is not installed: run {proto.INSTALL_BUF}"
    ]


def test_verify_reads_a_copy_of_the_system_and_write_refuses_the_break(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    buf: Path,
) -> None:
    shutil.copy(ROOT / "cleave.toml", tmp_path / "cleave.toml")
    shutil.copytree(ROOT / "contracts/proto", tmp_path / "contracts/proto")
    (tmp_path / "tools").symlink_to(ROOT / "tools")
    copy = tmp_path / "contracts/proto" / CATALOG
    copy.write_text(
        copy.read_text().replace("string name = 2;", "string name = 2;\n  bool gift = 6;")
    )
    config = load_config(tmp_path / "cleave.toml")
    problems = proto.verify(config, "catalog")
    assert len(problems) == 2  # neither its number nor its name reserved
    assert all('"6" with name "gift" on message "PricedLine" was deleted' in p for p in problems)
    assert proto.verify(config, "payment") == []
    assert proto.verify(config) == problems
    monkeypatch.delenv("CLEAVE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    before = copy.read_text()
    assert baseline.command(["--write"], "proto", proto.findings, proto.write) == 1
    assert "proto: nothing written" in capsys.readouterr().out
    assert copy.read_text() == before


def test_a_buf_that_cannot_run_is_one_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "buf"
    broken.write_text("#!/bin/sh\necho 'buf: something went wrong' >&2\nexit 1\n")
    broken.chmod(0o755)
    changed = current(("int32 quantity = 2;", "int32 quantity = 3;"))
    with pytest.raises(CleaveError, match="buf breaking failed: buf: something went wrong"):
        proto.compare(changed, checked_in(), callers(), broken)
