"""Private PostgreSQL, RabbitMQ and NATS servers on free ports, for faults that restart them.

The shared servers on this machine serve other people's tests: a fault run never stops or
restarts them. Each class that restarts a server gets a throw-away one of its own instead, started
here from the installed binaries and removed afterwards, so `make faults` needs nothing running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path

from bench.system import free_port

POSTGRES_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
RUNS_AS = "postgres"  # PostgreSQL refuses to run as root


def reachable(port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


async def wait_reachable(port: int, *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not reachable(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} is not reachable on port {port} after {within:.0f} s")
        await asyncio.sleep(0.1)


async def _run(*command: str, user: str | None = None, env: dict[str, str] | None = None) -> str:
    if user is not None and os.geteuid() == 0:
        command = ("runuser", "-u", user, "--", *command)
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{text[-2000:]}")
    return text


def postgres_available() -> bool:
    return bool(POSTGRES_BIN) and (os.geteuid() != 0 or _has_user(RUNS_AS))


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


class PrivatePostgres:
    """A throw-away PostgreSQL cluster: `initdb` into a temporary folder, trust auth, one port."""

    def __init__(self, *, standby: bool = False) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="cleave-pg-"))
        self.data = self.root / "data"
        self.standby = standby
        self.bin = POSTGRES_BIN[-1]
        self.user = RUNS_AS if os.geteuid() == 0 else None

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    async def start(self) -> None:
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        await _run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            user=self.user,
        )
        settings = [
            f"port = {self.port}",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.root}'",
            "max_connections = 300",
            "shared_buffers = 32MB",
            # Only the process is killed, never the machine: the page cache keeps what fsync
            # would, so crash recovery is as real as it gets, without the disk waits. Commits
            # stay synchronous (the default): with them off, a crash loses the last ones.
            "fsync = off",
            "full_page_writes = off",
        ]
        if self.standby:
            # Its recovery waits for ever on the archive before it begins, so it answers every
            # connection as a server that is still starting up does: 57P03.
            settings.append("restore_command = 'sleep 3600'")
            (self.data / "standby.signal").touch()
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n".join(settings) + "\n")
        if self.standby and self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.data / "standby.signal", entry.pw_uid, entry.pw_gid)
        if self.standby:
            await self._pg_ctl("start", "-W")
            await wait_reachable(self.port, within=60, what="the private PostgreSQL")
        else:
            await self._pg_ctl("start", "-w", "-t", "60")

    async def _pg_ctl(self, *args: str) -> str:
        return await _run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            *args,
            user=self.user,
        )

    async def restart(self) -> None:
        """Kill it as a crash would (`-m immediate`: no checkpoint), then start it again."""
        await self._pg_ctl("restart", "-m", "immediate", "-w", "-t", "60")

    async def stop(self) -> None:
        with contextlib.suppress(RuntimeError):
            await self._pg_ctl("stop", "-m", "immediate", "-w", "-t", "30")
        shutil.rmtree(self.root, ignore_errors=True)


def rabbitmq_available() -> bool:
    return bool(shutil.which("rabbitmq-server") and shutil.which("rabbitmqctl"))


class PrivateRabbitMQ:
    """A RabbitMQ node of its own: its own node name, ports and mnesia folder, no plugins."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dist_port = free_port(below=30000)  # the CLI uses dist_port + 10000 and up
        self.node = f"cleave-faults-{uuid.uuid4().hex[:8]}@localhost"
        self.root = Path(tempfile.mkdtemp(prefix="cleave-rabbit-"))

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _prepare(self) -> None:
        for folder in ("mnesia", "log"):  # RabbitMQ creates neither, and fails to boot without
            (self.root / folder).mkdir(exist_ok=True)
        (self.root / "enabled_plugins").write_text("[].\n")
        (self.root / "rabbitmq.conf").write_text(
            "loopback_users = none\nlog.file.level = warning\n"
            # Room for a whole run's backlog while a consumer is away, however small the disk.
            "disk_free_limit.absolute = 50MB\n"
        )
        if os.geteuid() == 0 and _has_user("rabbitmq"):
            # Started as root, rabbitmq-server drops to the rabbitmq user: its folder is theirs.
            entry = pwd.getpwnam("rabbitmq")
            for path in (self.root, *self.root.rglob("*")):
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def _environment(self) -> dict[str, str]:
        return {
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq"),
            "RABBITMQ_PID_FILE": str(self.root / "rabbit.pid"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(self.root / "feature_flags"),
        }

    async def ctl(self, *args: str) -> str:
        # As the user the server runs as, so that both read the same Erlang cookie.
        user = "rabbitmq" if os.geteuid() == 0 and _has_user("rabbitmq") else None
        # Not the node's variables: the CLI would take its own ports from RABBITMQ_DIST_PORT.
        return await _run("rabbitmqctl", "-n", self.node, *args, user=user)

    async def start(self) -> None:
        self._prepare()
        await _run("rabbitmq-server", "-detached", env=self._environment())
        deadline = time.monotonic() + 180
        while True:  # until the node has registered, await_startup fails at once
            try:
                await self.ctl("--timeout", "120", "await_startup")
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1)
        await wait_reachable(self.port, within=60, what="the private RabbitMQ")

    async def stop_app(self) -> None:
        await self.ctl("stop_app")

    async def start_app(self) -> None:
        await self.ctl("start_app")
        await wait_reachable(self.port, within=60, what="the private RabbitMQ")

    async def stop(self) -> None:
        with contextlib.suppress(RuntimeError):
            await self.ctl("stop")
        shutil.rmtree(self.root, ignore_errors=True)


def nats_available() -> bool:
    return bool(shutil.which("nats-server") or Path("/usr/sbin/nats-server").exists())


class PrivateNats:
    """A nats-server with JetStream on disk, on a port of its own: restarted, it keeps streams."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="cleave-nats-"))
        self.binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        log = (self.root / "nats.log").open("ab")
        self.process = await asyncio.create_subprocess_exec(
            self.binary,
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-js",
            "-sd",
            str(self.root / "store"),
            stdout=log,
            stderr=log,
        )
        log.close()
        await wait_reachable(self.port, within=30, what="the private nats-server")

    async def halt(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()
        self.process = None

    async def restart(self, down_seconds: float = 0.0) -> None:
        await self.halt()
        await asyncio.sleep(down_seconds)
        await self.start()

    async def stop(self) -> None:
        await self.halt()
        shutil.rmtree(self.root, ignore_errors=True)
