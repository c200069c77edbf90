"""The README's curl session, run as written against a started system: what a newcomer pastes
must work. Only the address changes, to the test server's free port."""

from __future__ import annotations

import json
import re
import subprocess
import time
from typing import Any

import httpx

from tests.e2e.conftest import ROOT, RunningSystem

README_ADDRESS = "http://127.0.0.1:8000"


def readme_block(heading: str) -> str:
    """The first ```sh block under a `## heading` of the README."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```sh\n(.*?)```", section, re.S)
    assert found, f"no sh block under '## {heading}'"
    return found.group(1)


def json_documents(text: str) -> list[Any]:
    """The JSON documents curl printed one after another (curl adds no newline)."""
    decoder, documents, position = json.JSONDecoder(), [], 0
    while (position := _skip_space(text, position)) < len(text):
        document, position = decoder.raw_decode(text, position)
        documents.append(document)
    return documents


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


def test_the_curl_session_places_an_order_that_confirms(running_system: RunningSystem) -> None:
    server, env = running_system.base, running_system.env
    session = readme_block("Place an order with curl").replace(README_ADDRESS, server)
    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", session + '\necho "ORDER=$ORDER TOKEN=$TOKEN"\n'],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    printed, _, last = ran.stdout.rpartition("ORDER=")
    products, order = json_documents(printed)
    assert any(item["sku"] == "MUG-CLASSIC" for item in products["items"])
    assert order["status"] in ("pending", "confirmed")
    variables = dict(pair.split("=", 1) for pair in f"ORDER={last}".split())
    assert order["id"] == variables["ORDER"]
    headers = {"Authorization": f"Bearer {variables['TOKEN']}"}
    deadline = time.monotonic() + 15
    while order["status"] == "pending" and time.monotonic() < deadline:
        time.sleep(0.05)
        order = httpx.get(f"{server}/api/ordering/v1/orders/{order['id']}", headers=headers).json()
    assert order["status"] == "confirmed"
