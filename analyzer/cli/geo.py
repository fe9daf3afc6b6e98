"""`confscope geo IP...`: look addresses up and render them as a table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

from analyzer.errors import OptionError
from analyzer.geo.resolver import GeoResolver, GeoResult
from analyzer.report.sanitize import csv_cell, visible

FORMATS = ("table", "json", "csv")
COLUMNS = ("ip", "country", "registered_country", "asn", "org", "scope", "sources")
_HEADERS = {"registered_country": "registered"}


def _row(r: GeoResult) -> dict[str, Any]:
    return {
        "ip": r.ip,
        "country": r.country,
        "registered_country": r.registered_country,
        "asn": r.asn,
        "org": r.org,
        "scope": r.scope,
        "sources": list(r.sources),
    }


def _text(value: Any) -> str:
    # Database strings (org names come from registrants) are hostile text like captured strings.
    if value is None:
        return "-"
    if isinstance(value, list):
        return visible(",".join(value)) or "-"
    return visible(value)


def render_table(rows: Iterable[dict[str, Any]]) -> str:
    """Plain aligned text; a "!" after the country marks databases that disagree."""
    cells = [[_HEADERS.get(c, c) for c in COLUMNS]]
    for row in rows:
        line = [_text(row[c]) for c in COLUMNS]
        if row.get("_disagreement"):
            line[1] += "!"
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    lines = ("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells)
    return "\n".join(lines) + "\n"


def render_csv(rows: Iterable[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for row in rows:
        w.writerow([csv_cell("" if row[c] is None else ";".join(row[c]) if isinstance(row[c], list) else row[c])
                    for c in COLUMNS])
    return buf.getvalue()


def run_geo(ips: list[str], fmt: str = "table", geoip: list[str] | None = None,
            resolver: GeoResolver | None = None) -> str:
    """Rendered lookups of `ips` in `fmt` ("table", "json" or "csv"), using --geoip databases first.

    JSON is a list of objects with keys ip, country, registered_country, asn, org, scope, sources.
    """
    if fmt not in FORMATS:
        raise OptionError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    own = resolver is None
    res = resolver if resolver is not None else GeoResolver(user_paths=geoip or ())
    try:
        results = [res.lookup(ip) for ip in ips]
    finally:
        if own:
            res.close()
    rows = [_row(r) for r in results]
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    if fmt == "csv":
        return render_csv(rows)
    for row, r in zip(rows, results, strict=True):
        row["_disagreement"] = r.disagreement
    return render_table(rows)
