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
from cleave.errors import CleaveError
from cleave.runtime import Unit, welcome_lines
from cleave.telemetry import configure_logging
from cleave.web.app import create_app


def check_port_free(host: str, port: int, *, option: str = "--port") -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise CleaveError(
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
) -> None:
    """Serve `unit_name` until the process is told to stop, or until `stop` is set."""
    configure_logging(unit=unit_name)
    unit = Unit(config, unit_name)
    try:
        if migrate:
            await unit.migrate()
        if seed:
            await unit.seed()
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(unit, console=console, host=host),
                host=host,
                port=port,
                log_config=None,
                access_log=False,
            )
        )
        structlog.get_logger("cleave.serving.server").info(
            "unit serving",
            topology=config.topology.name,
            services=[service.name for service in unit.services],
            http=f"http://{host}:{port}",
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
        if stop is None:
            await server.serve()
        else:
            await _serve_until(server, stop)
    finally:
        await unit.stop()


async def _serve_until(server: uvicorn.Server, stop: asyncio.Event) -> None:
    """Serve, and shut down gracefully (as on Ctrl-C) once `stop` is set."""

    async def shut_down_when_stopped() -> None:
        await stop.wait()
        server.should_exit = True

    stopper = asyncio.create_task(shut_down_when_stopped())
    try:
        await server.serve()
    finally:
        stopper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopper
