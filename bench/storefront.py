"""The storefront's pages on the monolith: server time of the home, search and product pages, as
a ratio to a bare FastAPI JSON GET measured in the same run (`python -m bench.storefront`; also
part of `make bench`).

A page's server time is the median time from request to the last byte, one request at a time
on a kept-alive connection from a client that keeps the shop's cookie (a returning visitor), so
the ratio compares the two servers under the same client. Each page also makes its own calls to
the services' REST API (one catalog call each, beside a cart count in the storefront's database).
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import httpx

from bench import system
from bench.__main__ import RESULTS

PAGES = {"home page": "/", "search page": "/search?q=mug", "product page": "/products/MUG-CLASSIC"}


def median_ms(client: httpx.Client, url: str, count: int) -> float:
    for _ in range(20):  # warm: connections, caches, the JWKS and the first templates
        client.get(url).raise_for_status()
    times = []
    for _ in range(count):
        started = time.perf_counter()
        answer = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
    return statistics.median(times)


def page_times(base: str, baseline: str, count: int = 300) -> dict[str, dict[str, Any]]:
    """Each page's median against the bare GET's, measured alternately in one run."""
    with httpx.Client(timeout=10) as bare, httpx.Client(timeout=10) as visitor:
        bare_ms = median_ms(bare, f"{baseline}/item", count)
        results: dict[str, dict[str, Any]] = {}
        for name, path in PAGES.items():
            page_ms = median_ms(visitor, base + path, count)
            results[f"{name} server time"] = {
                "value": page_ms,
                "baseline": bare_ms,
                "ratio": page_ms / bare_ms,
                "label": f"{page_ms:.2f} ms vs {bare_ms:.2f} ms (median)",
            }
    return results


def measure() -> dict[str, dict[str, Any]]:
    """Start a fresh monolith and the baseline app, and time the pages against it."""
    with system.baseline() as bare, system.monolith() as shop:
        return page_times(shop.base, bare.base)


def main() -> None:
    print("timing the storefront's pages against a bare GET…", flush=True)
    results = measure()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "storefront.json").write_text(json.dumps(results, indent=2) + "\n")
    width = max(len(name) for name in results)
    for name, values in results.items():
        print(f"{name:<{width}}  ratio {values['ratio']:6.2f}   {values['label']}")
    print(f"written: {RESULTS / 'storefront.json'}")


if __name__ == "__main__":
    main()
