"""`cleave new service` and `cleave extract` on a copy of the project: the generated service's
own tests pass and its code passes `mypy --strict` and ruff, the monolith serves its route, and
extracting it gives a topology that loads with the service in a unit of its own. Bad input is
one line and an exit code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from cleave.cli import main
from cleave.config import load_config
from tests.e2e.conftest import ROOT, free_port

NAME = "gift_cards"
# What the generated tests and a server need of the project: its configuration, its services'
# package, and the test fixtures the service suites share.
COPIED = [
    "cleave.toml",
    "pyproject.toml",
    "src/shop",
    "tests/__init__.py",
    "tests/conftest.py",
    "tests/services.py",
    "tests/integration/__init__.py",
]


@dataclass(frozen=True)
class Project:
    root: Path
    env: dict[str, str]
    before: str  # cleave.toml before the service was added
    output: str  # what `cleave new service` printed

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A copy of the project with a service added by `cleave new service`."""
    root = tmp_path_factory.mktemp("project")
    for relative in COPIED:
        source, copy = ROOT / relative, root / relative
        copy.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, copy)
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("CLEAVE_", "OTEL_"))
    }
    env.update(
        CLEAVE_CONFIG=str(root / "cleave.toml"),
        CLEAVE_VAR=str(root / "var"),
        CLEAVE_METRICS_PORT=str(free_port()),
        # The copy's services first: the installed checkout's package is the same name.
        PYTHONPATH=str(root / "src"),
    )
    before = (root / "cleave.toml").read_text()
    project = Project(root, env, before, "")
    made = project.run(sys.executable, "-m", "cleave", "new", "service", NAME)
    assert made.returncode == 0, made.stderr
    return Project(root, env, before, made.stdout)


def test_the_service_has_the_shape_of_the_others_and_its_place_in_cleave_toml(
    project: Project,
) -> None:
    home = project.root / "src" / "shop" / NAME
    for part in ("service.py", "api.py", "handlers.py", "store.py", "domain.py"):
        assert (home / part).is_file(), part
    assert (home / "migrations" / f"0001_{NAME}.py").is_file()
    assert (home / "contract" / f"{NAME}_pb2.py").is_file()
    assert f"tests/integration/test_{NAME}.py" in project.output
    config = load_config(project.root / "cleave.toml")
    assert config.services[NAME] == f"shop.{NAME}.service:service"
    assert NAME in config.topologies["monolith"].units["shop"]  # `["*"]` takes it as it is
    assert config.topologies["payments-out"].units["core"][-1] == NAME
    assert config.topologies["split"].units[NAME] == (NAME,)
    after = (project.root / "cleave.toml").read_text()
    removed = set(project.before.splitlines()) - set(after.splitlines())
    added = set(after.splitlines()) - set(project.before.splitlines())
    assert [line.split(" = ")[0] for line in sorted(removed)] == ["units"]
    assert sorted(added)[0] == f'{NAME} = "shop.{NAME}.service:service"'
    assert f"+{sorted(added)[0]}" in project.output  # the diff is printed


def test_the_generated_tests_pass_in_both_wirings(project: Project) -> None:
    # SQLite here to stay quick; on the project itself the same tests also run on PostgreSQL.
    tests = f"tests/integration/test_{NAME}.py"
    result = project.run(
        sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", "-k", "sqlite",
        tests, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    assert "6 passed" in result.stdout, result.stdout[-3000:]


def test_the_generated_code_passes_mypy_strict_and_ruff(project: Project, tmp_path: Path) -> None:
    """The project's own checks, as a new service's author runs them after the steps printed:
    its stubs added to mypy's override for generated code; the chassis found beside the copy."""
    chassis = tmp_path / "chassis"
    chassis.mkdir()
    (chassis / "cleave").symlink_to(ROOT / "src" / "cleave")
    config = tmp_path / "pyproject.toml"
    stubs = f"shop.{NAME}.contract.{NAME}_pb2"
    config.write_text(
        (project.root / "pyproject.toml").read_text()
        + f'\n[[tool.mypy.overrides]]\nmodule = ["{stubs}"]\nignore_errors = true\n'
    )
    generated = (f"src/shop/{NAME}", f"tests/integration/test_{NAME}.py")
    checking = replace(project, env={**project.env, "MYPYPATH": str(chassis)})
    typed = checking.run(
        sys.executable, "-m", "mypy", "--config-file", str(config), "--cache-dir",
        str(tmp_path / "mypy"), *generated, timeout=120,
    )  # fmt: skip
    assert typed.returncode == 0, typed.stdout
    first_party = "lint.isort.known-first-party = ['cleave', 'shop']"  # cleave is not in the copy
    linted = project.run(sys.executable, "-m", "ruff", "check", "--config", first_party, *generated)
    assert linted.returncode == 0, linted.stdout
    formatted = project.run(sys.executable, "-m", "ruff", "format", "--check", *generated)
    assert formatted.returncode == 0, formatted.stdout


@pytest.fixture
def env(project: Project) -> dict[str, str]:
    """What the e2e `server` fixture runs `cleave up` with: the copy's configuration and code."""
    return project.env


def test_the_monolith_serves_the_new_service(
    project: Project,
    server: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, token, err = cleave_here(project, capsys, monkeypatch, "token", "--scope", "admin")
    assert code == 0, err
    admin = {"Authorization": f"Bearer {token.strip()}"}
    items = f"{server}/api/{NAME}/v1/items"
    created = httpx.post(items, json={"id": "welcome", "name": "Welcome"}, headers=admin)
    assert created.status_code == 201, created.text
    assert httpx.get(items, headers=admin).json()["items"] == [created.json()]
    assert httpx.get(items).status_code == 401


@pytest.mark.usefixtures("with_new_service")
def test_extract_moves_the_service_into_its_own_unit_in_one_line(
    project: Project,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A file of its own, so that the other tests see the topology as it was generated.
    config_file = tmp_path / "cleave.toml"
    shutil.copy2(project.root / "cleave.toml", config_file)
    before = config_file.read_text()
    copy = replace(project, env={**project.env, "CLEAVE_CONFIG": str(config_file)})
    command = ("extract", NAME, "--topology", "payments-out")
    code, out, err = cleave_here(copy, capsys, monkeypatch, *command)
    assert code == 0, err
    after = config_file.read_text()
    changed = [
        (old, new)
        for old, new in zip(before.splitlines(), after.splitlines(), strict=True)
        if old != new
    ]
    core = '["identity", "catalog", "customer", "ordering", "storefront"]'
    line = f'units = {{ core = {core}, payments = ["payment"], {NAME} = ["{NAME}"] }}'
    assert [new for _, new in changed] == [line]
    assert f"-{changed[0][0]}\n+{line}\n" in out
    topology = load_config(config_file, "payments-out").topology
    assert topology.units[NAME] == (NAME,)
    assert NAME not in topology.units["core"]
    code, out, _ = cleave_here(copy, capsys, monkeypatch, *command)
    assert code == 0
    assert f"{NAME} runs alone in unit {NAME} of topology payments-out already" in out
    assert config_file.read_text() == after


def cleave_here(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    *args: str,
) -> tuple[int, str, str]:  # fmt: skip
    """Run `cleave ARGS` on the copy in this process (a subprocess costs seconds of imports):
    its exit code, stdout and stderr."""
    for variable in ("CLEAVE_CONFIG", "CLEAVE_VAR"):
        monkeypatch.setenv(variable, project.env[variable])
    capsys.readouterr()
    code = 0
    try:
        main(list(args))
    except SystemExit as exit_:
        code = int(str(exit_.code or 0))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    *args: str,
) -> tuple[int, str]:  # fmt: skip
    """`cleave ARGS` on the copy, which must fail: its exit code and its one line of error."""
    code, out, err = cleave_here(project, capsys, monkeypatch, *args)
    assert code != 0
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return code, lines[0]


@pytest.fixture
def with_new_service(project: Project) -> Iterator[None]:
    """The copy's new service importable in this process, beside the checkout's services (the
    package `shop` is imported from the checkout already); gone again afterwards."""
    import shop

    search = list(shop.__path__)
    shop.__path__[:0] = [str(project.root / "src" / "shop")]
    try:
        yield
    finally:
        shop.__path__[:] = search
        for module in [m for m in sys.modules if m.startswith(f"shop.{NAME}")]:
            del sys.modules[module]


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("Gifts", "error: 'Gifts' is not a service name: up to 20 lower-case letters, digits"),
        ("9lives", "error: '9lives' is not a service name"),
        ("gift-cards", "error: 'gift-cards' is not a service name"),
        ("a" * 21, f"error: '{'a' * 21}' is not a service name"),
        ("class", "error: 'class' is a Python keyword, so no package can be named after it"),
        ("customer", "error: service 'customer' exists already (shop.customer.service:service)"),
        (NAME, f"error: service '{NAME}' exists already (shop.{NAME}.service:service)"),
    ],
)
def test_a_bad_service_name_is_one_line_and_exit_2_and_writes_nothing(
    project: Project,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    error: str,
) -> None:
    written = (project.root / "cleave.toml").read_text()
    folders = sorted(path.name for path in (project.root / "src" / "shop").iterdir())
    code, line = one_line_error(project, capsys, monkeypatch, "new", "service", name)
    assert (code, line[: len(error)]) == (2, error)
    assert (project.root / "cleave.toml").read_text() == written
    assert sorted(path.name for path in (project.root / "src" / "shop").iterdir()) == folders


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["nobody"], "error: unknown service 'nobody' (known: identity, catalog"),
        (["payment", "-t", "payments-out", "--unit", "core"], "error: unit 'core' of topology"),
        (["payment", "--unit", "Not A Unit", "-t", "split"], "error: 'Not A Unit' is not a unit"),
        (["payment", "-t", "split", "--unit", "money"], "error: topology 'split' runs payment"),
    ],
)
def test_an_extraction_that_cannot_be_made_is_one_line_and_exit_2(
    project: Project,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    error: str,
) -> None:
    written = (project.root / "cleave.toml").read_text()
    code, line = one_line_error(project, capsys, monkeypatch, "extract", *args)
    assert (code, line[: len(error)]) == (2, error)
    assert (project.root / "cleave.toml").read_text() == written


@pytest.mark.usefixtures("with_new_service")
def test_an_extraction_that_would_not_wire_is_refused_and_changes_nothing(
    project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The monolith's in-process broker cannot carry events between two processes."""
    written = (project.root / "cleave.toml").read_text()
    assert one_line_error(project, capsys, monkeypatch, "extract", NAME) == (
        1,
        f"error: topology 'monolith' with {NAME} in unit '{NAME}' would not wire: every unit "
        "subscribes to identity's revocations, but the broker 'memory' carries events only "
        "within one process",
    )
    assert (project.root / "cleave.toml").read_text() == written
