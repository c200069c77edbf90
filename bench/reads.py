"""The two read figures of `make bench` alone, with the servers' CPU: `python -m bench.reads`.

    python -m bench.reads [--seconds 5] [--repeats 1] [--only monolith|split] [--profile DIR]

Starts the bare FastAPI app, the monolith and the split exactly as `make bench` does and drives
the product GET with the same `wrk -t1 -c32`, interleaving baseline and system in each repeat.
Beside each rate it prints how busy the server's processes were (CPU-seconds per second of wrk)
and the CPU per request. With `--profile DIR`, one more wrk run per server under
`py-spy record --idle --native`, written as DIR/read-<server>.svg.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.system import (
    ROOT,
    baseline,
    cpu_seconds,
    monolith,
    require_wrk,
    split,
)

PRODUCT = "/api/catalog/v1/products/MUG-CLASSIC"
PY_SPY = ROOT / ".venv" / "bin" / "py-spy"


def measured(url: str, seconds: float, pids: Callable[[], list[int]]) -> tuple[float, float]:
    """Requests per second, and the CPU-seconds per second the given processes spent meanwhile."""
    watched = pids()
    before, began = cpu_seconds(watched), time.perf_counter()
    rate, _count = checked_wrk(url, seconds)
    busy = (cpu_seconds(watched) - before) / (time.perf_counter() - began)
    return rate, busy


def checked_wrk(url: str, seconds: float) -> tuple[float, int]:
    """`bench.system.wrk`, saying how many answers were not a success: a server that answers
    502 or 429 fast is not a fast server."""
    output = subprocess.run(
        ["wrk", "-t1", "-c32", f"-d{max(1, round(seconds))}s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if failed or "Socket errors" in output:
        errors = re.search(r"Socket errors: .*", output)
        print(f"  !! {url}: {failed.group(1) if failed else 0} answers not a success", end="")
        print(f" {errors.group(0) if errors else ''}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    count = re.search(r"(\d+) requests in", output)
    assert rate, output
    assert count, output
    return float(rate.group(1)), int(count.group(1))


def profile(pid: int, url: str, seconds: float, out: Path) -> None:
    """py-spy on `pid` while wrk drives `url`: where the loop waits (--idle) and where CPU goes."""
    command = [str(PY_SPY), "record", "--idle", "--native", "--pid", str(pid)]
    command += ["--duration", str(round(seconds) + 1), "--rate", "200", "--output", str(out)]
    if out.suffix == ".txt":  # collapsed stacks, to read with a script rather than a browser
        command += ["--format", "raw"]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)  # py-spy attached before the load starts
    threading.Thread(target=checked_wrk, args=(url, seconds), daemon=True).start()
    _out, err = spy.communicate(timeout=seconds + 60)
    print(f"  profile {out}: {'written' if spy.returncode == 0 else err.decode()[-300:]}")


def line(name: str, rate: float, busy: float) -> None:
    print(f"  {name:<28} {rate:>8,.0f} req/s  {busy:.2f} CPU  {busy / rate * 1e6:>6.0f} µs/req")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", choices=["monolith", "split"])
    parser.add_argument("--profile", type=Path, help="write py-spy flame graphs here")
    parser.add_argument(
        "--collapsed", action="store_true", help="profiles as collapsed stacks (.txt), not SVG"
    )
    args = parser.parse_args()
    require_wrk()
    seconds = args.seconds
    kind = "txt" if args.collapsed else "svg"
    if args.only != "split":
        ratios = []
        with baseline() as bare, monolith() as mono:
            for _ in range(args.repeats):
                bare_rate, bare_busy = measured(f"{bare.base}/item", seconds, bare.pids)
                line("bare FastAPI /item", bare_rate, bare_busy)
                rate, busy = measured(f"{mono.base}{PRODUCT}", seconds, mono.pids)
                line("monolith product GET", rate, busy)
                ratios.append(rate / bare_rate)
            print(f"monolith vs bare: {statistics.median(ratios):.2f}× (each: {ratios})")
            if args.profile:
                args.profile.mkdir(parents=True, exist_ok=True)
                url = f"{mono.base}{PRODUCT}"
                profile(mono.process.pid, url, seconds, args.profile / f"read-monolith.{kind}")
                profile(
                    bare.process.pid,
                    f"{bare.base}/item",
                    seconds,
                    args.profile / f"read-bare.{kind}",
                )
    if args.only != "monolith":
        ratios = []
        with split() as spl:
            direct = f"http://127.0.0.1:{spl.unit_ports['catalog']}{PRODUCT}"
            gateway_pid = spl.process.pid
            for _ in range(args.repeats):
                rate_direct, busy_direct = measured(direct, seconds, spl.pids)
                line("catalog unit, direct", rate_direct, busy_direct)
                rate_gateway, busy_gateway = measured(f"{spl.base}{PRODUCT}", seconds, spl.pids)
                line("through the gateway", rate_gateway, busy_gateway)
                _, gateway_alone = measured(f"{spl.base}{PRODUCT}", seconds, lambda: [gateway_pid])
                print(f"  (the gateway process alone: {gateway_alone:.2f} CPU)")
                for pid in spl.pids():
                    _, busy = measured(direct, 2, lambda pid=pid: [pid])  # type: ignore[misc]
                    print(f"  (direct, pid {pid} {_name(pid)}: {busy:.2f} CPU)")
                ratios.append(rate_gateway / rate_direct)
            print(f"gateway vs unit: {statistics.median(ratios):.2f}× (each: {ratios})")
            if args.profile:
                args.profile.mkdir(parents=True, exist_ok=True)
                url = f"{spl.base}{PRODUCT}"
                profile(gateway_pid, url, seconds, args.profile / f"gateway.{kind}")
                catalog = _unit_pid(spl.pids(), "catalog")
                if catalog is not None:
                    profile(catalog, direct, seconds, args.profile / f"read-catalog-unit.{kind}")


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[-40:]
    except OSError:
        return "?"


def _unit_pid(pids: list[int], unit: str) -> int | None:
    for pid in pids:
        try:
            words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"run" in words and unit.encode() in words:
            return pid
    return None


if __name__ == "__main__":
    main()
