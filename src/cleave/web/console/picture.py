"""The topology as a picture: units as frames, services inside, port calls as solid arrows
(labelled gRPC when they cross units) and events as dashed arrows."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from cleave.config import SystemConfig
from cleave.service import Service

BOX_W, BOX_H, GAP, FRAME_PAD, UNIT_GAP = 150, 34, 18, 16, 60


def topology_svg(config: SystemConfig, services: Mapping[str, Service]) -> str:
    layout = config.topology
    positions: dict[str, tuple[float, float]] = {}
    frames = []
    x = 20.0
    for unit, members in layout.units.items():
        height = FRAME_PAD * 2 + 22 + len(members) * (BOX_H + GAP) - GAP
        frames.append(
            f'<rect x="{x}" y="20" width="{BOX_W + 2 * FRAME_PAD}" height="{height}" rx="10" '
            f'class="unit"/><text x="{x + FRAME_PAD}" y="38" class="unit-name">unit {escape(unit)}'
            "</text>"
        )
        for index, name in enumerate(members):
            top = 20 + FRAME_PAD + 22 + index * (BOX_H + GAP)
            positions[name] = (x + FRAME_PAD, top)
            frames.append(
                f'<rect x="{x + FRAME_PAD}" y="{top}" width="{BOX_W}" height="{BOX_H}" rx="6" '
                f'class="service" data-service="{escape(name)}"/>'
                f'<text x="{x + FRAME_PAD + BOX_W / 2}" y="{top + 22}" class="service-name">'
                f"{escape(name)}</text>"
            )
        x += BOX_W + 2 * FRAME_PAD + UNIT_GAP
    providers = {s.port.protocol: name for name, s in services.items() if s.port}
    edges: list[str] = []
    for name, service in services.items():
        for protocol in service.calls:
            if (target := providers.get(protocol)) is not None:
                remote = layout.unit_of(target) != layout.unit_of(name)
                edges.append(
                    _arrow(positions, name, target, "gRPC" if remote else "", "call", len(edges))
                )
        for sub in service.subscriptions:
            for publisher, candidate in services.items():
                if sub.event in candidate.publishes:
                    label = sub.event.event_type.split(".")[2]
                    edges.append(_arrow(positions, publisher, name, label, "event", len(edges)))
    canvas_height = max((y for _, y in positions.values()), default=0.0) + BOX_H + 60
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{x + 40 + 22 * len(edges)}" '
        f'height="{canvas_height}" '
        f'class="topology" role="img" aria-label="topology {escape(layout.name)}">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker>'
        "</defs>" + "".join(frames) + "".join(edges) + "</svg>"
    )


def _arrow(
    positions: Mapping[str, tuple[float, float]],
    source: str,
    target: str,
    label: str,
    kind: str,
    lane: int,
) -> str:
    (sx, sy), (tx, ty) = positions[source], positions[target]
    start = (sx + BOX_W, sy + BOX_H / 2) if tx > sx else (sx, sy + BOX_H / 2)
    end = (tx, ty + BOX_H / 2) if tx > sx else (tx + BOX_W, ty + BOX_H / 2)
    if tx == sx:  # same column: go round the right-hand side
        start, end = (sx + BOX_W, sy + BOX_H / 2), (tx + BOX_W, ty + BOX_H / 2)
        bend = sx + BOX_W + 24 + 22 * lane  # each arrow its own lane, so none hides another
        path = f"M{start[0]},{start[1]} C{bend},{start[1]} {bend},{end[1]} {end[0]},{end[1]}"
        mid = (bend, (start[1] + end[1]) / 2)
    else:
        path = f"M{start[0]},{start[1]} L{end[0]},{end[1]}"
        mid = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 - 4)
    return f'<path d="{path}" class="{kind}" marker-end="url(#arrow)"/>' + (
        f'<text x="{mid[0]}" y="{mid[1]}" class="edge-label">{escape(label)}</text>'
        if label
        else ""
    )
