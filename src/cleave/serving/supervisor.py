"""`cleave up` for a topology of several units: one child process per unit, under one supervisor.

Each unit runs as `cleave run UNIT`, exactly as a container would. The supervisor prefixes every
log line with its unit, shows progress while the units become ready, restarts a unit that crashes
(with backoff) and reports it, serves the gateway on the topology's public address, and on Ctrl-C
or SIGTERM stops every unit cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn

from cleave.config import SystemConfig
from cleave.errors import EX_CONFIG, CleaveError, Unrecoverable
from cleave.runtime import welcome_lines
from cleave.web.console.collect import log_record_of, span_export_headers, span_secret
from cleave.web.console.store import TraceStore
from cleave.web.gateway import create_gateway, gateway_server

COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "red", "bright_cyan", "bright_magenta")


@dataclass
class Backoff:
    """How long to wait before restarting a unit that exited: doubling from `first` up to `cap`,
    each wait drawn at random from its upper half so that units that fell together do not
    return in lockstep, and back to `first` once the unit had run `healthy_after` seconds."""

    first: float = 1.0
    cap: float = 30.0
    healthy_after: float = 60.0
    current: float = 1.0

    def __post_init__(self) -> None:
        self.current = self.first

    def after_exit(self, ran_for: float) -> float:
        """The wait before the next start, for a unit that had run `ran_for` seconds."""
        if ran_for >= self.healthy_after:
            self.current = self.first
        wait = random.uniform(self.current / 2, self.current)
        self.current = min(self.current * 2, self.cap)
        return wait


@dataclass
class Child:
    unit: str
    colour: str
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    # When the running process was started (before it ran), and the error it last printed.
    started_at: float = 0.0
    last_error: str = ""
    backoff: Backoff = field(default_factory=Backoff)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # Cleared while a unit is held down: it is not restarted until released.
    released: asyncio.Event = field(default_factory=asyncio.Event)
    # Set when the unit is stopped to be restarted (`restart`): it starts again at once.
    reloading: bool = False
    # Set by `--reload` at each change to the unit's code (a unit that failed waits for one).
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.released.set()


class Supervisor:
    def __init__(
        self,
        config: SystemConfig,
        *,
        host: str,
        port: int,
        seed: bool = True,
        ready_timeout_seconds: float = 90.0,
        console: Console | None = None,
        unit_environment: Mapping[str, Mapping[str, str]] | None = None,
        reload: bool = False,
    ) -> None:
        self.config = config
        self.host = host
        self.port = port
        self.seed = seed
        self.ready_timeout_seconds = ready_timeout_seconds
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        # Extra variables for one unit's process only (how it sees the others, through a proxy).
        self.unit_environment = unit_environment or {}
        self.reload = reload
        self.children = [
            Child(unit, COLOURS[index % len(COLOURS)])
            for index, unit in enumerate(config.topology.units)
        ]
        self._stopping = asyncio.Event()
        # The unit that cannot start and its one line, once one has exited with EX_CONFIG.
        self.failure: tuple[str, str] | None = None
        self.store = TraceStore()  # the console's: spans over OTLP, logs from the units' output
        self._width = max(len(unit) for unit in config.topology.units)

    def _command(self, unit: str) -> list[str]:
        command = [
            sys.executable,
            "-m",
            "cleave",
            "run",
            unit,
            "--topology",
            self.config.topology.name,
        ]
        return command if self.seed else [*command, "--no-seed"]

    def _environment(self, unit: str | None = None) -> dict[str, str]:
        environment = dict(os.environ)
        environment["CLEAVE_CONFIG"] = str(self.config.root / "cleave.toml")
        environment["CLEAVE_VAR"] = str(self.config.var_root)
        # Every unit names the same issuer: the gateway's address, where clients reach the system.
        environment["CLEAVE_PUBLIC_URL"] = self.config.public_url
        # Units send their spans to the gateway's console unless told to send them elsewhere;
        # only spans: the console receives no metrics (each unit serves its own /metrics).
        console = f"http://{self.host}:{self.port}/v1/traces"
        if not environment.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            environment.setdefault("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", console)
        if environment.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == console:
            # The console takes spans only from this system's units: they send its secret.
            secret = span_secret(self.config.var_dir)
            environment["OTEL_EXPORTER_OTLP_TRACES_HEADERS"] = span_export_headers(secret)
        environment.setdefault("OTEL_BSP_SCHEDULE_DELAY", "1000")
        environment.setdefault(
            "CLEAVE_LOG_FORMAT", "console" if self.console.is_terminal else "json"
        )
        if unit is not None:
            environment.update(self.unit_environment.get(unit, {}))
        return environment

    def say(self, child: Child, text: str) -> None:
        self.console.print(f"[{child.colour}]{child.unit:>{self._width}} │[/] {escape(text)}")

    async def _spawn(self, child: Child) -> None:
        child.started_at = time.monotonic()
        child.process = await asyncio.create_subprocess_exec(
            *self._command(child.unit),
            cwd=self.config.root,
            env=self._environment(child.unit),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops the units
        )
        child.tasks = [asyncio.create_task(self._pump(child, child.process))]

    async def _pump(self, child: Child, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()
            if line.startswith("error: "):  # the one line a unit that cannot start prints
                child.last_error = line.removeprefix("error: ")
            self.say(child, line)
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    if (record := log_record_of(json.loads(line))) is not None:
                        self.store.add_log(record)

    async def _watch(self, child: Child) -> None:
        """Restart the unit whenever it exits while the supervisor is not stopping, unless it
        exited saying no restart can help (EX_CONFIG): then stop everything, saying why."""
        while True:
            assert child.process is not None
            code = await child.process.wait()
            await asyncio.gather(*child.tasks, return_exceptions=True)
            if self._stopping.is_set():
                return
            if child.reloading:
                child.reloading = False
                await self._spawn(child)
                continue
            if self.reload:
                # While code is being edited, a failing unit waits for the fix, not a backoff.
                self.console.print(
                    f"[bold red]unit {child.unit} exited with code {code}; it starts again "
                    "when its code changes[/]"
                )
                child.changed.clear()
                if not await self._until_changed(child):
                    return
                await self._spawn(child)
                continue
            if code == EX_CONFIG:
                self.failure = (child.unit, child.last_error or f"exit code {code}")
                self._stopping.set()
                return
            delay = child.backoff.after_exit(time.monotonic() - child.started_at)
            self.console.print(
                f"[bold red]unit {child.unit} exited with code {code}; "
                f"restarting in {delay:.1f} s[/]"
            )
            await asyncio.sleep(delay)
            await child.released.wait()
            if self._stopping.is_set():
                return
            child.restarts += 1
            await self._spawn(child)

    async def _until_changed(self, child: Child) -> bool:
        """Wait for a change to the unit's code; False if the supervisor is stopping first."""
        changed = asyncio.create_task(child.changed.wait())
        stopping = asyncio.create_task(self._stopping.wait())
        await asyncio.wait({changed, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for task in (changed, stopping):
            task.cancel()
        return not self._stopping.is_set()

    async def _reload_on_changes(self) -> None:
        """Restart the units whose code changed, as soon as a change settles."""
        from watchfiles import PythonFilter, awatch

        from cleave.serving.reload import service_homes, units_to_reload, watched_folders

        homes = service_homes(self.config)
        async for changes in awatch(
            *watched_folders(homes), watch_filter=PythonFilter(), stop_event=self._stopping
        ):
            changed = sorted({Path(path) for _change, path in changes})
            names = ", ".join(path.name for path in changed[:3])
            for unit in units_to_reload(self.config, homes, changed):
                self.console.print(f"[bold]reloading unit {unit}[/] ({names} changed)")
                self.restart(unit)

    def restart(self, unit: str) -> None:
        """Stop the unit cleanly (SIGTERM: it finishes what it holds) and start it again at once,
        reading `cleave.toml` anew: a code reload, or a rolling upgrade to another version."""
        child = self.child(unit)
        process = child.process
        if process is not None and process.returncode is None:
            child.reloading = True
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        else:
            child.changed.set()

    def child(self, unit: str) -> Child:
        for child in self.children:
            if child.unit == unit:
                return child
        raise CleaveError(f"no unit {unit!r} under this supervisor")

    def send_signal(self, unit: str, signum: int) -> int:
        """Send a signal to a unit's process (SIGKILL, SIGSTOP, SIGCONT); returns its pid."""
        process = self.child(unit).process
        if process is None or process.returncode is not None:
            raise CleaveError(f"unit {unit!r} is not running")
        process.send_signal(signum)
        return process.pid

    def shutdown(self) -> None:
        """Stop every unit and the gateway, as Ctrl-C does (`run` returns once they are down)."""
        self._stopping.set()

    def hold(self, unit: str) -> None:
        """Do not restart this unit when it exits, until `release`."""
        self.child(unit).released.clear()

    def release(self, unit: str) -> None:
        self.child(unit).released.set()

    async def _ready(self, client: httpx.AsyncClient, unit: str) -> bool:
        url = f"{self.config.topology.address_of(unit).http}/readyz"
        try:
            return (await client.get(url, timeout=1.0)).status_code == 200
        except httpx.TransportError:
            return False

    async def wait_until_ready(self) -> None:
        pending = {child.unit for child in self.children}
        deadline = time.monotonic() + self.ready_timeout_seconds
        async with httpx.AsyncClient() as client:
            with Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                console=self.console,
                transient=True,
            ) as progress:
                task = progress.add_task("", total=len(pending))
                while pending and not self._stopping.is_set():
                    waiting = ", ".join(sorted(pending))
                    progress.update(task, description=f"starting units… waiting for {waiting}")
                    states = await asyncio.gather(*(self._ready(client, unit) for unit in pending))
                    for unit, ready in zip(list(pending), states, strict=True):
                        if ready:
                            pending.discard(unit)
                            progress.advance(task)
                            self.console.print(f"[green]✔[/] unit {unit} is ready")
                    if pending and time.monotonic() > deadline:
                        raise CleaveError(
                            f"units not ready after {self.ready_timeout_seconds:.0f} s: {waiting}"
                        )
                    if pending:
                        await asyncio.sleep(0.2)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Serve until Ctrl-C or SIGTERM, or until `stop` is set; then stop every unit."""
        loop = asyncio.get_running_loop()
        previous = {
            sig: signal.signal(sig, lambda *_: loop.call_soon_threadsafe(self._stopping.set))
            for sig in (signal.SIGINT, signal.SIGTERM)
        }
        watchers: list[asyncio.Task[None]] = []
        if stop is not None:
            watchers.append(asyncio.create_task(self._stop_when(stop)))
        try:
            for child in self.children:
                await self._spawn(child)
            watchers += [asyncio.create_task(self._watch(child)) for child in self.children]
            if self.reload:
                watchers.append(asyncio.create_task(self._reload_on_changes()))
            await self.wait_until_ready()
            if self._stopping.is_set():
                return
            server = gateway_server(
                create_gateway(self.config, store=self.store), self.host, self.port
            )
            self.console.print(
                f"[bold]Cleave[/] is up: http://{self.host}:{self.port}  (topology "
                f"{self.config.topology.name}: {len(self.children)} units; Ctrl-C stops them all)"
            )
            for line in welcome_lines(self.config):
                self.console.print(f"  {line}", markup=False)
            serving = asyncio.create_task(server.serve())
            stopping = asyncio.create_task(self._stopping.wait())
            await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            server.should_exit = True
            await serving
        finally:
            self._stopping.set()
            await self.stop()
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.failure is not None:
                unit, line = self.failure
                raise Unrecoverable(
                    f"unit {unit} cannot start: {line} — a restart cannot fix this, so every "
                    "unit was stopped; fix it and run `cleave up` again"
                )

    async def _stop_when(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._stopping.set()

    async def stop(self, grace_seconds: float = 10.0) -> None:
        running = [c for c in self.children if c.process and c.process.returncode is None]
        for child in running:
            assert child.process is not None
            with contextlib.suppress(ProcessLookupError):
                child.process.terminate()
        for child in running:
            assert child.process is not None
            try:
                await asyncio.wait_for(child.process.wait(), grace_seconds)
            except TimeoutError:
                self.console.print(f"[red]unit {child.unit} did not stop in time; killing it[/]")
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
                await child.process.wait()
            await asyncio.gather(*child.tasks, return_exceptions=True)
        if running:
            self.console.print("all units stopped")
