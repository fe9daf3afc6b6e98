"""Inline SVG charts for report.html: bytes per country and role, and the flow timeline.

Pure functions from plain data to SVG text; no JavaScript is needed to see them. Every label that
can come from a capture is escaped with html.escape(quote=True).
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

import pandas as pd

from analyzer.common.words import human_duration
from analyzer.report import common
from analyzer.report.sanitize import human_bytes, text, to_plain, visible

MAX_BAR_ROWS = 25
MAX_TIMELINE_ROWS = 150


def _e(value: Any) -> str:
    return escape(visible(value), quote=True)


def legend(roles: list[str], x: float, y: float) -> str:
    parts: list[str] = []
    for role in roles:
        label = common.ROLE_LABELS.get(role, role)
        parts.append(
            f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="12" height="12" fill="{common.role_colour(role)}"/>'
            f'<text x="{x + 16:.1f}" y="{y + 1:.1f}" class="lg">{_e(label)}</text>'
        )
        x += 24 + 7.5 * len(label)
    return "".join(parts)


def country_role_bars(report: dict[str, Any], width: int = 900) -> str:
    """Horizontal stacked bars: one per remote country, one segment per role, scaled to bytes."""
    countries = [c for c in report.get("countries") or [] if isinstance(c, dict)]
    countries.sort(key=lambda c: -(to_plain(c.get("bytes")) or 0))
    if len(countries) > MAX_BAR_ROWS:
        rest = countries[MAX_BAR_ROWS - 1 :]
        merged: dict[str, int] = {}
        for c in rest:
            for role, b in (c.get("bytes_by_role") or {}).items():
                merged[role] = merged.get(role, 0) + (to_plain(b) or 0)
        other = {"country": f"{len(rest)} others", "bytes": sum(to_plain(c.get("bytes")) or 0 for c in rest)}
        countries = [*countries[: MAX_BAR_ROWS - 1], {**other, "bytes_by_role": merged}]
    roles = common.role_columns(report)
    row_h, top, left, right = 24, 34, 110, 110
    height = top + row_h * max(len(countries), 1) + 10
    plot_w = width - left - right
    peak = max((to_plain(c.get("bytes")) or 0 for c in countries), default=0) or 1
    out = [
        f'<svg id="country-chart" class="chart" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="Bytes per remote country and role">',
        legend(roles, left, 16),
    ]
    if not countries:
        out.append(f'<text x="{left}" y="{top + 16}" class="lg">No remote countries.</text>')
    for i, c in enumerate(countries):
        y = top + i * row_h
        cc = text(c.get("country"))
        by_role = c.get("bytes_by_role") or {}
        out.append(
            f'<g class="bar" data-country="{_e(cc)}"><text x="{left - 8}" y="{y + 15}" '
            f'text-anchor="end" class="lb">{_e(cc)}</text>'
        )
        x = float(left)
        for role in roles:
            b = to_plain(by_role.get(role)) or 0
            if b <= 0:
                continue
            w = max(plot_w * b / peak, 1.0)
            out.append(
                f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
                f'fill="{common.role_colour(role)}"><title>{_e(cc)} '
                f"{_e(common.ROLE_LABELS.get(role, role))}: {_e(human_bytes(b))}</title></rect>"
            )
            x += w
        out.append(
            f'<text x="{x + 6:.1f}" y="{y + 15}" class="lg">{_e(human_bytes(c.get("bytes")))}</text></g>'
        )
    out.append("</svg>")
    return "".join(out)


def _ticks(span: float) -> list[float]:
    """About six round tick positions over [0, span] seconds."""
    if span <= 0:
        return [0.0]
    raw = span / 6
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    n = int(span // step)
    return [i * step for i in range(n + 1)]


def _segment_layout(
    segments: list[tuple[float, float]], plot_w: float, gap_px: float = 46.0
) -> list[tuple[float, float, float, float]]:
    """(start_ts, end_ts, x, width) per period: each gets a share of the width by its duration,
    at least half an equal share so a short period stays readable beside a long one."""
    n = len(segments)
    usable = plot_w - gap_px * (n - 1)
    spans = [max(e - s, 1e-3) for s, e in segments]
    total = sum(spans)
    shares = [max(sp / total, 1 / (2 * n)) if n > 1 else 1.0 for sp in spans]
    norm = sum(shares)
    out, x = [], 0.0
    for (s, e), share in zip(segments, shares, strict=True):
        w = usable * share / norm
        out.append((s, e, x, w))
        x += w + gap_px
    return out


def flow_timeline(
    flows: pd.DataFrame, width: int = 1100, segments: list[dict[str, Any]] | None = None
) -> str:
    """One bar per flow from its first to its last packet, coloured by its main role.

    `segments` (the report's capture.time_segments) splits the time axis into periods when the
    capture joins traffic separated by long gaps, so a 2019 call and a 2023 call both stay
    readable instead of one collapsing into a sliver. Only the largest flows are drawn when there
    are many; the flow table lists them all.
    """
    if flows is None or len(flows) == 0 or "first_ts" not in flows or "last_ts" not in flows:
        return '<p class="note">No flows to draw.</p>'
    df = flows.copy()
    total = df.get("bytes_c2s", 0) + df.get("bytes_s2c", 0)
    df["_bytes"] = pd.to_numeric(total, errors="coerce").fillna(0)
    df = df[pd.to_numeric(df["first_ts"], errors="coerce").notna()]
    note = ""
    if len(df) > MAX_TIMELINE_ROWS:
        note = f'<p class="note">The {MAX_TIMELINE_ROWS} largest of {len(df)} flows are drawn.</p>'
        df = df.nlargest(MAX_TIMELINE_ROWS, "_bytes")
    df = df.sort_values(["first_ts", "flow_id"] if "flow_id" in df else ["first_ts"])
    t0 = float(df["first_ts"].min())
    t1 = float(pd.to_numeric(df["last_ts"], errors="coerce").fillna(df["first_ts"]).max())
    periods = sorted(
        (float(to_plain(g.get("start_ts"))), float(to_plain(g.get("end_ts"))))
        for g in segments or []
        if isinstance(g, dict) and isinstance(to_plain(g.get("start_ts")), int | float)
        and isinstance(to_plain(g.get("end_ts")), int | float)
    ) or [(t0, t1)]
    row_h, top, left, right = 14, 60 if len(periods) > 1 else 44, 300, 20
    plot_w = width - left - right
    height = top + row_h * len(df) + 10
    layout = _segment_layout(periods, plot_w)
    roles = [r for r in common.ROLES if r != "other"] + ["other"]
    out = [
        f'<svg id="timeline" class="chart" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="Flow timeline">',
        legend(roles, left, 14),
    ]

    def place(ts: float) -> tuple[float, float, float, float]:
        for seg in layout:
            if seg[0] - 1.0 <= ts <= seg[1] + 1.0:
                return seg
        return min(layout, key=lambda seg: abs(seg[0] - ts))

    for i, (s0, s1, sx, sw) in enumerate(layout):
        span = max(s1 - s0, 1e-3)
        x0 = left + sx
        if len(layout) > 1:
            when = pd.Timestamp(s0, unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M") + " UTC"
            if i:  # the silence before this period, drawn as a break in the axis
                when += f" (after {human_duration(s0 - layout[i - 1][1])} without traffic)"
                gx = x0 - 23
                out.append(
                    f'<g class="gap"><line x1="{gx - 4:.1f}" y1="{top - 6}" x2="{gx + 4:.1f}" y2="{height - 6}" '
                    'class="grid"/></g>'
                )
            out.append(
                f'<text x="{x0:.1f}" y="{top - 26}" class="lg lb segment" data-segment="{i}">{_e(when)}</text>'
            )
        ticks = _ticks(span)
        step = max(1, math.ceil(len(ticks) * 40 / max(sw, 1)))  # keep tick labels from overlapping
        for t in ticks[::step]:
            x = x0 + sw * t / span
            out.append(
                f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{height - 6}" class="grid"/>'
                f'<text x="{x:.1f}" y="{top - 9}" text-anchor="middle" class="lg">{t:g} s</text>'
            )
    for i, rec in enumerate(df.to_dict("records")):
        y = top + i * row_h
        first = float(rec["first_ts"])
        end_v = to_plain(rec.get("last_ts"))
        last = float(end_v) if end_v is not None else first
        s0, s1, sx, sw = place(first)
        span = max(s1 - s0, 1e-3)
        start, end = first - s0, last - s0
        x = left + sx + sw * min(max(start, 0.0), span) / span
        w = max(sw * (min(end, span) - max(start, 0.0)) / span, 2.0)
        role = common.primary_role(rec.get("roles"))
        server = f"{text(rec.get('server_ip'))}:{text(rec.get('server_port'))}"
        host = text(rec.get("hostname"))
        label = f"#{text(rec.get('flow_id'))} {host or server}"
        if len(label) > 44:
            label = label[:43] + "…"
        tip = (
            f"flow {text(rec.get('flow_id'))} {text(rec.get('transport'))} {server} {host} "
            f"{text(rec.get('app'))} [{', '.join(text(r) for r in to_plain(rec.get('roles')) or [])}] "
            f"{text(rec.get('server_country'))} {human_bytes(rec.get('_bytes'))} "
            f"{start:.3f}-{end:.3f} s"
        )
        out.append(
            f'<g class="tl"><text x="{left - 6}" y="{y + 10}" text-anchor="end" class="tlb">'
            f"{_e(label)}</text>"
            f'<rect x="{x:.1f}" y="{y + 2}" width="{w:.1f}" height="{row_h - 4}" rx="2" '
            f'fill="{common.role_colour(role)}"><title>{_e(tip)}</title></rect></g>'
        )
    out.append("</svg>")
    return note + "".join(out)


MAX_STREAM_CHARTS = 40
JITTER_MARK_MS = 30.0  # seconds whose jitter exceeds this are marked (a noticeable delay variation)


def _polyline(xs: list[float], ys: list[float | None], cls: str) -> str:
    """Polyline segments through the points that have a value (a gap breaks the line). The first
    and last seconds of a stream are partial, so the segments to them are drawn dotted."""
    if len(xs) > 2:
        edge = (f"{cls} edge")
        return (_polyline_plain(xs[:2], ys[:2], edge) + _polyline_plain(xs[1:-1], ys[1:-1], cls)
                + _polyline_plain(xs[-2:], ys[-2:], edge))
    return _polyline_plain(xs, ys, f"{cls} edge")


def _polyline_plain(xs: list[float], ys: list[float | None], cls: str) -> str:
    segs, cur = [], []
    for x, y in zip(xs, ys, strict=True):
        if y is None:
            if cur:
                segs.append(cur)
            cur = []
            continue
        cur.append(f"{x:.1f},{y:.1f}")
    if cur:
        segs.append(cur)
    return "".join(f'<polyline class="{cls}" points="{" ".join(s)}"/>' for s in segs)


def _rate(v: float) -> str:
    for unit, div in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if v >= div:
            return f"{v / div:.1f} {unit}"
    return f"{v:.0f} bit/s"


def stream_chart(stream: dict[str, Any], width: int = 420, height: int = 120) -> str:
    """A small chart of one stream's per-second series (the report's `series`): bitrate (solid)
    and frame rate (dashed) over time, seconds with loss marked by red triangles at the top and
    seconds with jitter above JITTER_MARK_MS by purple dots at the bottom."""
    ser = stream.get("series") or {}
    t = [to_plain(x) for x in ser.get("t_s") or []]
    sid = _e(stream.get("stream_id"))
    label = f"{text(stream.get('media_type'))} ssrc {text(stream.get('ssrc'))}"
    head = (f'<svg class="chart stream-chart" data-stream-id="{sid}" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" role="img" aria-label="{_e("Stream " + label + " over time")}">')
    if not t:
        return head + f'<text x="8" y="20" class="lg">No per-second data for {_e(label)}.</text></svg>'
    left, right, top, bottom = 8, 8, 30, 18
    pw, ph = width - left - right, height - top - bottom
    t0, t1 = min(t), max(t)
    span = max(t1 - t0, 1)

    def x_of(v: float) -> float:
        return left + pw * (v - t0) / span if t1 > t0 else left + pw / 2

    def scaled(values: list[Any]) -> tuple[list[float | None], float]:
        nums = [to_plain(v) for v in values]
        peak = max((float(v) for v in nums if isinstance(v, int | float)), default=0.0) or 1.0
        # 15% headroom, so a steady stream's line does not sit on the frame
        return [None if not isinstance(v, int | float) else top + ph - ph * float(v) / (1.15 * peak)
                for v in nums], peak

    xs = [x_of(v) for v in t]
    br, br_peak = scaled(ser.get("bitrate_bps") or [None] * len(t))
    fr, fr_peak = scaled(ser.get("frame_rate_fps") or [None] * len(t))
    out = [head, f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="plot"/>',
           _polyline(xs, br, "br"), _polyline(xs, fr, "fr")]
    for x, lost, tt in zip(xs, ser.get("lost") or [], t, strict=False):
        if isinstance(lost, int) and lost > 0:
            out.append(f'<polygon class="loss" points="{x - 4:.1f},{top - 8} {x + 4:.1f},{top - 8} {x:.1f},{top}">'
                       f"<title>t={_e(tt)} s: {_e(lost)} packet(s) lost</title></polygon>")
    for x, j, tt in zip(xs, ser.get("jitter_ms") or [], t, strict=False):
        if isinstance(j, int | float) and j > JITTER_MARK_MS:
            out.append(f'<circle class="jit" cx="{x:.1f}" cy="{top + ph + 6}" r="3">'
                       f"<title>t={_e(tt)} s: jitter {j:.1f} ms</title></circle>")
    out.append(f'<text x="{left + 2}" y="{top - 14}" class="lg">{_e(label)}: peak {_e(_rate(br_peak))}, '
               f"{fr_peak:.0f} fps</text>")
    out.append(f'<text x="{left}" y="{height - 2}" class="lg">{_e(t0)} s</text>'
               f'<text x="{width - right}" y="{height - 2}" text-anchor="end" class="lg">{_e(t1)} s</text>')
    out.append("</svg>")
    return "".join(out)
