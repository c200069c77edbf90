"""`cleave deploy render` and `cleave deploy check`: the deployment files, from cleave.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cleave.errors import CleaveError

deploy_app = typer.Typer(
    help="Deployment files (Dockerfile, compose.yaml, kustomize, AWS SAM) generated from "
    "cleave.toml.",
    no_args_is_help=True,
)
out = Console(highlight=False, soft_wrap=True)

OutOption = Annotated[
    str, typer.Option("--out", help="Folder for compose.yaml and k8s/, next to cleave.toml.")
]


TargetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--target",
        help="Only these: docker, compose, kubernetes, lambda (an AWS SAM template for each "
        "topology that lists functions). Repeatable; every one by default.",
    ),
]


def _targets(chosen: list[str] | None) -> tuple[str, ...]:
    from cleave.deploy.render import TARGETS

    for target in chosen or ():
        if target not in TARGETS:
            raise CleaveError(f"--target {target!r}: use one of {', '.join(TARGETS)}")
    return tuple(chosen) if chosen else TARGETS


def _rendered(folder: str, targets: tuple[str, ...]) -> tuple[Path, dict[str, str]]:
    from importlib.metadata import version

    from cleave.config import find_config, load_config
    from cleave.deploy.render import render
    from cleave.deploy.system import System, without_environment_overrides
    from cleave.runtime import load_services, site_service

    if Path(folder).is_absolute() or ".." in Path(folder).parts:
        raise CleaveError(f"--out {folder!r} must be a folder inside the project")
    with without_environment_overrides():
        path = find_config()
        config = load_config(path)
        services = load_services(config)
        system = System(
            config=config,
            toml_text=path.read_text(),
            services_with_workers=frozenset(name for name, s in services.items() if s.workers),
            version=version("cleave"),
            site_service=site_service(services),
            declarations=services,
        )
        return config.root, render(system, folder, targets)


@deploy_app.command("render")
def render_files(folder: OutOption = "deploy", target: TargetOption = None) -> None:
    """Write the Dockerfile, compose.yaml, the kustomize base and overlays, and the AWS SAM
    template of each topology that lists functions."""
    from cleave.deploy.render import differences, write

    targets = _targets(target)
    root, files = _rendered(folder, targets)
    for stale in differences(root, files, folder, targets):
        if stale.endswith("(not generated)"):
            (root / stale.rpartition(" (")[0]).unlink()
            out.print(f"removed {stale.rpartition(' (')[0]}")
    for written in write(root, files):
        out.print(f"wrote   {written}")
    out.print(f"{len(files)} files match cleave.toml")


@deploy_app.command("check")
def check_files(folder: OutOption = "deploy", target: TargetOption = None) -> None:
    """Exit 1 if the files on disk differ from what cleave.toml generates."""
    from cleave.deploy.render import differences

    targets = _targets(target)
    root, files = _rendered(folder, targets)
    if found := differences(root, files, folder, targets):
        raise CleaveError(
            f"{len(found)} deployment file(s) drifted from cleave.toml: {', '.join(found)}; "
            "run `cleave deploy render`"
        )
    out.print(f"{len(files)} deployment files match cleave.toml")


@deploy_app.command("secrets")
def unit_secrets(
    topology: Annotated[
        str, typer.Option("--topology", "-t", help="The topology whose units need clients.")
    ] = "split",
    grpc_tls: Annotated[
        Path | None,
        typer.Option(
            "--grpc-tls",
            help="A folder from `cleave certs`: also a Secret <unit>-grpc-tls per unit, with "
            "its certificate, its key and the CA (what its Deployment mounts).",
        ),
    ] = None,
) -> None:
    """Print a Kubernetes Secret with a fresh secret for each unit's client, for
    `kubectl apply -f -` (once: applying it again changes every unit's secret)."""
    import secrets

    import yaml

    from cleave.auth.units import unit_client_id
    from cleave.config import find_config, load_config
    from cleave.deploy.system import UNIT_CLIENTS_SECRET, grpc_tls_secret
    from cleave.rpc.tls import UnitTls

    config = load_config(find_config(), topology=topology)
    units = config.topology.units
    if len(units) < 2:
        raise CleaveError(f"topology {topology!r} is one unit: no call crosses a process")
    documents = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": UNIT_CLIENTS_SECRET},
            "type": "Opaque",
            "stringData": {unit_client_id(unit): secrets.token_urlsafe(32) for unit in units},
        }
    ]
    for unit in units if grpc_tls is not None else ():
        assert grpc_tls is not None
        files = UnitTls.load(grpc_tls, unit)  # a missing file is a one-line error naming it
        documents.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": grpc_tls_secret(unit)},
                "type": "Opaque",
                "stringData": {
                    "ca.pem": files.ca.decode(),
                    f"{unit}.pem": files.certificate.decode(),
                    f"{unit}.key": files.key.decode(),
                },
            }
        )
    typer.echo(yaml.safe_dump_all(documents, sort_keys=False), nl=False)
