"""A unit's cold start as a Lambda function: `python -m bench.cold_start [--repeats N]`.

Each run is a fresh interpreter, as a new function instance is: it imports the handler and
answers one API Gateway HTTP API (v2) GET, and the time from before the import to that first
response is the cold start; a second GET is the warm response. `cleave.serverless.handler`
serves the monolith's one unit on SQLite (migrated and seeded beforehand, not timed) and answers
the product GET; the baseline is `bench/lambda_baseline.py`, a bare FastAPI app by Mangum,
measured in the same run. Interpreter start-up itself is left out of both: Lambda pays it
either way. Both import compiled bytecode, as from a deployment package that pip compiled: it is
written once to a cache of the run's own (`PYTHONPYCACHEPREFIX`) by an untimed first run.
`--importtime` prints the heaviest modules the handler imports (`-X importtime`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EVENT = ROOT / "tests" / "fixtures" / "lambda" / "http-api-v2.json"
PRODUCT = "/api/catalog/v1/products/MUG-CLASSIC"
# Run in the fresh interpreter: the clock starts before the handler's module is imported.
RUNNER = """
import time
started = time.perf_counter()
import importlib, json, sys
module, _, name = sys.argv[1].partition(":")
handler = getattr(importlib.import_module(module), name)
imported = time.perf_counter()
event = json.loads(sys.argv[2])
first = handler(event, None)
answered = time.perf_counter()
warm = handler(event, None)
done = time.perf_counter()
assert first["statusCode"] == warm["statusCode"] == 200, (first, warm)
print(json.dumps({"import": imported - started, "cold": answered - started,
                  "warm": done - answered}))
"""


def event(path: str) -> dict[str, Any]:
    request: dict[str, Any] = json.loads(EVENT.read_text())
    request.pop("cookies")
    request.update(rawPath=path, rawQueryString="", body="", headers={"host": "bench"})
    request["requestContext"]["http"].update(method="GET", path=path)
    return request


def prepare_monolith(var: Path) -> dict[str, str]:
    """Migrate and seed the monolith under `var`; the environment a function of it runs with."""
    from cleave.config import load_config
    from cleave.runtime import Unit

    config = replace(load_config(ROOT / "cleave.toml", topology="monolith"), var_root=var)

    async def build() -> None:
        unit = Unit(config)
        try:
            await unit.migrate()
            await unit.seed()
        finally:
            await unit.stop()

    asyncio.run(build())
    return {
        "CLEAVE_CONFIG": str(ROOT / "cleave.toml"),
        "CLEAVE_TOPOLOGY": "monolith",
        "CLEAVE_UNIT": "shop",
        "CLEAVE_VAR": str(var),
    }


def fresh_environment(environment: dict[str, str], pycache: Path) -> dict[str, str]:
    """The environment of a fresh interpreter that reads (and writes) bytecode under `pycache`."""
    inherited = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**inherited, **environment, "PYTHONPYCACHEPREFIX": str(pycache)}


def cold_start(handler: str, path: str, environment: dict[str, str]) -> dict[str, float]:
    ran = subprocess.run(
        [sys.executable, "-c", RUNNER, handler, json.dumps(event(path))],
        capture_output=True,
        text=True,
        env=environment,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    if ran.returncode != 0:
        raise SystemExit(f"{handler} failed:\n{ran.stderr}")
    figures: dict[str, float] = json.loads(ran.stdout.strip().splitlines()[-1])
    return figures


def heaviest_imports(environment: dict[str, str], count: int = 25) -> list[tuple[int, str]]:
    """The modules whose import (with what they import) took longest, in microseconds."""
    request = event(PRODUCT)
    script = f"from cleave.serverless import handler; handler({request!r}, None)"
    ran = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", script],
        capture_output=True,
        text=True,
        env=environment,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    rows = []
    for line in ran.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cumulative, name = line.removeprefix("import time:").split("|")
            if not name.startswith("    "):  # top-level imports only, not their parts twice
                rows.append((int(cumulative), name.strip()))
    return sorted(rows, reverse=True)[:count]


def measure(repeats: int, *, importtime: bool = False) -> dict[str, Any]:
    """Medians of each figure, and the cold start ratio of each interleaved pair of runs."""
    with tempfile.TemporaryDirectory(prefix="cleave-cold-start-") as folder:
        pycache = Path(folder) / "pycache"
        environment = fresh_environment(prepare_monolith(Path(folder) / "var"), pycache)
        bare = fresh_environment({}, pycache)
        runs: dict[str, list[dict[str, float]]] = {"baseline": [], "cleave": []}
        for repeat in range(repeats + 1):  # interleaved: drift on the machine hits both
            baseline = cold_start("bench.lambda_baseline:handler", "/item", bare)
            cleave = cold_start("cleave.serverless:handler", PRODUCT, environment)
            if repeat:  # the first run compiled the bytecode
                runs["baseline"].append(baseline)
                runs["cleave"].append(cleave)
        if importtime:
            for microseconds, name in heaviest_imports(environment):
                print(f"  {microseconds / 1000:8.1f} ms  {name}")
    medians = {
        name: {key: statistics.median(run[key] for run in results) for key in results[0]}
        for name, results in runs.items()
    }
    ratios = [
        unit["cold"] / bare["cold"]
        for unit, bare in zip(runs["cleave"], runs["baseline"], strict=True)
    ]
    return {"repeats": repeats, "medians": medians, "ratios": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--importtime", action="store_true")
    args = parser.parse_args()
    measured = measure(args.repeats, importtime=args.importtime)
    for name, figures in measured["medians"].items():
        print(
            f"{name:>8}: import {figures['import'] * 1000:6.0f} ms, import + first response "
            f"{figures['cold'] * 1000:6.0f} ms, warm response {figures['warm'] * 1000:6.1f} ms"
        )
    ratio = statistics.median(measured["ratios"])
    print(f"cold start (import + first response), cleave / bare Mangum + FastAPI: {ratio:.2f}x")
    print(json.dumps(measured))


if __name__ == "__main__":
    main()
