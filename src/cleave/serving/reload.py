"""`cleave up --reload`: which source a topology's services live in, and which units a change
to a file must restart (the units of the service whose code it is; every unit for anything
else, the chassis included)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path

import cleave
from cleave.config import SystemConfig
from cleave.errors import ConfigError


def service_homes(config: SystemConfig) -> dict[str, Path]:
    """Each service's own code: the largest package holding its declaration and no other
    service's, or the declaring module alone when it shares its package."""
    files: dict[str, Path] = {}
    for name, target in config.services.items():
        module = target.partition(":")[0]
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError) as error:
            raise ConfigError(f"service {name!r}: cannot find {module!r}: {error}") from None
        if spec is None or spec.origin is None:
            raise ConfigError(f"service {name!r}: cannot find {module!r}")
        files[name] = Path(spec.origin).resolve()
    homes: dict[str, Path] = {}
    for name, file in files.items():
        home = file.parent if file.name == "__init__.py" else file
        for folder in file.parents:
            others = (path for other, path in files.items() if other != name)
            shared = any(path.is_relative_to(folder) for path in others)
            if shared or not (folder / "__init__.py").exists():
                break
            home = folder
        homes[name] = home
    return homes


def watched_folders(homes: dict[str, Path]) -> list[Path]:
    """The top packages of the services' code, and the chassis's own."""
    folders = {Path(cleave.__file__).resolve().parent}
    for home in homes.values():
        top = home if home.is_dir() else home.parent
        while (top.parent / "__init__.py").exists():
            top = top.parent
        folders.add(top)
    return sorted(folders)


def units_to_reload(
    config: SystemConfig, homes: dict[str, Path], changed: Iterable[Path]
) -> list[str]:
    """The units to restart for these changed files, in the topology's order."""
    units = config.topology.units
    services: set[str] = set()
    for path in (p.resolve() for p in changed):
        owners = {name for name, home in homes.items() if path == home or path.is_relative_to(home)}
        if not owners:
            return list(units)  # shared code: the chassis, or a module of no one service
        services |= owners
    return [unit for unit, members in units.items() if services & set(members)]
