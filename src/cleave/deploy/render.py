"""Deployment files generated from `cleave.toml`, so they cannot drift from it.

`render` turns the system's configuration into file contents: the Dockerfile (one image for every
unit), `deploy/compose.yaml` (the split topology with its PostgreSQL, broker and Jaeger) and
`deploy/k8s/` (a kustomize base with the configuration, and an overlay per topology with a
Deployment, Service, PodDisruptionBudget and, for units that may run several replicas, a
HorizontalPodAutoscaler per unit), and `deploy/lambda/<topology>/template.yaml` for each topology
that lists `functions` (an AWS SAM template). YAML is written by PyYAML from plain data, never by
templates.

A unit is scaled out only when none of its services declares a background worker (the saga runner,
say): those run as one replica, since a second copy would race the first for the same work.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from cleave.deploy.compose import compose
from cleave.deploy.kubernetes import kustomize_base, kustomize_overlay, manifests
from cleave.deploy.lambda_sam import sam_template
from cleave.deploy.system import HEADER, UID, VAR_PATH, System
from cleave.errors import ConfigError

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


# What `cleave deploy render --target` may name; every one by default.
TARGETS = ("docker", "compose", "kubernetes", "lambda")


def render(system: System, out: str = "deploy", targets: Sequence[str] = TARGETS) -> dict[str, str]:
    """Every generated file of `targets`, by its path relative to the folder with cleave.toml."""
    for topology in system.config.topologies.values():
        for unit in topology.units:
            if not _DNS_LABEL.match(unit):
                raise ConfigError(
                    f"unit {unit!r} of topology {topology.name!r} cannot name a Kubernetes "
                    "object: use lower-case letters, digits and '-'"
                )
    files: dict[str, str] = {}
    if "docker" in targets:
        files.update({"Dockerfile": dockerfile(), ".dockerignore": dockerignore()})
    if "compose" in targets:
        files[f"{out}/compose.yaml"] = _yaml(compose(system, out))
    if "kubernetes" in targets:
        k8s = PurePosixPath(out, "k8s")
        files[str(k8s / "base" / "kustomization.yaml")] = _yaml(kustomize_base(system))
        files[str(k8s / "base" / "cleave.toml")] = system.toml_text
        for topology in system.config.topologies.values():
            overlay = k8s / "overlays" / topology.name
            files[str(overlay / "kustomization.yaml")] = _yaml(kustomize_overlay(system, topology))
            files[str(overlay / "resources.yaml")] = _yaml_documents(manifests(system, topology))
    if "lambda" in targets:
        for topology in system.config.topologies.values():
            if topology.functions:
                path = PurePosixPath(out, "lambda", topology.name, "template.yaml")
                depth = len(path.parts) - 1
                files[str(path)] = _yaml(sam_template(system, topology, depth))
    return files


def dockerfile() -> str:
    lines = [
        f"# {HEADER}",
        "# One image for every unit: `docker run IMAGE UNIT` runs `cleave run UNIT`.",
        "FROM python:3.11-slim",
        "ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \\",
        f"    CLEAVE_CONFIG=/app/cleave.toml CLEAVE_VAR={VAR_PATH}",
        "WORKDIR /app",
        "COPY requirements.lock ./",
        "RUN pip install --require-hashes -r requirements.lock",
        "COPY pyproject.toml README.md cleave.toml ./",
        "COPY src ./src",
        "RUN pip install --no-deps . \\",
        f" && useradd --system --uid {UID} --user-group --no-create-home cleave \\",
        f" && mkdir -p {VAR_PATH} && chown {UID}:{UID} {VAR_PATH}",
        f"USER {UID}:{UID}",
        'ENTRYPOINT ["cleave", "run"]',
    ]
    return "\n".join(lines) + "\n"


def dockerignore() -> str:
    # tools/: the development tools npm installs (buf), never part of the image.
    ignored = [".git", ".venv", "var", "deploy", "tests", "bench", "tools", "**/__pycache__"]
    ignored.append("*.db")
    return f"# {HEADER}\n" + "\n".join(ignored) + "\n"


def _yaml(data: Mapping[str, Any]) -> str:
    return f"# {HEADER}\n" + yaml.safe_dump(dict(data), sort_keys=False, width=100)


def _yaml_documents(documents: list[dict[str, Any]]) -> str:
    return f"# {HEADER}\n" + yaml.safe_dump_all(documents, sort_keys=False, width=100)


def differences(
    root: Path, files: Mapping[str, str], out: str = "deploy", targets: Sequence[str] = TARGETS
) -> list[str]:
    """Each generated file that is missing or differs on disk, and each stale one in the
    folders `targets` generate whole (k8s/, lambda/)."""
    found = []
    for relative, text in files.items():
        path = root / relative
        if not path.is_file():
            found.append(f"{relative} (missing)")
        elif path.read_text() != text:
            found.append(f"{relative} (differs)")
    owned = {"kubernetes": "k8s", "lambda": "lambda"}
    for target, folder in owned.items():
        generated = root / out / folder
        if target not in targets or not generated.is_dir():
            continue
        for path in sorted(generated.rglob("*")):
            relative = path.relative_to(root).as_posix()
            if path.is_file() and relative not in files:
                found.append(f"{relative} (not generated)")
    return found


def write(root: Path, files: Mapping[str, str]) -> list[str]:
    """Write the files that changed; returns their paths."""
    written = []
    for relative, text in files.items():
        path = root / relative
        if path.is_file() and path.read_text() == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(relative)
    return written
