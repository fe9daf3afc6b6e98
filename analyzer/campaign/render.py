"""campaign.md and campaign.html: the comparison for people.

The HTML is one offline page with inline SVG charts and no script: an app x country matrix per
role (share of the app's bytes in that role), the same matrix in small multiples per vantage,
country shares over dates per app, the consistency and diff tables, and a link to every
session's report. Labels come from manifests and captures: every one is escaped.
"""

from __future__ import annotations

import html
import zlib
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pandas as pd

from analyzer.report.sanitize import human_bytes, md_escape, text

if TYPE_CHECKING:
    from analyzer.campaign.run import Campaign

ROLE_ORDER = ("media", "key_exchange", "signaling", "nat_traversal", "dns", "other")
MAX_COUNTRIES = 18
MAX_APPS = 15
# Colour-blind-safe palette (Okabe-Ito plus greys) for countries in stacked bars.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000", "#999999",
           "#7f3c8d", "#11a579", "#3969ac", "#f2b701", "#e73f74", "#80ba5a")


def _e(v: Any) -> str:
    return html.escape(text(v), quote=True)


def _colours(routes: pd.DataFrame) -> dict[str, str]:
    """One colour per country for the whole page, the biggest countries first (distinct colours
    for the first len(PALETTE); a hash of the code beyond)."""
    order = list(routes.groupby("country")["bytes"].sum().sort_values(ascending=False).index) if len(routes) else []
    return {str(c): PALETTE[i] if i < len(PALETTE) else PALETTE[zlib.crc32(str(c).encode()) % len(PALETTE)]
            for i, c in enumerate(order)}


def _roles(df: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(df["role"])) if len(df) else []
    return [r for r in ROLE_ORDER if r in present] + sorted(r for r in present if r not in ROLE_ORDER)


def _matrix(routes: pd.DataFrame, role: str, title: str, cell: int = 34, compact: bool = False) -> str:
    """Heat map: rows apps, columns countries, shade = share of the app's bytes in this role."""
    part = routes[routes["role"] == role]
    if part.empty:
        return ""
    m = part.groupby(["app", "country"])["bytes"].sum().unstack(fill_value=0)
    sessions = part.groupby(["app", "country"])["sessions"].sum().unstack(fill_value=0)
    apps = list(m.sum(axis=1).sort_values(ascending=False).index[:MAX_APPS])
    countries = list(m.sum(axis=0).sort_values(ascending=False).index[:MAX_COUNTRIES])
    share = m.div(m.sum(axis=1).where(lambda s: s > 0), axis=0).fillna(0)
    left, top = (70, 40) if compact else (110, 46)
    w, h = left + cell * len(countries) + 10, top + cell * len(apps) + 10
    out = [f'<svg class="matrix" data-role="{_e(role)}" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
           f'aria-label="{_e(title)}"><text x="0" y="14" class="lb">{_e(title)}</text>']
    for j, c in enumerate(countries):
        x = left + j * cell + cell / 2
        out.append(f'<text x="{x:.0f}" y="{top - 6}" text-anchor="middle">{_e(c)}</text>')
    for i, a in enumerate(apps):
        y = top + i * cell
        out.append(f'<text x="{left - 6}" y="{y + cell / 2 + 4:.0f}" text-anchor="end">{_e(a)}</text>')
        for j, c in enumerate(countries):
            s = float(share.at[a, c]) if c in share.columns else 0.0
            n = int(sessions.at[a, c]) if c in sessions.columns else 0
            if s <= 0 and n == 0:
                fill = "#f3f5f8"
            else:
                # Light to dark blue by share; even a trace stays visible.
                t = 0.15 + 0.85 * s
                fill = f"rgb({int(235 - 200 * t)},{int(243 - 150 * t)},{int(252 - 70 * t)})"
            x = left + j * cell
            tip = f"{a} {role} {c}: {s:.1%} of bytes, {n} session(s)"
            out.append(f'<rect class="cell" x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" fill="{fill}">'
                       f'<title>{_e(tip)}</title></rect>')
            if s > 0 and not compact:
                colour = "#fff" if s > 0.5 else "#1d2125"
                out.append(f'<text x="{x + cell / 2 - 1:.0f}" y="{y + cell / 2 + 4:.0f}" text-anchor="middle" '
                           f'style="fill:{colour};font-size:10px">{s * 100:.0f}</text>')
    out.append("</svg>")
    return "".join(out)


def _over_dates(routes: pd.DataFrame, app: str, role: str, colours: dict[str, str]) -> str:
    """Stacked columns per date: each country's share of the app's bytes in one role."""
    part = routes[(routes["app"] == app) & (routes["role"] == role)]
    if part.empty or part["date"].nunique() < 2:
        return ""
    m = part.groupby(["date", "country"])["bytes"].sum().unstack(fill_value=0).sort_index()
    share = m.div(m.sum(axis=1).where(lambda s: s > 0), axis=0).fillna(0)
    countries = list(m.sum(axis=0).sort_values(ascending=False).index[:MAX_COUNTRIES])
    n = len(share.index)
    # Many dates: narrower columns (the chart stays about 1000 px wide) and every k-th date named.
    col = max(6, min(46, 860 // n - 4))
    gap = 14 if col == 46 else max(2, col // 4)
    every = max(1, -(-n * 70 // 860))
    top, plot_h, left = 30, 160, 40
    w = left + (col + gap) * n + 120
    h = top + plot_h + 40
    title = f"{app}: {role.replace('_', ' ')}"
    out = [f'<svg class="dates" data-app="{_e(app)}" data-role="{_e(role)}" viewBox="0 0 {w} {h}" width="{w}" '
           f'height="{h}" role="img" aria-label="{_e(title)}: country share of bytes per date">'
           f'<text x="0" y="16" class="lb">{_e(title)}</text>']
    for i, d in enumerate(share.index):
        x = left + i * (col + gap)
        y = top + plot_h
        for c in countries:
            s = float(share.at[d, c])
            if s <= 0:
                continue
            hh = s * plot_h
            y -= hh
            fill = colours.get(str(c), "#999")
            out.append(f'<rect x="{x}" y="{y:.1f}" width="{col}" height="{hh:.1f}" fill="{fill}">'
                       f'<title>{_e(f"{d} {c}: {s:.1%}")}</title></rect>')
        if i % every == 0:
            out.append(f'<text x="{x + col / 2}" y="{top + plot_h + 16}" text-anchor="middle" '
                       f'style="font-size:10px">{_e(d)}</text>')
    lx = left + (col + gap) * len(share.index) + 6
    for k, c in enumerate(countries):
        y = top + 12 + 16 * k
        out.append(f'<rect x="{lx}" y="{y - 9}" width="10" height="10" fill="{colours.get(str(c), "#999")}"/>'
                   f'<text x="{lx + 14}" y="{y}">{_e(c)}</text>')
    out.append("</svg>")
    return "".join(out)


def _table(df: pd.DataFrame, cols: list[str], table_id: str, links: dict[str, str] | None = None,
           limit: int | None = None) -> str:
    rows = df if limit is None else df.head(limit)
    out = [f'<div class="wrap"><table id="{_e(table_id)}"><thead><tr>',
           *(f"<th>{_e(c)}</th>" for c in cols), "</tr></thead><tbody>"]
    for rec in rows[cols].itertuples(index=False, name=None):
        cells = []
        for c, v in zip(cols, rec, strict=True):
            shown = _value(v)
            if links and c in links and isinstance(v, str):
                href = rec[cols.index(links[c])] if links[c] in cols else None
                if href:
                    shown = f'<a href="{_e(quote(str(href)))}">{shown}</a>'
            num = isinstance(v, int | float) and not isinstance(v, bool)
            cells.append(f'<td class="n">{shown}</td>' if num else f"<td>{shown}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    if limit is not None and len(df) > limit:
        out.append(f'<p class="note">{len(df) - limit} more rows in the Parquet table.</p>')
    return "".join(out)


def _value(v: Any) -> str:
    if isinstance(v, float):
        return _e(f"{v:.1%}") if 0 <= v <= 1 else _e(f"{v:,.1f}")
    if isinstance(v, dict):
        return _e(", ".join(f"{k} {x}" for k, x in v.items()))
    if isinstance(v, list | tuple):
        return _e(", ".join(text(x) for x in v))
    return _e(v)


STYLE = """
:root{--fg:#1d2125;--mut:#5f6b76;--bd:#d9dee3;--bg:#fff;--alt:#f7f9fa}
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;color:var(--fg);background:var(--bg);
margin:0 auto;max-width:1280px;padding:16px 24px}h1{font-size:22px;margin:8px 0}
h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid var(--bd)}h3{font-size:14px;margin:14px 0 4px}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{border:1px solid var(--bd);border-radius:6px;padding:8px 12px;
min-width:140px}.card b{display:block;font-size:18px}.card span{color:var(--mut)}
table{border-collapse:collapse;width:100%;margin:6px 0}th,td{border:1px solid var(--bd);padding:3px 6px;
text-align:left;vertical-align:top}th{background:#eef1f4}tbody tr:nth-child(even){background:var(--alt)}
td.n{text-align:right;font-variant-numeric:tabular-nums}.wrap{overflow-x:auto}.note{color:var(--mut);font-size:13px}
.multiples{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}.panel{border:1px solid var(--bd);
border-radius:6px;padding:6px}svg text{font:11px system-ui,sans-serif;fill:#1d2125}svg .lb{font-weight:600}
svg{max-width:100%;height:auto}.bad{color:#a50026;font-weight:600}.ok{color:#1a7f37}
"""


def to_html(c: Campaign) -> str:
    """The campaign as one self-contained page (no script, no external resource)."""
    routes = c.fine.get("routes", pd.DataFrame())
    sessions = c.sessions
    n_incons = len(c.inconsistent)
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>confscope campaign</title><style>{STYLE}</style></head><body>",
        "<h1>confscope campaign</h1>",
        '<div class="cards">',
        f'<div class="card"><b>{len(sessions)}</b><span>sessions</span></div>',
        *(f'<div class="card"><b>{sessions[k].nunique() if len(sessions) else 0}</b><span>{_e(k)}s</span></div>'
          for k in ("app", "vantage", "date")),
        f'<div class="card"><b class="{"bad" if n_incons else "ok"}">{n_incons}</b>'
        "<span>inconsistent app/vantage/role</span></div>",
        f'<div class="card"><b>{len(c.failures)}</b><span>unreadable reports</span></div></div>',
        f'<p class="note">Grouped by {_e(", ".join(c.by))}. Only traffic to public remote addresses counts; '
        "a country is where the location databases put the remote address.</p>",
    ]
    if len(routes):
        parts.append("<h2>Where each app's traffic went, per role</h2>"
                     '<p class="note">Cell: share of the app\'s bytes in that role (percent); hover for sessions.</p>'
                     '<div class="multiples" id="role-matrices">')
        parts += [f'<div class="panel">{_matrix(routes, r, r.replace("_", " "))}</div>' for r in _roles(routes)]
        parts.append("</div>")
        vantages = sorted(set(routes["vantage"]))
        parts.append("<h2>Per vantage</h2><p class=\"note\">The same matrix (all roles together) for each vantage."
                     '</p><div class="multiples" id="vantage-multiples">')
        for v in vantages:
            sub = routes[routes["vantage"] == v].assign(role="all")
            parts.append(f'<div class="panel">{_matrix(sub, "all", f"vantage {v}", cell=24, compact=True)}</div>')
        parts.append("</div>")
        dated = [a for a in sorted(set(routes["app"])) if routes[routes["app"] == a]["date"].nunique() > 1]
        if dated:
            parts.append('<h2>Changes over dates</h2><p class="note">Per app and role: each country\'s share of '
                         'the bytes, date by date.</p><div class="multiples" id="date-charts">')
            colours = _colours(routes)
            for a in dated:
                for r in _roles(routes[routes["app"] == a]):
                    chart = _over_dates(routes, a, r, colours)
                    if chart:
                        parts.append(f'<div class="panel">{chart}</div>')
            parts.append("</div>")
    parts.append("<h2>Consistency</h2>")
    if len(c.inconsistent):
        parts.append('<p class="note">Calls of the same app from the same vantage whose traffic in a role reached '
                     "different sets of countries.</p>")
        parts.append(_table(c.inconsistent, ["app", "vantage", "role", "sessions", "routes", "always", "sometimes"],
                            "consistency"))
    else:
        parts.append('<p class="ok">Every app reached the same countries from each vantage, role by role.</p>')
    if len(c.diff) or c.meta.get("diff"):
        parts.append("<h2>Diff</h2>")
        parts.append(_table(c.diff, ["dimension", "a", "b", "app", "kind", "role", "item", "change", "sessions_a",
                                     "sessions_b"], "diff") if len(c.diff) else '<p class="note">No change.</p>')
    parts.append("<h2>Countries</h2>")
    parts.append(_table(c.countries, [*c.by, "role", "country", "share", "bytes", "sessions"], "countries",
                        limit=500))
    parts.append("<h2>Key exchange</h2>")
    parts.append(_table(c.key_exchange, [*c.by, "country", "location_confidence", "sessions", "hostnames"],
                        "key-exchange", limit=500))
    parts.append("<h2>Media paths</h2>")
    parts.append(_table(c.media, [*c.by, "protocol", "country", "asn", "org", "sessions", "streams", "ecb_like"],
                        "media", limit=500))
    parts.append("<h2>Findings</h2>")
    parts.append(_table(c.findings, [*c.by, "code", "severity", "sessions"], "findings", limit=500))
    parts.append("<h2>Sessions</h2>")
    extra = [k for k in sessions.columns if k not in ("session", "capture", "report", "inferred", "packets", "bytes")]
    parts.append(_table(sessions, ["session", *extra, "packets", "report"], "sessions", links={"session": "report"}))
    if len(c.failures):
        parts.append("<h2>Unreadable reports</h2>" + _table(c.failures, ["session", "report", "error"], "failures"))
    parts.append("</body></html>\n")
    return "".join(parts)


def _md_table(df: pd.DataFrame, cols: list[str], limit: int = 200) -> list[str]:
    lines = ["| " + " | ".join(md_escape(c) for c in cols) + " |", "|" + " --- |" * len(cols)]
    for rec in df[cols].head(limit).itertuples(index=False, name=None):
        lines.append("| " + " | ".join(md_escape(_plain(v)) for v in rec) + " |")
    if len(df) > limit:
        lines.append(f"\n{len(df) - limit} more rows in the Parquet table.")
    return lines


def _plain(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.1%}" if 0 <= v <= 1 else f"{v:,.1f}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {x}" for k, x in v.items())
    if isinstance(v, list | tuple):
        return ", ".join(text(x) for x in v)
    return text(v)


def to_markdown(c: Campaign) -> str:
    s = c.sessions
    lines = ["# confscope campaign", "",
             f"{len(s)} sessions, grouped by {md_escape(', '.join(c.by))}; "
             f"{len(c.inconsistent)} app/vantage/role groups reached different countries; "
             f"{len(c.failures)} unreadable reports.", ""]
    lines += ["## Countries", "", *_md_table(c.countries, [*c.by, "role", "country", "share", "bytes", "sessions"])]
    lines += ["", "## Key exchange", "",
              *_md_table(c.key_exchange, [*c.by, "country", "location_confidence", "sessions"])]
    lines += ["", "## Media paths", "", *_md_table(c.media, [*c.by, "protocol", "country", "asn", "sessions"])]
    lines += ["", "## Findings", "", *_md_table(c.findings, [*c.by, "code", "severity", "sessions"])]
    lines += ["", "## Consistency", ""]
    if len(c.inconsistent):
        lines += _md_table(c.inconsistent, ["app", "vantage", "role", "sessions", "always", "sometimes"])
    else:
        lines.append("Every app reached the same countries from each vantage, role by role.")
    if len(c.diff):
        lines += ["", "## Diff", "", *_md_table(c.diff, ["dimension", "a", "b", "app", "kind", "role", "item",
                                                          "change"])]
    lines += ["", "## Sessions", "", "| session | app | vantage | date | packets | bytes |",
              "| --- | --- | --- | --- | ---: | ---: |"]
    for r in s.head(2000).itertuples(index=False):
        d = r._asdict()
        lines.append(f"| [{md_escape(d['session'])}]({quote(str(d['report']))}) | {md_escape(d['app'])} | "
                     f"{md_escape(d['vantage'])} | {md_escape(d['date'])} | {d['packets']} | "
                     f"{human_bytes(d['bytes'])} |")
    return "\n".join(lines) + "\n"
