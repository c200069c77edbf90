"""`cleave extract`: a service moved into a unit of its own, the one-line change to a topology's
`units` in cleave.toml, made only if the topology still wires every call and subscription."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cleave.config import find_config, load_config
from cleave.errors import CleaveError, ConfigError
from cleave.runtime import wiring_problems
from cleave.scaffold import toml_lines

# A unit names a process, a container and a Kubernetes workload: a DNS label's characters.
UNIT_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")


@dataclass(frozen=True)
class Extraction:
    topology: str
    unit: str
    before: str  # the file's text
    after: str  # the same as `before` when the service had its own unit already


def extract(
    service: str, unit: str | None = None, topology: str | None = None, path: Path | None = None
) -> Extraction:
    """Move `service` into unit `unit` (by default named after it) of `topology` (by default the
    system's default), alone; write cleave.toml only if the result loads and wires."""
    path = path or find_config()
    config = load_config(path, topology)
    config.require_service(service)
    layout = config.topology
    current = layout.unit_of(service)
    alone = layout.units[current] == (service,)
    unit = unit or (current if alone else service)
    if not UNIT_NAME.fullmatch(unit):
        raise ConfigError(
            f"{unit!r} is not a unit name: lower-case letters, digits, '_' and '-', "
            "starting with a letter"
        )
    before = path.read_text()
    if alone and current == unit:
        return Extraction(layout.name, unit, before, before)
    if unit in layout.units and unit != current:
        raise ConfigError(
            f"unit {unit!r} of topology {layout.name!r} runs {', '.join(layout.units[unit])} "
            "already: name a new one with --unit"
        )
    line = toml_lines.units_line(before, layout.name)
    if line is not None and line.value == "one-per-service":
        raise ConfigError(
            f"topology {layout.name!r} runs {service} alone in unit {current!r} already "
            '(units = "one-per-service" names each unit after its service)'
        )
    # The units that stay keep their order, and so their ports (unit N listens on port + N).
    if alone:  # only its unit's name changes, in its place
        units = {(unit if name == current else name): list(m) for name, m in layout.units.items()}
    else:
        units = {
            name: [member for member in members if member != service]
            for name, members in layout.units.items()
            if members != (service,)
        }
        units[unit] = [service]
    after = toml_lines.with_units(before, layout.name, units)
    moved = toml_lines.checked(path, after, layout.name)
    if problems := wiring_problems(moved):
        raise CleaveError(
            f"topology {layout.name!r} with {service} in unit {unit!r} would not wire: "
            + "; ".join(problems)
        )
    toml_lines.write(path, after)
    return Extraction(layout.name, unit, before, after)
