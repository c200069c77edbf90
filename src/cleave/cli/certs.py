"""`cleave certs`: a development CA and a certificate per unit, for TLS on gRPC between units."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cleave.cli.app import TopologyOption, app, config_for, out
from cleave.errors import CleaveError


@app.command()
def certs(
    topology: TopologyOption = None,
    folder: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Where to write them; by default the topology's grpc_tls folder."
        ),
    ] = None,
) -> None:
    """Make a development CA and a certificate per unit (kept if present). Set `grpc_tls` to
    the folder in the topology (or CLEAVE_GRPC_TLS) and its units talk gRPC over mutual TLS."""
    from cleave.rpc.tls import make_development_certificates

    config = config_for(topology)
    units = config.topology.units
    if len(units) < 2:
        raise CleaveError(f"topology {config.topology.name!r} is one unit: it serves no gRPC")
    target = folder or config.grpc_tls_dir or config.var_dir / "certs"
    hosts = {unit: [config.topology.address_of(unit).host] for unit in units}
    written = make_development_certificates(target, hosts)
    for path in written:
        out.print(f"wrote   {path}")
    out.print(f"{len(units)} units have certificates in {target}")
    if config.grpc_tls_dir is None:
        shown = "{var}/certs" if folder is None else str(target)
        where = f"[topology.{config.topology.name}]"
        out.print(f'turn TLS on with grpc_tls = "{shown}" in {where}', markup=False)
