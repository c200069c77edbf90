"""`cleave up --reload` on a split: a handler edited while the system runs answers anew without a
full restart (the other unit keeps its process), and a syntax error waits for the fix.

The system is one of the test's own, written to a temporary folder, so that the test can edit
its code while other tests read the project's."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import free_port, started_own_system

SERVICE = """
from pathlib import Path

from fastapi import APIRouter
from sqlalchemy import MetaData

from cleave.service import Service

router = APIRouter()


@router.get("/greeting")
async def greeting() -> dict[str, str]:
    return {{"text": "{text}", "pid": str(__import__("os").getpid())}}


service = Service(
    name="{name}",
    metadata=MetaData(),
    migrations=Path(__file__).parent / "{name}_migrations",
    router=router,
)
"""
MIGRATION = """
revision = "{name}_0001"
down_revision = None
branch_labels = ("{name}",)
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
"""


def write_service(package: Path, name: str, text: str) -> None:
    (package / f"{name}.py").write_text(SERVICE.format(name=name, text=text))


def wait_for(check: Callable[[], object], what: str, seconds: float = 90.0) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {seconds} s")


@pytest.fixture
def reloading(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    package = tmp_path / "editable"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("hello", "other"):
        write_service(package, name, "hello")
        (package / f"{name}_migrations").mkdir()
        (package / f"{name}_migrations" / f"{name}_0001.py").write_text(MIGRATION.format(name=name))
    gateway = free_port()
    addresses = "\n".join(
        f'{unit} = "127.0.0.1:{free_port()}:{free_port()}"' for unit in ("a", "b")
    )
    (tmp_path / "cleave.toml").write_text(
        f"""
[system]
name = "editable"
[services]
hello = "editable.hello:service"
other = "editable.other:service"
[topology.two]
units = {{ a = ["hello"], b = ["other"] }}
broker = "memory"
database = "sqlite+aiosqlite:///{{var}}/{{service}}.db"
http_port = {gateway}
metrics_port = 0
[topology.two.addresses]
{addresses}
"""
    )
    with started_own_system(tmp_path, "two", gateway, "--reload", imports=[tmp_path]) as up:
        yield up.base, package, up.log


def greeting(base: str, service: str) -> dict[str, str] | None:
    try:
        answer = httpx.get(f"{base}/api/{service}/v1/greeting", timeout=2)
    except httpx.TransportError:
        return None
    return answer.json() if answer.status_code == 200 else None


def test_an_edited_handler_answers_anew_and_only_its_unit_restarts(
    reloading: tuple[str, Path, Path],
) -> None:
    base, package, log = reloading
    before = greeting(base, "hello")
    other_before = greeting(base, "other")
    assert before is not None
    assert before["text"] == "hello"
    assert other_before is not None

    write_service(package, "hello", "hi there")
    after = wait_for(
        lambda: (g := greeting(base, "hello")) and g["text"] == "hi there" and g,
        "the edited handler answering",
    )
    assert isinstance(after, dict)
    assert after["pid"] != before["pid"]  # unit a was restarted ...
    assert greeting(base, "other") == other_before  # ... and unit b kept its process
    assert "reloading unit a (hello.py changed)" in log.read_text()

    (package / "hello.py").write_text("def broken(:\n")
    wait_for(
        lambda: (
            "unit a exited with code" in log.read_text()
            and "it starts again when its code changes" in log.read_text()
        ),
        "the failing unit waiting for a fix",
    )
    assert "SyntaxError" in log.read_text()  # the error itself, in the terminal
    write_service(package, "hello", "fixed")
    wait_for(
        lambda: (g := greeting(base, "hello")) and g["text"] == "fixed",
        "the fixed unit answering",
    )
    assert greeting(base, "other") == other_before
