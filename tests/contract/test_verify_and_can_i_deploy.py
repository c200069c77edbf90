"""The contract commands as the README shows them, run as a user runs them, on a copy of the
system's files (its cleave.toml and contracts) so that the versions matrix they write is the
test's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cleave.contracts import CHECKS
from cleave.contracts.pacts import PACT_DIR
from tests.conftest import ROOT, run_cleave


def cleave(*args: str, tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLEAVE_CONFIG": str(tree / "cleave.toml"), "NO_COLOR": "1"}
    env.pop("CLEAVE_TOPOLOGY", None)
    return run_cleave(*args, env=env, cwd=tree, timeout=100)


def _tree(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "cleave.toml", tmp_path / "cleave.toml")
    shutil.copytree(ROOT / "contracts", tmp_path / "contracts")
    return tmp_path


def _expect_loyalty(tree: Path) -> None:
    """Customer as a new version would expect: a field ordering's event does not carry."""
    path = tree / PACT_DIR / "customer-ordering.json"
    pact = json.loads(path.read_text())
    pact["interactions"][0]["contents"]["content"]["data"]["loyalty_tier"] = "gold"
    path.write_text(json.dumps(pact))


@pytest.mark.timeout(300)  # a few cold starts of the CLI, each importing every service
def test_contracts_verify_reports_each_check(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    passing = cleave("contracts", "verify", tree=tree)
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert passing.stdout.splitlines() == [f"ok  {name}" for name in CHECKS]

    _expect_loyalty(tree)
    failing = cleave("contracts", "verify", "ordering", tree=tree)
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert "FAIL  pacts (1 problems)" in failing.stdout
    assert "customer <- ordering: shop.ordering.order_confirmed.v1: $.data" in failing.stdout
    assert "loyalty_tier" in failing.stdout


@pytest.mark.timeout(300)
def test_can_i_deploy_from_recorded_deployments(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    recorded = cleave(
        "contracts", "record-deployment", "ordering", "1.4.0", "--env", "production", tree=tree
    )
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    assert "recorded ordering 1.4.0 in production" in recorded.stdout

    # This tree's catalog satisfies the pact ordering 1.4.0 published.
    yes = cleave("can-i-deploy", "catalog", "--version", "1.5.0", "--to", "production", tree=tree)
    assert yes.returncode == 0, yes.stdout + yes.stderr
    assert yes.stdout.splitlines() == [
        "yes: catalog 1.5.0 can go to production",
        "  catalog 1.5.0 satisfies the pact of ordering 1.4.0 in production",
    ]

    _expect_loyalty(tree)
    # Customer's new expectation was never verified by the ordering that runs in production.
    no = cleave("can-i-deploy", "customer", "--version", "2.0.0", "--to", "production", tree=tree)
    assert no.returncode == 1, no.stdout + no.stderr
    assert no.stdout.startswith("no: customer 2.0.0 cannot go to production")
    assert "ordering 1.4.0 in production has not verified customer's pact" in no.stdout
    assert "identity is not in production" in no.stdout

    unknown = cleave("can-i-deploy", "warehouse", "--version", "1", "--to", "production", tree=tree)
    assert unknown.returncode == 2
    assert unknown.stderr.strip().startswith("error: unknown service 'warehouse'")
