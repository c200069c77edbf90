"""Where the split's CPU goes, process by process: `python -m bench.split_cpu`.

Starts the split on PostgreSQL + RabbitMQ as `make bench` does, warms it with a few orders, then
measures its idle CPU (CPU seconds per 10 s of each process with no load) and the CPU per
confirmed order of each process at an offered rate (open loop, `bench.loadgen`). Optionally
records a py-spy profile of some units under that load.

    python -m bench.split_cpu [--rate 50] [--orders 500] [--idle 10] [--profile ordering,payment]
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from bench.system import (
    ROOT,
    cpu_by_pid,
    cpu_spent,
    postmaster_reaped_cpu_seconds,
    prepare_orders,
    process_groups,
    run_orders,
    split,
)

PY_SPY = Path(ROOT) / ".venv" / "bin" / "py-spy"


def fold_line_numbers(path: Path) -> None:
    """Collapsed stacks by function, not by line: a fraction of the size, and what a reader
    compares."""
    if not path.exists():
        return
    counts: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        counts[re.sub(r":\d+\)", ")", stack)] += int(samples)
    path.write_text("".join(f"{stack} {n}\n" for stack, n in counts.most_common()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="orders per second offered")
    parser.add_argument("--orders", type=int, default=500, help="orders offered in all")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle measured")
    parser.add_argument("--profile", default="", help="units to profile under load, by comma")
    parser.add_argument("--tag", default="", help="profile file names: order-split-UNIT-TAG")
    args = parser.parse_args()
    with split() as system:
        token = prepare_orders(system)
        run_orders(system, token, 10.0, 2.0)  # warm: pools, channels, caches
        time.sleep(3.0)  # let the warm-up's tail settle (relays, sagas, span export)

        before, reaped = cpu_by_pid(process_groups(system)), postmaster_reaped_cpu_seconds()
        time.sleep(args.idle)
        idle = cpu_spent(before, cpu_by_pid(process_groups(system)))
        idle_reaped = postmaster_reaped_cpu_seconds() - reaped

        profilers = []
        for unit in filter(None, args.profile.split(",")):
            (pid,) = process_groups(system)[unit]
            name = f"order-split-{unit}-unit{'-' + args.tag if args.tag else ''}.collapsed.txt"
            out = ROOT / "bench" / "profiles" / name
            command = [str(PY_SPY), "record", "--native", "-r", "100", "-f", "raw"]
            command += ["-o", str(out), "-p", str(pid)]
            profilers.append((subprocess.Popen(command, stdout=subprocess.DEVNULL), out))
        reaped = postmaster_reaped_cpu_seconds()
        load = run_orders(system, token, args.rate, args.orders / args.rate)
        load_reaped = postmaster_reaped_cpu_seconds() - reaped
        for profiler, out in profilers:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            profiler.wait()
            fold_line_numbers(out)

    per_10s = 10.0 / args.idle
    print(
        f"\nidle {args.idle:.0f} s; then {load.accepted} orders offered at {args.rate:g}/s: "
        f"{load.confirmed} confirmed, {load.throughput:.1f}/s, "
        f"p50 {load.p50_ms:.0f} ms, p99 {load.p99_ms:.0f} ms\n"
    )
    print(f"{'process':<16} {'idle CPU s / 10 s':>18} {'CPU ms / order':>15}")
    names = sorted(load.cpu_ms_per_process, key=lambda n: (n.startswith("pg "), n))
    for name in names:
        idle_seconds = idle.get(name, 0.0) * per_10s
        print(f"{name:<16} {idle_seconds:>18.3f} {load.cpu_ms_per_process[name]:>15.2f}")
    total_idle = sum(idle.values()) * per_10s
    total_load = sum(load.cpu_ms_per_process.values())
    print(f"{'total':<16} {total_idle:>18.3f} {total_load:>15.2f}")
    count = max(load.confirmed, 1)
    print(
        f"{'pg exited (shared)':<16} {idle_reaped * per_10s:>18.3f} "
        f"{load_reaped * 1000 / count:>15.2f}   backends that exited, anyone's"
    )
    print(
        f"{'rabbitmq (shared)':<16} {'':>18} "
        f"{load.cpu_ms_per_order.get('rabbitmq (shared)', 0.0):>15.2f}"
    )
    print(f"{'generator':<16} {'':>18} {load.cpu_ms_per_order['generator']:>15.2f}")


if __name__ == "__main__":
    main()
