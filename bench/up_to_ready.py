"""`cleave up` (the monolith) to its first ready answer: `python -m bench.up_to_ready`.

Each repeat (`--repeats N`, 5 by default) starts it on an empty state folder (cold: every service
migrated, the demo data seeded, its passwords hashed, the signing key made), stops it, and starts
it again on the state it left (warm). A start is timed as `make bench` times it
(`bench.system.monolith`): from the process's start to the first 200 from /readyz; its CPU
seconds and resident memory are read then. `--profile OUT.svg` records one cold start under
py-spy instead, as a flame graph.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

from bench.system import PYTHON, base_env, cpu_seconds, free_port, process, rss_mb


def start(env: dict[str, str], wrapper: list[str] | None = None) -> dict[str, float]:
    """One `cleave up` on the state folder of `env`, stopped once it answers ready."""
    port = free_port()
    env = {**env, "CLEAVE_METRICS_PORT": str(free_port())}  # a test run may hold the default
    command = [*(wrapper or []), PYTHON, "-m", "cleave", "up", "--port", str(port)]
    with process(command, f"http://127.0.0.1:{port}/readyz", env) as (child, seconds):
        return {"seconds": seconds, "cpu": cpu_seconds([child.pid]), "rss_mb": rss_mb(child.pid)}


def measure(repeats: int) -> dict[str, list[dict[str, float]]]:
    runs: dict[str, list[dict[str, float]]] = {"cold": [], "warm": []}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="cleave-up-") as var:
            env = base_env(Path(var))
            runs["cold"].append(start(env))
            runs["warm"].append(start(env))
    return runs


def profile(output: Path) -> None:
    """A cold start under py-spy, written to `output` once /readyz answers (py-spy stops on the
    same SIGINT that stops the server)."""
    spy = shutil.which("py-spy", path=str(Path(PYTHON).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy (it is among the development tools)")
    wrapper = [spy, "record", "--rate", "250", "--format", "flamegraph", "-o", str(output), "--"]
    with tempfile.TemporaryDirectory(prefix="cleave-up-") as var:
        seconds = start(base_env(Path(var)), wrapper)["seconds"]  # py-spy's own CPU, not ours
    print(f"{output}: a cold start, ready in {seconds:.2f} s under py-spy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", type=Path, help="record one cold start to this SVG")
    args = parser.parse_args()
    if args.profile:
        profile(args.profile)
        return
    runs = measure(args.repeats)
    for kind, starts in runs.items():
        seconds = [round(run["seconds"], 2) for run in starts]
        print(
            f"{kind}: median {statistics.median(seconds):.2f} s to /readyz {seconds}, "
            f"CPU {statistics.median(run['cpu'] for run in starts):.2f} s, "
            f"resident {statistics.median(run['rss_mb'] for run in starts):.0f} MB"
        )
    print(json.dumps(runs))


if __name__ == "__main__":
    main()
