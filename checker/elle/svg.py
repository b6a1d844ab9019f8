"""A small SVG drawing of one cycle, for reports: transactions on a circle, typed arrows.

Self-contained text (no scripts, no external fonts), so a report can inline
it. Each arrow is labelled with its type and key; rw edges are dashed (the
anti-dependencies are what weaker models allow), real-time and process edges
dotted.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

_COLORS = {"ww": "#1f77b4", "wr": "#2ca02c", "rw": "#d62728", "process": "#7f7f7f",
           "realtime": "#9467bd"}
_DASH = {"rw": "6,4", "process": "2,3", "realtime": "2,3"}


def cycle_svg(cycle: dict[str, Any], size: int = 320) -> str:
    """SVG text drawing a cycle from its evidence (``{"type", "cycle", "steps"}``)."""
    steps = cycle.get("steps") or []
    nodes = [step["from"] for step in steps]
    n = max(len(nodes), 1)
    center = size / 2
    radius = size / 2 - 48 if n > 1 else 0
    where = {}
    for i, node in enumerate(nodes):
        angle = -math.pi / 2 + 2 * math.pi * i / n
        where[node] = (center + radius * math.cos(angle), center + radius * math.sin(angle))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size + 24}" '
        f'viewBox="0 0 {size} {size + 24}" font-family="sans-serif" font-size="11">',
        f"<title>{escape(str(cycle.get('type', 'cycle')))}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="context-stroke"/></marker></defs>',
    ]
    node_r = 17
    for step in steps:
        (x1, y1), (x2, y2) = where[step["from"]], where[step["to"]]
        dx, dy = x2 - x1, y2 - y1
        length = math.hypot(dx, dy) or 1.0
        ux, uy = dx / length, dy / length
        # bend each arrow a little outward so opposite edges do not overlap
        mx, my = (x1 + x2) / 2 - uy * 14, (y1 + y2) / 2 + ux * 14
        sx, sy = x1 + ux * node_r, y1 + uy * node_r
        ex, ey = x2 - ux * node_r, y2 - uy * node_r
        kind = str(step.get("type"))
        color = _COLORS.get(kind, "#000")
        dash = f' stroke-dasharray="{_DASH[kind]}"' if kind in _DASH else ""
        label = kind + (f" {step['key']}" if "key" in step else "")
        parts.append(
            f'<path d="M{sx:.1f},{sy:.1f} Q{mx:.1f},{my:.1f} {ex:.1f},{ey:.1f}" fill="none" '
            f'stroke="{color}" stroke-width="1.6"{dash} marker-end="url(#arrow)">'
            f"<title>{escape(str(step.get('explanation', '')))}</title></path>")
        parts.append(f'<text x="{mx:.1f}" y="{my:.1f}" fill="{color}" text-anchor="middle">'
                     f"{escape(label)}</text>")
    for node, (x, y) in where.items():
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{node_r}" fill="#fff" '
                     'stroke="#333"/>')
        parts.append(f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle">T{node}</text>')
    parts.append(f'<text x="{center:.1f}" y="{size + 16}" text-anchor="middle" '
                 f'font-weight="bold">{escape(str(cycle.get("type", "")))}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


__all__ = ["cycle_svg"]
