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
