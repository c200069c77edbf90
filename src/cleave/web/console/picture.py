"""The topology as a picture: units as frames, services inside, port calls as solid arrows
(labelled gRPC when they cross units) and events as dashed ones, each service a link to its page.

Laid out by Graphviz's `dot` when the machine has it (units as clusters, each label placed
where no other lies, scaled to the page); otherwise drawn by hand, in one row of units, with a
note saying how to get the laid-out one.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape, unescape
from typing import Literal

import structlog

from cleave.config import SystemConfig
from cleave.service import Service

log = structlog.get_logger("cleave.web.console.picture")

BOX_W, BOX_H, GAP, FRAME_PAD, UNIT_GAP = 150, 34, 18, 16, 60
DOT_TIMEOUT_SECONDS = 10.0
# About the console's column in a 1280-pixel window (1232 px), in dot's points (3/4 px).
FIT_WIDTH_PT = 900.0
SERVICE_PAGE = "/console/services/{}"
NO_GRAPHVIZ = (
    "<p class=note id=topology-note>Install Graphviz (<code>apt-get install graphviz</code>) "
    "for a laid-out picture.</p>"
)
# Both pictures' colours: dot's as attributes, the hand-drawn one's in the stylesheet.
CALL_COLOUR, EVENT_COLOUR, UNIT_FILL, UNIT_LINE = "#2a5bd7", "#b06d00", "#eef2fb", "#9aa9cf"

# The picture's rules in the console's stylesheet: the hand-drawn one styled by class, dot's
# coloured by dot itself; either scaled down to its container, its aspect kept.
TOPOLOGY_STYLE = f"""
svg.topology{{background:white;border:1px solid #e3e6ee;border-radius:8px;max-width:100%;
height:auto}} svg.laid-out a:hover path{{stroke-width:2.5}}
svg.drawn .unit{{fill:{UNIT_FILL};stroke:{UNIT_LINE}}}
svg.drawn .unit-name{{font-size:12px;fill:#44507a}}
svg.drawn .service{{fill:white;stroke:{CALL_COLOUR}}}
svg.drawn .service-name{{text-anchor:middle;font-size:13px}}
svg.drawn .call{{stroke:{CALL_COLOUR};fill:none;stroke-width:1.5}}
svg.drawn .event{{stroke:{EVENT_COLOUR};fill:none;stroke-dasharray:5 4}}
svg.drawn .edge-label{{font-size:11px;fill:#555;text-anchor:middle}}
svg.drawn marker path{{fill:#555}} .note{{font-size:12px;color:#555}}
"""

# The SVG dot made for each DOT source (a topology, and which service is chosen): the topology
# does not change while the console runs.
_laid_out: dict[str, str] = {}


@dataclass(frozen=True)
class Edge:
    """One arrow of the picture: a call through a port, or an event from publisher to
    subscriber. `name` is the port's protocol or the event's type."""

    source: str
    target: str
    kind: Literal["call", "event"]
    name: str
    remote: bool  # across units: a call goes over gRPC, an event over the broker

    @property
    def label(self) -> str:
        if self.kind == "call":
            return f"{self.name} · gRPC" if self.remote else self.name
        return self.name.split(".", 2)[2]  # of <system>.<service>.<event>.<version>


def topology_edges(config: SystemConfig, services: Mapping[str, Service]) -> list[Edge]:
    """Every arrow of the picture: a service's declared `calls` to the service whose port
    provides that protocol, and each published event to every service subscribed to it."""
    layout = config.topology
    providers = {s.port.protocol: name for name, s in services.items() if s.port}
    edges: list[Edge] = []
    for name, service in services.items():
        for protocol in service.calls:
            if (target := providers.get(protocol)) is not None:
                remote = layout.unit_of(target) != layout.unit_of(name)
                edges.append(Edge(name, target, "call", protocol.__name__, remote))
        for sub in service.subscriptions:
            for publisher, candidate in services.items():
                if sub.event in candidate.publishes:
                    remote = layout.unit_of(publisher) != layout.unit_of(name)
                    edges.append(Edge(publisher, name, "event", sub.event.event_type, remote))
    return edges


async def topology_picture(
    config: SystemConfig, services: Mapping[str, Service], selected: str | None = None
) -> str:
    """The picture for the console's page (`selected` drawn stronger): dot's layout, or the
    hand-drawn one and a note saying how to get dot's."""
    if shutil.which("dot") is None:
        return topology_svg(config, services) + NO_GRAPHVIZ
    source = topology_dot(config, services, selected)
    if (svg := _laid_out.get(source)) is None:
        try:
            downwards = topology_dot(config, services, selected, rankdir="TB")
            svg = _inline(await _narrower(source, downwards), config.topology.name)
        except (OSError, RuntimeError, TimeoutError) as failed:
            log.warning("topology picture: dot failed, drawing it by hand", error=str(failed))
            return topology_svg(config, services)
        _laid_out[source] = svg
    return svg


async def _narrower(across: str, downwards: str) -> str:
    """dot's SVG of the graph drawn left to right (calls and events read like sentences) when
    that fits the page unscaled, else top to bottom if that is narrower: a long chain of
    services then grows down the page, which scrolls, rather than shrinking its words."""
    wide = await _run_dot(across)
    if _width(wide) <= FIT_WIDTH_PT:
        return wide
    tall = await _run_dot(downwards)
    return tall if _width(tall) < _width(wide) else wide


def _width(svg: str) -> float:
    found = _VIEW_BOX.search(svg)
    if found is None:
        raise RuntimeError("dot wrote no viewBox")
    return float(found.group(1))


def topology_dot(
    config: SystemConfig,
    services: Mapping[str, Service],
    selected: str | None = None,
    rankdir: Literal["LR", "TB"] = "LR",
) -> str:
    """The topology as a Graphviz digraph: each unit a cluster of its services (each a link to
    its page), calls solid and events dashed, every arrow labelled."""
    lines = [
        f"digraph {_quoted(config.topology.name)} {{",
        f"  graph [rankdir={rankdir}, newrank=true, nodesep=0.35, ranksep=0.9, pad=0.15, "
        'fontsize=12, fontname="Helvetica,Arial,sans-serif", fontcolor="#44507a"];',
        f'  node [shape=box, style="rounded,filled", fillcolor=white, color="{CALL_COLOUR}", '
        'fontname="Helvetica,Arial,sans-serif", fontsize=13, height=0.45, margin="0.2,0.08"];',
        '  edge [fontname="Helvetica,Arial,sans-serif", fontsize=11, arrowsize=0.7];',
    ]
    for unit, members in config.topology.units.items():
        lines.append(f"  subgraph {_quoted(f'cluster_{unit}')} {{")
        lines.append(
            f'    label={_quoted(f"unit {unit}")}; labeljust=l; style="rounded,filled"; '
            f'fillcolor="{UNIT_FILL}"; color="{UNIT_LINE}"; class="unit"; '
            f"id={_quoted(f'unit_{unit}')};"
        )
        for name in members:
            if name in services:
                strong = ', penwidth=3, fillcolor="#dfe8fb"' if name == selected else ""
                lines.append(
                    f"    {_quoted(name)} [id={_quoted(f'service_{name}')}, class=service, "
                    f"href={_quoted(SERVICE_PAGE.format(name))}, "
                    f"tooltip={_quoted(_tooltip(name, services[name]))}{strong}];"
                )
        lines.append("  }")
    for edge in topology_edges(config, services):
        style = (
            f'color="{CALL_COLOUR}", fontcolor="{CALL_COLOUR}", penwidth=1.4'
            if edge.kind == "call"
            else f'color="{EVENT_COLOUR}", fontcolor="#8a5600", style=dashed'
        )
        lines.append(
            f"  {_quoted(edge.source)} -> {_quoted(edge.target)} "
            f"[class={edge.kind}, label={_quoted(edge.label)}, {style}];"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _tooltip(name: str, service: Service) -> str:
    """A service's tooltip, which is also its link's accessible name: its name first."""
    return f"{name}: {service.description}" if service.description else name


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def _run_dot(source: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "dot",
        "-Tsvg",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(source.encode()), DOT_TIMEOUT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise TimeoutError(f"dot took longer than {DOT_TIMEOUT_SECONDS:.0f} s") from None
    if process.returncode != 0:
        raise RuntimeError(f"dot exited {process.returncode}: {err.decode(errors='replace')}")
    return out.decode()


_SVG_START = re.compile(r"<svg\b[^>]*>")
_VIEW_BOX = re.compile(r'viewBox="[-\d.]+ [-\d.]+ ([\d.]+) [\d.]+"')
_COMMENT = re.compile(r"<!--.*?-->\n?", re.DOTALL)
_SERVICE_NODE = re.compile(r'<g id="service_([^"]+)" class="node')


def _inline(svg: str, topology: str) -> str:
    """dot's SVG document as an element of the page: no XML prolog or comments, classed for
    the stylesheet (which scales it to its container by its viewBox), each service's group
    marked with `data-service` and its link one that assistive technology sees."""
    start = _SVG_START.search(svg)
    if start is None:
        raise RuntimeError("dot wrote no <svg> element")
    opening = start.group(0).removesuffix(">") + (
        f' class="topology laid-out" role="group" aria-label="topology {escape(topology)}">'
    )
    body = _SERVICE_NODE.sub(_mark_service, _COMMENT.sub("", svg[start.end() :]))
    # SVG 2's href, as the hand-drawn picture has: Chromium gives xlink:href no link role.
    return opening + body.replace("<a xlink:href=", "<a href=").strip()


def _mark_service(node: re.Match[str]) -> str:
    name = escape(unescape(node.group(1)))  # dot writes a name's "-" as "&#45;"
    return f'<g id="service_{node.group(1)}" data-service="{name}" class="node'


def topology_svg(config: SystemConfig, services: Mapping[str, Service]) -> str:
    """The picture drawn by hand, for a machine without Graphviz: units side by side."""
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
                f'<a href="{SERVICE_PAGE.format(escape(name))}">'
                f'<rect x="{x + FRAME_PAD}" y="{top}" width="{BOX_W}" height="{BOX_H}" rx="6" '
                f'class="service" data-service="{escape(name)}"/>'
                f'<text x="{x + FRAME_PAD + BOX_W / 2}" y="{top + 22}" class="service-name">'
                f"{escape(name)}</text></a>"
            )
        x += BOX_W + 2 * FRAME_PAD + UNIT_GAP
    edges = [
        _arrow(positions, edge.source, edge.target, _hand_label(edge), edge.kind, lane)
        for lane, edge in enumerate(topology_edges(config, services))
    ]
    canvas_width = x + 40 + 22 * len(edges)
    canvas_height = max((y for _, y in positions.values()), default=0.0) + BOX_H + 60
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{canvas_width}" '
        f'height="{canvas_height}" viewBox="0 0 {canvas_width} {canvas_height}" '
        f'class="topology drawn" role="group" aria-label="topology {escape(layout.name)}">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker>'
        "</defs>" + "".join(frames) + "".join(edges) + "</svg>"
    )


def _hand_label(edge: Edge) -> str:
    """The hand-drawn picture's short labels: gRPC on a call across units, an event's name."""
    if edge.kind == "call":
        return "gRPC" if edge.remote else ""
    return edge.name.split(".")[2]


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
