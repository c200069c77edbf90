"""The README's contract commands, run as written in the repository: each finds nothing wrong
with the checked-in contracts."""

from __future__ import annotations

import os
import subprocess

from tests.conftest import ROOT
from tests.e2e.test_readme import readme_block


def test_the_readme_s_contract_checks_pass_as_written() -> None:
    commands = readme_block("Contracts")
    assert commands.count("python -m cleave.contracts.") == 4
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CLEAVE_")}
    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", commands],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout == ""
