"""`cleave new service NAME`: a service of the same shape as the others, from the templates in
`templates/`: its declaration, REST routes, handlers, table, first migration, a contract
package (a port over gRPC and an event it publishes through the outbox) and its tests, and
its place in cleave.toml. Templates are `string.Template` text: `$name`, `$Camel`, ..."""

from __future__ import annotations

import importlib.util
import keyword
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from string import Template

from cleave.config import SystemConfig, find_config, load_config
from cleave.errors import CleaveError, ConfigError
from cleave.rpc import protogen
from cleave.scaffold import toml_lines

SERVICE_NAME = re.compile(r"[a-z][a-z0-9_]{0,19}")
TEMPLATES = files("cleave.scaffold") / "templates"
SUFFIX = ".tmpl"


@dataclass(frozen=True)
class NewService:
    name: str
    package: str
    written: list[Path]  # relative to the system's root
    before: str  # cleave.toml's text
    after: str
    placed: dict[str, str]  # topology → the unit the service joined


def check_name(name: str, config: SystemConfig) -> None:
    if not SERVICE_NAME.fullmatch(name):
        raise ConfigError(
            f"{name!r} is not a service name: up to 20 lower-case letters, digits and '_', "
            "starting with a letter"
        )
    if keyword.iskeyword(name):
        raise ConfigError(f"{name!r} is a Python keyword, so no package can be named after it")
    if name in config.services:
        raise ConfigError(f"service {name!r} exists already ({config.services[name]})")


def package_of(config: SystemConfig) -> tuple[str, Path]:
    """The package the services live in, and its folder: `src/<package>` or `<package>`."""
    packages = sorted({target.split(".", 1)[0] for target in config.services.values()})
    if len(packages) != 1:
        raise ConfigError(
            f"the services come from several packages ({', '.join(packages)}): "
            "cleave new service cannot tell which to add to"
        )
    for folder in (config.root / "src" / packages[0], config.root / packages[0]):
        if (folder / "__init__.py").is_file():
            return packages[0], folder
    raise ConfigError(f"no package {packages[0]!r} in {config.root / 'src'} or {config.root}")


def _units_with(text: str, config: SystemConfig, name: str) -> tuple[str, dict[str, str]]:
    """The file with the service in one unit of each topology that lists its units: the one
    with most services (the first of them on a tie). `"*"` and "one-per-service" take it as is."""
    placed = {}
    for topology, layout in config.topologies.items():
        line = toml_lines.units_line(text, topology)
        if line is None or not isinstance(line.value, dict):
            continue
        if any(members == ["*"] for members in line.value.values()):
            continue
        units = {unit: list(members) for unit, members in layout.units.items()}
        largest = max(units, key=lambda unit: len(units[unit]))
        units[largest].append(name)
        text = toml_lines.with_units(text, topology, units)
        placed[topology] = largest
    return text, placed


def _render(template: Traversable, values: dict[str, str]) -> str:
    try:
        return Template(template.read_text()).substitute(values)
    except (KeyError, ValueError) as error:  # a template of this package is wrong, not the input
        raise RuntimeError(f"template {template.name}: {error!r}") from None


def _templates(folder: Traversable, relative: Path = Path()) -> list[tuple[Traversable, Path]]:
    found = []
    for entry in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if entry.is_dir():
            found += _templates(entry, relative / entry.name)
        elif entry.name.endswith(SUFFIX):
            found.append((entry, relative / entry.name.removesuffix(SUFFIX)))
    return found


def new_service(name: str, path: Path | None = None) -> NewService:
    """Write service `name` into the system of `path` (by default the cleave.toml found)."""
    path = path or find_config()
    config = load_config(path)
    check_name(name, config)
    package, package_dir = package_of(config)
    home = package_dir / name
    tests_dir = config.root / "tests" / "integration"
    targets = [
        (template, home / Path(str(relative).replace("NAME", name)))
        for template, relative in _templates(TEMPLATES / "service")
    ]
    if tests_dir.is_dir():
        targets += [
            (template, tests_dir / str(relative).replace("NAME", name))
            for template, relative in _templates(TEMPLATES / "tests")
        ]
    taken = [home] if home.exists() else [target for _, target in targets if target.exists()]
    if taken:
        raise ConfigError(f"{taken[0]} exists already")
    if importlib.util.find_spec("grpc_tools") is None:
        raise CleaveError(
            "cleave new service generates the port's gRPC code with grpcio-tools, a "
            "development dependency: install it (make .venv/.dev) and run it again"
        )
    before = path.read_text()
    after = toml_lines.with_service(before, name, f"{package}.{name}.service:service")
    after, placed = _units_with(after, config, name)
    toml_lines.checked(path, after)
    values = {
        "name": name,
        "package": package,
        "Camel": "".join(part.capitalize() for part in name.split("_")),
        "date": f"{datetime.now(UTC):%Y-%m-%d}",
    }
    try:
        for template, target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(_render(template, values))
        proto = Path(package, name, "contract", f"{name}.proto")
        generated = protogen.generate(package_dir.parent, package_dir.parent, [proto])
    except BaseException:
        shutil.rmtree(home, ignore_errors=True)
        for _, target in targets:
            target.unlink(missing_ok=True)
        raise
    toml_lines.write(path, after)
    written = [target for _, target in targets] + generated
    return NewService(
        name,
        package,
        sorted(file.relative_to(config.root) for file in written),
        before,
        after,
        placed,
    )
