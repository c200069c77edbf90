"""`cleave contracts` and `cleave can-i-deploy`: whether each service can ship alone.

`contracts verify` runs every check of `cleave.contracts.CHECKS` (the pacts, and whatever other
contract checks are registered there) for one service or all; `contracts record-deployment` and
`can-i-deploy` keep and read the versions matrix in the repository.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cleave.cli.app import app, config_for, err, out

contracts_app = typer.Typer(
    help="Contracts between services: verify them, record deployments.", no_args_is_help=True
)
app.add_typer(contracts_app, name="contracts")

ServiceArgument = Annotated[str, typer.Argument(help="A service of cleave.toml.")]
EnvironmentOption = Annotated[
    str, typer.Option("--env", help="The environment it now runs in (production, staging, ...).")
]


@contracts_app.command("verify")
def contracts_verify(
    service: Annotated[str | None, typer.Argument(help="Only this service.")] = None,
) -> None:
    """Run every contract check for one service or all; exit 1 if anything would break."""
    from cleave.contracts import CHECKS, load_check

    config = config_for()
    if service is not None:
        config.require_service(service)
    failed = False
    for name in CHECKS:
        problems = load_check(name)(config, service)
        failed = failed or bool(problems)
        mark = "[red]FAIL[/]" if problems else "[green]ok[/]"
        out.print(f"{mark}  {name}" + (f" ({len(problems)} problems)" if problems else ""))
        for problem in problems:
            out.print(f"      {problem}", markup=False)
    if failed:
        raise typer.Exit(1)


@contracts_app.command("record-deployment")
def contracts_record_deployment(
    service: ServiceArgument,
    version: Annotated[str, typer.Argument(help="The version this tree was built as.")],
    environment: EnvironmentOption,
) -> None:
    """Record this tree as VERSION of SERVICE, deployed to ENV, in contracts/matrix.json."""
    config = config_for()
    config.require_service(service)  # before the import: verifying loads the whole system
    from cleave.contracts.matrix import matrix_path, record_deployment

    problems = record_deployment(config, service, version, environment)
    out.print(f"recorded {service} {version} in {environment} ({matrix_path(config)})")
    for problem in problems:
        err.print(f"warning: verification failed: {problem}", markup=False)


@app.command("can-i-deploy")
def can_i_deploy(
    service: ServiceArgument,
    version: Annotated[str, typer.Option("--version", help="The version to deploy.")],
    to: Annotated[str, typer.Option("--to", help="The environment to deploy it to.")],
) -> None:
    """Can VERSION of SERVICE go to ENV without breaking what runs there? Exit 1 on no."""
    config = config_for()
    config.require_service(service)  # before the import: verifying loads the whole system
    from cleave.contracts.matrix import can_i_deploy as answer_for

    answer = answer_for(config, service, version, to)
    verdict = "yes" if answer.deployable else "no"
    out.print(
        f"{verdict}: {service} {version} {'can' if answer.deployable else 'cannot'} go to {to}"
    )
    for reason in answer.reasons:
        out.print(f"  {reason}", markup=False)
    if not answer.deployable:
        raise typer.Exit(1)
