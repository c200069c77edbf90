"""The bench's charts, as plain SVG (no plotting library): throughput per topology, latency
percentiles against arrival rate, CPU per order by process."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

COLOURS = [
    "#4a7bd0",
    "#d07a4a",
    "#5aa469",
    "#a05ad0",
    "#c9b037",
    "#777777",
    "#3fb6b2",
    "#d04a7b",
    "#8c6d31",
    "#9aa5d6",
    "#b5cf6b",
    "#e7969c",
]


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    return "".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" ',
            'font-family="sans-serif" font-size="12"><rect width="100%" height="100%" ',
            f'fill="white"/><text x="10" y="20" font-size="14" font-weight="bold">{title}</text>',
            *body,
            "</svg>",
        ]
    )


def throughput(bars: list[tuple[str, float, float]]) -> str:
    """(label, orders/s, target) per topology, as horizontal bars with the target marked."""
    top = max([value for _, value, _ in bars] + [target for _, _, target in bars] + [1.0])
    scale = 420 / top
    body = []
    for index, (label, value, target) in enumerate(bars):
        y = 40 + index * 40
        body.append(f'<text x="10" y="{y + 17}">{label}</text>')
        body.append(
            f'<rect x="170" y="{y}" width="{value * scale:.1f}" height="24" '
            f'fill="{COLOURS[index % len(COLOURS)]}"/>'
        )
        body.append(f'<text x="{176 + value * scale:.1f}" y="{y + 17}">{value:.1f}/s</text>')
        tx = 170 + target * scale
        body.append(
            f'<line x1="{tx:.1f}" y1="{y - 3}" x2="{tx:.1f}" y2="{y + 27}" stroke="#d04a4a" '
            'stroke-width="2" stroke-dasharray="4"/>'
        )
    body.append('<text x="170" y="34" fill="#d04a4a">dashed: target</text>')
    return _svg(680, 60 + 40 * len(bars), "Orders confirmed per second at saturation", body)


def latency(series: dict[str, dict[float, tuple[float, float]]]) -> str:
    """Per topology, p50 and p99 (ms, log scale) against the arrival rate (orders/s)."""
    rates = sorted({rate for points in series.values() for rate in points})
    values = [v for points in series.values() for pair in points.values() for v in pair if v > 0]
    low = 10 ** math.floor(math.log10(min(values, default=1.0)))
    high = 10 ** math.ceil(math.log10(max(values, default=10.0) * 1.01))
    width, height, left, bottom = 640, 360, 70, 310

    def x(rate: float) -> float:
        if len(rates) == 1:
            return left + 250
        return left + (rate - rates[0]) / (rates[-1] - rates[0]) * 500

    def y(value: float) -> float:
        value = max(value, low)
        return (
            bottom
            - (math.log10(value) - math.log10(low)) / (math.log10(high) - math.log10(low)) * 260
        )

    body = [f'<line x1="{left}" y1="{bottom}" x2="{left + 520}" y2="{bottom}" stroke="black"/>']
    body.append(f'<line x1="{left}" y1="{bottom}" x2="{left}" y2="40" stroke="black"/>')
    decade = low
    while decade <= high:
        body.append(f'<text x="10" y="{y(decade) + 4:.1f}">{decade:g} ms</text>')
        body.append(
            f'<line x1="{left}" y1="{y(decade):.1f}" x2="{left + 520}" y2="{y(decade):.1f}" '
            'stroke="#ddd"/>'
        )
        decade *= 10
    for rate in rates:
        body.append(f'<text x="{x(rate) - 10:.1f}" y="{bottom + 18}">{rate:g}/s</text>')
    body.append(f'<text x="{left + 200}" y="{bottom + 40}">arrival rate (orders/s)</text>')
    legend = 0
    for index, (name, points) in enumerate(series.items()):
        for which, dash in ((0, ""), (1, ' stroke-dasharray="5"')):
            colour = COLOURS[index % len(COLOURS)]
            coords = " ".join(f"{x(r):.1f},{y(points[r][which]):.1f}" for r in sorted(points))
            body.append(
                f'<polyline points="{coords}" fill="none" stroke="{colour}" '
                f'stroke-width="2"{dash}/>'
            )
            for r in sorted(points):
                body.append(
                    f'<circle cx="{x(r):.1f}" cy="{y(points[r][which]):.1f}" r="3" '
                    f'fill="{colour}"/>'
                )
            label = f"{name} {'p50' if which == 0 else 'p99'}"
            body.append(
                f'<text x="{left + 530 - 60}" y="{50 + legend * 16}" fill="{colour}">{label}</text>'
            )
            legend += 1
    return _svg(width, height, "POST → confirmed latency against arrival rate", body)


def cpu(stacks: dict[str, dict[str, float]]) -> str:
    """CPU ms per confirmed order, stacked by process group, one bar per topology."""
    groups = sorted({group for parts in stacks.values() for group in parts})
    top = max([sum(parts.values()) for parts in stacks.values()] + [1.0])
    scale = 420 / top
    body = []
    for index, (topology, parts) in enumerate(stacks.items()):
        y = 40 + index * 44
        body.append(f'<text x="10" y="{y + 17}">{topology}</text>')
        offset = 120.0
        for group in groups:
            value = parts.get(group, 0.0)
            colour = COLOURS[groups.index(group) % len(COLOURS)]
            body.append(
                f'<rect x="{offset:.1f}" y="{y}" width="{value * scale:.1f}" height="26" '
                f'fill="{colour}"><title>{group}: {value:.2f} ms</title></rect>'
            )
            offset += value * scale
        body.append(f'<text x="{offset + 6:.1f}" y="{y + 17}">{sum(parts.values()):.1f} ms</text>')
    for index, group in enumerate(groups):
        colour = COLOURS[index % len(COLOURS)]
        y = 50 + 44 * len(stacks) + index * 16
        body.append(f'<rect x="120" y="{y - 10}" width="10" height="10" fill="{colour}"/>')
        body.append(f'<text x="136" y="{y}">{group}</text>')
    height = 70 + 44 * len(stacks) + 16 * len(groups)
    return _svg(680, height, "CPU per confirmed order, by process (ms)", body)


def write_all(
    results: Path, runs: dict[str, Any], mono: dict[float, Any], spl: dict[float, Any]
) -> None:
    def median_of(key: str, field: str) -> float:
        values = sorted(run[field] for run in runs[key])
        return float(values[len(values) // 2])

    (results / "throughput.svg").write_text(
        throughput(
            [
                ("monolith", median_of("monolith_saturation", "throughput"), 200.0),
                ("monolith, tracing off", median_of("untraced_saturation", "throughput"), 200.0),
                ("split", median_of("split_saturation", "throughput"), 150.0),
            ]
        )
    )
    (results / "latency.svg").write_text(
        latency(
            {
                "monolith": {rate: (run.p50_ms, run.p99_ms) for rate, run in mono.items()},
                "split": {rate: (run.p50_ms, run.p99_ms) for rate, run in spl.items()},
            }
        )
    )
    (results / "cpu.svg").write_text(
        cpu(
            {
                "monolith": runs["monolith_saturation"][0]["cpu_ms_per_order"],
                "split": split_by_process(runs["split_saturation"][0]),
            }
        )
    )


def split_by_process(run: dict[str, Any]) -> dict[str, float]:
    """The split's CPU per order unit by unit (and the gateway), PostgreSQL's backends summed,
    RabbitMQ and the generator as measured; the total by group where a run has no per-process
    figures (one from before they were recorded)."""
    by_process = run.get("cpu_ms_per_process") or {}
    if not by_process:
        return dict(run["cpu_ms_per_order"])
    parts = {name: value for name, value in by_process.items() if not name.startswith("pg ")}
    parts["postgresql"] = sum(v for name, v in by_process.items() if name.startswith("pg "))
    for shared in ("rabbitmq (shared)", "generator"):
        if shared in run["cpu_ms_per_order"]:
            parts[shared] = run["cpu_ms_per_order"][shared]
    return parts
