"""Small SVG drawings rendered on the server side.

The pictures that explain a failure (the failing window, the sequence of
messages) are drawn here as inline SVG, so they show even with JavaScript off
and the tests can read them as text. Only the big zoomable plots use canvas.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from reports.model import NS_PER_S, Fault, LinStep, Op, fmt_tick, fmt_time, fmt_value, writes_value

RESULT_FILL = {"ok": "#8fd19e", "fail": "#f4a6a6", "info": "#ffd27f", "pending": "#d0d0d0"}
FAULT_FILL = {"partition": "#c7b8ea", "kill": "#f7b2b2", "pause": "#b2d7f7", "clock": "#f7e3b2"}
ROLE_STROKE = {"failed": "#c0002a", "missed": "#0057d9", "source": "#c76a00",
               "witness": "#0057d9"}


def _x(t: float, lo: int, hi: int, left: float, width: float) -> float:
    return left + (t - lo) / max(hi - lo, 1) * width


def _short(op: Op) -> str:
    key = "" if op.key is None else f" {op.key}"
    if op.is_read:
        return f"read{key} → {fmt_value(op.out)}" if op.result == "ok" else f"read{key}"
    if op.f == "cas":
        value = op.value if isinstance(op.value, list | tuple) and len(op.value) == 2 else None
        if value is not None:
            return f"cas{key} {fmt_value(value[0])}→{fmt_value(value[1])}"
    return f"{op.f}{key} {fmt_value(writes_value(op))}"


def _ticks(lo: int, hi: int, count: int = 6) -> list[float]:
    span = max(hi - lo, 1) / NS_PER_S
    raw = span / count
    step = min((s for s in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5,
                            10, 20, 30, 60, 120, 300) if s >= raw), default=600)
    first = int(lo / NS_PER_S / step + 0.999) * step
    ticks = []
    t = first
    while t * NS_PER_S <= hi:
        ticks.append(t)
        t += step
    return ticks


@dataclass
class Marked:
    op: Op
    role: str | None = None  # failed | missed | source | None


ROLE_TAG = {"failed": "✗ FAILING", "missed": "MISSED WRITE", "source": "VALUE'S WRITER",
            "witness": "SAW NEWER"}


def window_svg(
    ops: Sequence[Marked], faults: Sequence[Fault], window: tuple[int, int],
    steps: Sequence[LinStep] = (), run_end: int | None = None, title: str = "",
    first_step: int = 1,
) -> Markup:
    """Ops of a time window, one row per op (so labels never collide), faults shaded.

    Rows are in invocation order; the left column names the op (process, what it
    did, node) and its role. ``steps`` (the linearization prefix) are drawn as
    numbered diamonds at linearization points on their bars.
    """
    lo, hi = window
    left, width, row = 360.0, 620.0, 26
    # fault labels go in rows above the ops, a new row when one would overlap the last
    shaded = []
    row_ends: list[float] = []
    for fault in faults:
        end = fault.end if fault.end is not None else (run_end or hi)
        x0 = max(_x(fault.start, lo, hi, left, width), left)
        x1 = min(_x(end, lo, hi, left, width), left + width)
        if x1 <= x0:
            continue
        label_row = next((i for i, e in enumerate(row_ends) if e <= x0), len(row_ends))
        label_end = x0 + 6.5 * len(fault.label) + 12
        if label_row == len(row_ends):
            row_ends.append(label_end)
        else:
            row_ends[label_row] = label_end
        shaded.append((fault, x0, x1, label_row))
    top = 26 + 14 * max(len(row_ends), 1)
    height = top + row * len(ops) + 34
    out = [f'<svg class="window" viewBox="0 0 1000 {height}" width="1000" height="{height}" '
           f'role="img" aria-label="{escape(title or "operations around the failure")}">']
    for fault, x0, x1, label_row in shaded:
        fill = FAULT_FILL.get(fault.kind, "#ddd")
        band_top = 12 + 14 * label_row
        out.append(f'<rect class="fault" x="{x0:.1f}" y="{band_top}" width="{x1 - x0:.1f}" '
                   f'height="{height - band_top - 30}" fill="{fill}" fill-opacity="0.45"/>')
        out.append(f'<text class="fault-label" x="{x0 + 4:.1f}" y="{band_top + 11}">'
                   f'{escape(fault.label)}</text>')
    row_of = {}
    for i, marked in enumerate(ops):
        op = marked.op
        row_of[op.id] = i
        y = top + i * row
        if i % 2:
            out.append(f'<rect x="0" y="{y}" width="1000" height="{row}" fill="#000" '
                       f'fill-opacity="0.035"/>')
        end = op.end if op.end is not None else (run_end or hi)
        x0 = max(_x(op.start, lo, hi, left, width), left - 4)
        x1 = min(max(_x(end, lo, hi, left, width), x0 + 4), left + width + 6)
        stroke = ROLE_STROKE.get(marked.role or "", "#555")
        stroke_width = 3 if marked.role else 1
        node = f" @{op.node}" if op.node is not None else ""
        tip = (f"{op.describe()}\nnode {op.node}\ninvoked {fmt_time(op.start)}, "
               f"returned {fmt_time(op.end)}")
        role_class = f" role-{marked.role}" if marked.role else ""
        tag = ""
        if marked.role:
            tag = (f'<tspan class="role-tag" fill="{stroke}">{ROLE_TAG[marked.role]}</tspan> ')
        weight = ' font-weight="700"' if marked.role else ""
        if op.start < lo:  # clipped: say when it really began
            out.append(f'<text class="tick" x="{left - 2}" y="{y + row - 9}" '
                       f'text-anchor="end">◂ {fmt_tick(op.start / NS_PER_S)}</text>')
        out.append(
            f'<g class="op{role_class}" data-op="{op.id}"><title>{escape(tip)}</title>'
            f'<text x="6" y="{y + row - 9}"{weight}>{tag}p{escape(str(op.process))} '
            f'{escape(_short(op))}{escape(node)}</text>'
            f'<rect x="{x0:.1f}" y="{y + 4}" width="{x1 - x0:.1f}" height="{row - 8}" rx="3" '
            f'fill="{RESULT_FILL[op.result]}" stroke="{stroke}" stroke-width="{stroke_width}"/>'
            f'</g>'
        )
    for number, step in enumerate(steps, first_step):
        if step.op.id not in row_of or not lo <= step.point <= hi:
            continue
        x = _x(step.point, lo, hi, left, width)
        y = top + row_of[step.op.id] * row + 4
        out.append(f'<g class="lin-point"><title>linearization step {number}: '
                   f'{escape(_short(step.op))}; state after: {escape(fmt_value(step.state))}'
                   f'</title><path d="M{x:.1f},{y + 2} l6,7 l-6,7 l-6,-7 z" fill="#111"/>'
                   f'<text x="{x + 7:.1f}" y="{y + 13}" class="step">{number}</text></g>')
    axis_y = top + row * len(ops) + 4
    out.append(f'<line x1="{left}" x2="{left + width}" y1="{axis_y}" y2="{axis_y}" '
               f'stroke="#888"/>')
    for t in _ticks(lo, hi):
        x = _x(t * NS_PER_S, lo, hi, left, width)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{axis_y}" y2="{axis_y + 5}" '
                   f'stroke="#888"/><text class="tick" x="{x:.1f}" y="{axis_y + 18}" '
                   f'text-anchor="middle">{fmt_tick(t)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def sequence_svg(messages: Sequence[dict[str, Any]], nodes: Sequence[str],
                 marks: Sequence[tuple[int, str, str]] = ()) -> tuple[Markup, Markup]:
    """A sequence diagram: one column per node, time downwards, one arrow per message.

    ``marks`` are (time ns, label, colour) horizontal rules, e.g. the failing op.
    Returns (header, body): the node names stay visible above the scrolled body.
    """
    if not messages:
        return Markup(""), Markup("")
    nodes = list(nodes)
    column = {n: i for i, n in enumerate(nodes)}
    left, gap, row, top = 90.0, max(min(860.0 / max(len(nodes) - 1, 1), 220.0), 120.0), 15, 30
    width = int(left + gap * (len(nodes) - 1) + 80)
    events = sorted([(m["time"], "msg", m) for m in messages]
                    + [(t, "mark", (label, colour)) for t, label, colour in marks],
                    key=lambda e: (e[0], e[1] != "mark"))
    height = top + row * len(events) + 20
    top = 8
    height = top + row * len(events) + 20
    header = [f'<svg class="sequence-head" viewBox="0 0 {width} 22" width="{width}" height="22">']
    out = [f'<svg class="sequence" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img" aria-label="messages between nodes">']
    for node, i in column.items():
        x = left + gap * i
        header.append(f'<text class="node" x="{x}" y="16" text-anchor="middle">'
                      f'{escape(node)}</text>')
        out.append(f'<line x1="{x}" x2="{x}" y1="0" y2="{height}" stroke="#bbb"/>')
    header.append("</svg>")
    for number, (time, kind, payload) in enumerate(events):
        y = top + number * row + 8
        out.append(f'<text class="tick" x="4" y="{y + 4}">{fmt_tick(time / NS_PER_S)}</text>')
        if kind == "mark":
            label, colour = payload
            out.append(f'<line x1="{left - 10}" x2="{width - 10}" y1="{y}" y2="{y}" '
                       f'stroke="{colour}" stroke-dasharray="4 3"/><text x="{left}" '
                       f'y="{y - 3}" class="mark" fill="{colour}">{escape(label)}</text>')
            continue
        message = payload
        src, dst = str(message.get("from")), str(message.get("to"))
        if src not in column or dst not in column:
            continue
        x0, x1 = left + gap * column[src], left + gap * column[dst]
        action = message.get("action", "deliver")
        colour = {"drop": "#c0002a", "duplicate": "#7a3fd1", "delay": "#c76a00"}.get(
            action, "#333")
        dash = ' stroke-dasharray="5 3"' if action == "drop" else ""
        direction = 1 if x1 > x0 else -1
        tip = (f"{message.get('type')} {src}→{dst} term {message.get('term')} "
               f"({action}) at {time / NS_PER_S:.6f} s")
        label = f"{message.get('type')} t{message.get('term')}"
        if action != "deliver":
            label += f" [{action}]"
        end = x1 if action != "drop" else (x0 + x1) / 2
        out.append(f'<g class="msg msg-{escape(action)}"><title>{escape(tip)}</title>'
                   f'<line x1="{x0}" x2="{end}" y1="{y}" y2="{y + 4}" stroke="{colour}"'
                   f'{dash}/>')
        if action == "drop":
            out.append(f'<text x="{end}" y="{y + 8}" fill="{colour}" text-anchor="middle">✕'
                       f'</text>')
        else:
            out.append(f'<path d="M{x1},{y + 4} l{-8 * direction},-4 l0,7 z" '
                       f'fill="{colour}"/>')
        out.append(f'<text class="msg-label" x="{(x0 + end) / 2}" y="{y - 2}" '
                   f'text-anchor="middle" fill="{colour}">{escape(label)}</text></g>')
    out.append("</svg>")
    return Markup("".join(header)), Markup("".join(out))
