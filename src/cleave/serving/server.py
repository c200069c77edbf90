"""Serving one unit: migrate its services, add missing demo data, then answer HTTP until stopped.

`cleave up` on a one-unit topology and `cleave run UNIT` (what a container runs) are both this.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket

import structlog
import uvicorn

from cleave.config import SystemConfig
from cleave.errors import CleaveError, ConfigError, DatabaseUnavailable, Unrecoverable
from cleave.runtime import Unit, welcome_lines
from cleave.serving import collect_garbage_again
from cleave.telemetry import configure_logging, log_to_file, unit_log_path
from cleave.web.app import create_app, create_metrics_app


class PortInUse(CleaveError):
    """The address a server must listen on is taken."""


def unrecoverable(error: BaseException) -> Unrecoverable | None:
    """The failure as `Unrecoverable`, with what to do about it, when restarting the unit can
    never fix it; None when it may pass (a database or broker that is not up yet)."""
    from sqlalchemy.exc import ArgumentError

    from cleave.data.database import is_misconfigured

    if isinstance(error, Unrecoverable):
        return error
    if isinstance(error, DatabaseUnavailable) and is_misconfigured(error):
        return Unrecoverable(
            f"{error} (create it with `cleave migrate --admin-url URL`, or set admin_url in the "
            "topology so that `cleave up` does)"
        )
    if isinstance(error, ConfigError | PortInUse):
        return Unrecoverable(str(error))
    if isinstance(error, ArgumentError):  # SQLAlchemy's word for a URL it cannot use
        return Unrecoverable(f"a database URL is not usable: {error}")
    if isinstance(error, ImportError):
        return Unrecoverable(f"cannot import: {error}")
    return None


def check_port_free(host: str, port: int, *, option: str = "--port") -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PortInUse(
                    f"port {port} on {host} is in use (choose another with {option})"
                ) from None
            raise CleaveError(f"cannot listen on {host}:{port}: {error.strerror}") from None


async def serve_unit(
    config: SystemConfig,
    unit_name: str,
    *,
    host: str,
    port: int,
    migrate: bool = True,
    seed: bool = True,
    announce: bool = True,
    console: bool = False,
    stop: asyncio.Event | None = None,
    metrics_port: int | None = None,
) -> None:
    """Serve `unit_name` until the process is told to stop, or until `stop` is set."""
    configure_logging(unit=unit_name)
    log_to_file(unit_log_path(config.var_dir, unit_name))
    unit = Unit(config, unit_name)
    try:
        await unit.prepare(migrate=migrate, seed=seed)
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(unit, console=console, host=host),
                host=host,
                port=port,
                log_config=None,
                access_log=False,
                ws="none",  # no route speaks WebSocket: its implementation is not even imported
            )
        )
        structlog.get_logger("cleave.serving.server").info(
            "unit serving",
            topology=config.topology.name,
            services=[service.name for service in unit.services],
            http=f"http://{host}:{port}",
            metrics=f"http://{host}:{metrics_port}/metrics" if metrics_port else None,
        )
        if announce:
            from rich.console import Console

            screen = Console(stderr=True, highlight=False, soft_wrap=True)
            screen.print(
                f"[bold]Cleave[/] is up: http://{host}:{port}  "
                f"(topology {config.topology.name}, docs at /docs, console at /console, "
                "Ctrl-C stops)"
            )
            for line in welcome_lines(config):
                screen.print(f"  {line}", markup=False)
        servers = [server]
        if metrics_port is not None:
            servers.append(
                uvicorn.Server(
                    uvicorn.Config(
                        create_metrics_app(unit),
                        host=host,
                        port=metrics_port,
                        log_config=None,
                        access_log=False,
                        ws="none",
                        lifespan="off",
                    )
                )
            )
        collect_garbage_again()
        await _serve_until(servers, stop or asyncio.Event())
    finally:
        await unit.stop()


async def _serve_until(servers: list[uvicorn.Server], stop: asyncio.Event) -> None:
    """Serve, and shut every server down gracefully (as on Ctrl-C) once `stop` is set or any
    one of them stops (a signal reaches each in turn: each passes it on when it is done)."""

    async def shut_down_when_stopped() -> None:
        await stop.wait()
        for server in servers:
            server.should_exit = True

    stopper = asyncio.create_task(shut_down_when_stopped())
    serving = [asyncio.create_task(server.serve()) for server in servers]
    try:
        await asyncio.wait(serving, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        await asyncio.gather(*serving)
    finally:
        stopper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopper
