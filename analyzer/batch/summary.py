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
        lines.append(f"| {_md(s.get('capture'))} | {s.get('packets', 0)} | {s.get('flows', 0)} | "
                     f"{_md(', '.join(s.get('countries') or []))} | {s.get('violations', 0)} | "
                     + " | ".join(str(f.get(k, 0)) for k in SEVERITIES) + " |")
    if summary.get("failures"):
        lines += ["", "## Failures", "", "| capture | error |", "| --- | --- |"]
        lines += [f"| {_md(f.get('capture'))} | {_md(f.get('error'))} |" for f in summary["failures"]]
    return "\n".join(lines) + "\n"


def _table(head: list[str], rows: list[list[Any]]) -> str:
    e = html.escape
    out = ["<table><thead><tr>", *(f"<th>{e(str(h))}</th>" for h in head), "</tr></thead><tbody>"]
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{e('' if v is None else str(v))}</td>" for v in r) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def to_html(summary: dict[str, Any]) -> str:
    """The summary as one self-contained HTML page (no scripts, no external resources)."""
    e = html.escape
    t = summary.get("totals", {})
    apps = [[a, summary.get("sessions_per_app", {}).get(a, 0), ", ".join(c)]
            for a, c in summary.get("countries_per_app", {}).items()]
    sessions = [[s.get("capture"), s.get("packets", 0), s.get("flows", 0), ", ".join(s.get("countries") or []),
                 s.get("violations", 0), *((s.get("findings") or {}).get(k, 0) for k in SEVERITIES)]
                for s in summary.get("sessions", [])]
    fails = [[f.get("capture"), f.get("error")] for f in summary.get("failures", [])]
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        "<title>confscope batch summary</title><style>body{font-family:sans-serif;margin:2em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.2em .5em}"
        "th{background:#eee}</style></head><body>",
        "<h1>confscope batch summary</h1>",
        f"<p>{e(str(t.get('captures', 0)))} captures: {e(str(t.get('analysed', 0)))} analysed, "
        f"{e(str(t.get('failed', 0)))} failed, {e(str(t.get('with_violations', 0)))} with policy violations.</p>",
        "<h2>Countries per app</h2>", _table(["app", "sessions", "countries"], apps),
        "<h2>Sessions</h2>", _table(["capture", "packets", "flows", "countries", "violations", *SEVERITIES], sessions),
    ]
    if fails:
        parts += ["<h2>Failures</h2>", _table(["capture", "error"], fails)]
    parts.append("</body></html>\n")
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
