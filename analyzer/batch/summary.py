"""The summary of a batch across captures: summary.json, summary.md and summary.html.

Capture names, paths and error messages may come from hostile files: Markdown cells are
escaped and every string in the HTML goes through html.escape; the HTML has no scripts and no
external resources.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from analyzer.batch.dataset import SEVERITIES


def _md(text: Any) -> str:
    s = "" if text is None else str(text)
    s = "".join(ch if ch.isprintable() else " " for ch in s)
    for ch in "\\`*_{}[]<>()#+!|":
        s = s.replace(ch, "\\" + ch)
    return s


def to_markdown(summary: dict[str, Any]) -> str:
    """The summary as Markdown.

    >>> print(to_markdown({"totals": {"captures": 0}, "sessions": [], "failures": []}).splitlines()[0])
    # confscope batch summary
    """
    t = summary.get("totals", {})
    lines = ["# confscope batch summary", ""]
    lines.append(f"{t.get('captures', 0)} captures: {t.get('analysed', 0)} analysed, {t.get('failed', 0)} failed, "
                 f"{t.get('with_violations', 0)} with policy violations.")
    lines += ["", "## Countries per app", "", "| app | sessions | countries |", "| --- | ---: | --- |"]
    for app, ccs in summary.get("countries_per_app", {}).items():
        n = summary.get("sessions_per_app", {}).get(app, 0)
        lines.append(f"| {_md(app)} | {n} | {_md(', '.join(ccs))} |")
    lines += ["", "## Sessions", "", "| capture | packets | flows | countries | violations | "
              + " | ".join(SEVERITIES) + " |", "| --- | ---: | ---: | --- | ---: |" + " ---: |" * len(SEVERITIES)]
    for s in summary.get("sessions", []):
        f = s.get("findings") or {}
        links = s.get("reports") or {}
        target = links.get("md") or links.get("html") or links.get("json")
        name = f"[{_md(s.get('capture'))}]({quote(target)})" if target else _md(s.get("capture"))
        lines.append(f"| {name} | {s.get('packets', 0)} | {s.get('flows', 0)} | "
                     f"{_md(', '.join(s.get('countries') or []))} | {s.get('violations', 0)} | "
                     + " | ".join(str(f.get(k, 0)) for k in SEVERITIES) + " |")
    if summary.get("failures"):
        lines += ["", "## Failures", "", "| capture | error |", "| --- | --- |"]
        lines += [f"| {_md(f.get('capture'))} | {_md(f.get('error'))} |" for f in summary["failures"]]
    return "\n".join(lines) + "\n"


STYLE = (
    ":root{--fg:#1d2330;--muted:#5b6475;--line:#dde2ea;--bg:#f6f8fb;--accent:#2457c5;--bad:#b42318;--ok:#137333}"
    "*{box-sizing:border-box}body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:var(--fg);"
    "background:var(--bg);margin:0;padding:2rem}main{max-width:1100px;margin:auto}"
    "h1{font-size:1.6rem;margin:0 0 .3rem}h2{font-size:1.15rem;margin:2rem 0 .6rem}"
    ".cards{display:flex;gap:.8rem;flex-wrap:wrap;margin:1rem 0}.card{background:#fff;border:1px solid var(--line);"
    "border-radius:8px;padding:.7rem 1rem;min-width:8rem}.card b{display:block;font-size:1.5rem}"
    ".card.bad b{color:var(--bad)}.card.ok b{color:var(--ok)}"
    "table{border-collapse:collapse;width:100%;background:#fff;border:1px solid var(--line);border-radius:8px}"
    "td,th{padding:.35rem .6rem;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}"
    "th{background:#eef2f8;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}"
    "tr:hover td{background:#f9fbff}a{color:var(--accent)}.muted{color:var(--muted)}"
    ".tag{display:inline-block;border-radius:4px;padding:0 .35rem;margin:0 .15rem .1rem 0;background:#e8eefc}"
    ".viol{color:var(--bad);font-weight:600}"
)


def _cell(v: Any) -> str:
    if isinstance(v, _Raw):
        return f"<td>{v.html}</td>"
    cls = ' class="n"' if isinstance(v, int | float) and not isinstance(v, bool) else ""
    return f"<td{cls}>{html.escape('' if v is None else str(v))}</td>"


class _Raw:
    """Markup built here from escaped parts (never captured text as is)."""

    def __init__(self, markup: str) -> None:
        self.html = markup


def _table(head: list[str], rows: list[list[Any]]) -> str:
    e = html.escape
    out = ["<table><thead><tr>", *(f"<th>{e(str(h))}</th>" for h in head), "</tr></thead><tbody>"]
    out += ["<tr>" + "".join(_cell(v) for v in r) + "</tr>" for r in rows]
    out.append("</tbody></table>")
    return "".join(out)


def _link(href: str, label: Any) -> str:
    # Report paths are <capture folder>/<file>, relative to the summary; quoted, then escaped.
    return f'<a href="{html.escape(quote(href), quote=True)}">{html.escape(str(label))}</a>'


def _tags(values: Any) -> _Raw:
    return _Raw("".join(f'<span class="tag">{html.escape(str(v))}</span>' for v in values or []))


def to_html(summary: dict[str, Any]) -> str:
    """The summary as one self-contained, styled HTML page linking to each capture's reports
    (no scripts, no external resources)."""
    e = html.escape
    t = summary.get("totals", {})
    apps = [[a, summary.get("sessions_per_app", {}).get(a, 0), _tags(c)]
            for a, c in summary.get("countries_per_app", {}).items()]
    sessions = []
    for s in summary.get("sessions", []):
        links = s.get("reports") or {}
        main = links.get("html") or links.get("json")
        name = _Raw(_link(main, s.get("capture")) if main else e(str(s.get("capture"))))
        others = _Raw(" ".join(_link(h, fmt) for fmt, h in links.items()))
        viol = s.get("violations", 0)
        sessions.append([name, _tags(s.get("apps")), s.get("packets", 0), s.get("flows", 0),
                         _tags(s.get("countries")), _Raw(f'<span class="viol">{int(viol)}</span>') if viol else 0,
                         *((s.get("findings") or {}).get(k, 0) for k in SEVERITIES),
                         "yes" if s.get("skipped") else "", others])
    fails = [[f.get("capture"), f.get("path"), f.get("error")] for f in summary.get("failures", [])]

    def card(label: str, value: Any, cls: str = "") -> str:
        return f'<div class="card {cls}"><b>{e(str(value))}</b>{e(label)}</div>'

    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">",
        f"<title>confscope batch summary</title><style>{STYLE}</style></head><body><main>",
        "<h1>confscope batch summary</h1>",
        f"<p class=\"muted\">{e(str(t.get('captures', 0)))} captures, {e(str(t.get('packets', 0)))} packets.</p>",
        '<div class="cards">', card("analysed", t.get("analysed", 0), "ok"),
        card("failed", t.get("failed", 0), "bad" if t.get("failed") else ""),
        card("with policy violations", t.get("with_violations", 0), "bad" if t.get("with_violations") else ""),
        "</div>",
        "<h2>Countries per app</h2>", _table(["app", "sessions", "countries"], apps),
        "<h2>Sessions</h2>",
        _table(["capture", "apps", "packets", "flows", "countries", "violations", *SEVERITIES, "resumed", "reports"],
               sessions),
    ]
    if fails:
        parts += ["<h2>Failures</h2>", _table(["capture", "path", "error"], fails)]
    parts.append("</main></body></html>\n")
    return "".join(parts)


def write_summary(summary: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write summary.json, summary.md and summary.html into `out`."""
    out = Path(out)
    written = {}
    for name, text in (("json", json.dumps(summary, indent=1, sort_keys=False, default=str)),
                       ("md", to_markdown(summary)), ("html", to_html(summary))):
        path = out / f"summary.{name}"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        written[name] = path
    return written
