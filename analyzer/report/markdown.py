"""report.md: the session's story in GitHub-flavoured Markdown, fit for an issue or an appendix.

Every value that reaches the page goes through `md_escape`, so a hostile hostname cannot become a
link, an image, raw HTML or a broken table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from analyzer.common.words import capture_time, plural
from analyzer.report import common
from analyzer.report.sanitize import human_bytes, md_escape, text, to_plain

MAX_FLOW_ROWS = 200


def _ident(value: Any) -> str:
    """Identifiers (flow ids, ports, AS numbers) print without thousands separators."""
    v = to_plain(value)
    if isinstance(v, int | float) and not isinstance(v, bool) and float(v).is_integer():
        return str(int(v))
    return md_escape(v)


def _num(value: Any) -> str:
    v = to_plain(value)
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.3f}".rstrip("0").rstrip(".")
    return md_escape(v)


def _list(value: Any) -> str:
    v = to_plain(value)
    if isinstance(v, list):
        return ", ".join(md_escape(x) for x in v)
    return md_escape(v)


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], right: Sequence[int] = ()) -> list[str]:
    align = ["---:" if i in right else "---" for i in range(len(headers))]
    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    out.extend("| " + " | ".join(cell or " " for cell in row) + " |" for row in rows)
    return [*out, ""]


def _summary(report: dict[str, Any]) -> list[str]:
    cap = report.get("capture") or {}
    vantage = report.get("vantage") or {}
    apps = ", ".join(f"{md_escape(a.get('app'))} ({human_bytes(a.get('bytes'))})" for a in report.get("apps") or [])
    countries = [str(c.get("country")) for c in report.get("countries") or []]
    kx_countries = sorted(
        {common.located(k.get("country"), k.get("location_confidence")) for k in report.get("key_exchange") or []}
        - {""}
    )
    lines = [
        f"- **Capture:** {md_escape(common.title(report))} ({md_escape(cap.get('format'))}), "
        f"{_num(cap.get('packets'))} packets, {human_bytes(cap.get('bytes'))}, "
        f"{md_escape(capture_time(cap))}",
        f"- **Flows:** {_num(len(report.get('flows') or []))}; **apps:** {apps or 'none'}",
        f"- **Remote countries:** {md_escape(', '.join(countries)) or 'none'}",
        f"- **Key exchange handled in:** {md_escape(', '.join(kx_countries)) or 'no key exchange seen'}",
        f"- **Vantage:** {md_escape(common.vantage_text(report))} "
        f"(source: {md_escape(vantage.get('source')) or 'n/a'}; public IPs: "
        f"{_list(vantage.get('public_ips')) or 'none'})",
    ]
    if "meetings" in report:
        meetings = report["meetings"]
        n = len(meetings) if isinstance(meetings, list) else meetings
        lines.append(f"- **Meetings:** {_num(n)}")
    policy = report.get("policy") or {}
    allowed = policy.get("allowed_countries")
    n_viol = len(common.violations(report))
    if allowed is None:
        lines.append("- **Policy:** none given")
    else:
        lines.append(f"- **Policy:** allowed {_list(allowed) or 'nothing'}; **{plural(n_viol, 'violation')}**")
    return [*lines, ""]


def _findings(report: dict[str, Any]) -> list[str]:
    items = common.sorted_findings(report)
    if not items:
        return ["No findings.", ""]
    rows = [
        (
            f"**{md_escape(str(f.get('severity', '')).upper())}**",
            f"`{text(f.get('code')).replace('`', '')}`" if f.get("code") else "",
            md_escape(f.get("title")),
            md_escape(f.get("detail")),
            md_escape(f.get("confidence")),
            _list(f.get("flow_ids")),
        )
        for f in items
    ]
    return _table(("severity", "code", "title", "detail", "confidence", "flows"), rows)


def _endpoints(report: dict[str, Any]) -> list[str]:
    items = common.endpoints(report)
    if not items:
        return ["No public remote addresses.", ""]
    rows = [
        (
            md_escape(e.get("ip")),
            md_escape(e.get("country")),
            f"**{md_escape(e.get('confidence'))}**" if e.get("confidence") == "contested" else md_escape(
                e.get("confidence")),
            md_escape(common.evidence_text(e)),
            md_escape(common.contest_text(e)),
            md_escape(e.get("registered_country")),
            f"AS{_ident(e.get('asn'))} {md_escape(e.get('org'))}" if e.get("asn") is not None else "",
            _list((to_plain(e.get("hostnames")) or [])[:3]),
            _num(e.get("min_rtt_ms")),
            "yes" if e.get("anycast") else "",
        )
        for e in items
    ]
    headers = ("address", "country", "confidence", "evidence", "competing answers / contradiction", "registered",
               "ASN", "hostnames", "min RTT ms", "anycast")
    return _table(headers, rows, (8,))


def _countries(report: dict[str, Any]) -> list[str]:
    items = report.get("countries") or []
    if not items:
        return ["No remote countries.", ""]
    roles = common.role_columns(report)
    headers = ["country", "flows", "packets", "bytes", *[common.ROLE_LABELS.get(r, r) for r in roles]]
    rows = []
    for c in items:
        # Exact bytes here (pipelines diff this file); human units are in the HTML chart.
        by_role = c.get("bytes_by_role") or {}
        rows.append(
            [
                md_escape(c.get("country")),
                _num(c.get("flows")),
                _num(c.get("packets")),
                _num(c.get("bytes")),
                *[
                    common.SHARED_MARK if common.role_cell(c, r) == common.SHARED_MARK else _num(by_role.get(r, 0))
                    for r in roles
                ],
            ]
        )
    note = [common.SHARED_NOTE, ""] if common.has_shared(report) else []
    return _table([md_escape(h) for h in headers], rows, right=range(1, len(headers))) + note


def _key_exchange(report: dict[str, Any]) -> list[str]:
    items = report.get("key_exchange") or []
    if not items:
        return ["No key-exchange flows seen.", ""]
    rows = [
        (
            _ident(k.get("flow_id")),
            md_escape(k.get("app")),
            md_escape(k.get("protocol")),
            f"{md_escape(k.get('server_ip'))}:{_ident(k.get('server_port'))}",
            md_escape(k.get("hostname")),
            md_escape(common.located(k.get("country"), k.get("location_confidence"))),
            f"AS{_ident(k.get('asn'))}" if k.get("asn") is not None else "",
            md_escape(k.get("org")),
            md_escape(common.kx_text(k)),
        )
        for k in items
    ]
    return _table(("flow", "app", "protocol", "server", "hostname", "country", "ASN", "org", "key exchange"), rows,
                  (0,))


def _streams(report: dict[str, Any]) -> list[str]:
    """One row per media stream: frames, rates, loss, jitter (docs/media.md)."""
    rows = []
    for m in report.get("media") or []:
        for s in m.get("streams") or []:
            if not isinstance(s, dict):
                continue
            rate = _num(s.get("bitrate_bps")) if s.get("bitrate_bps") is not None else md_escape(s.get("rate_note"))
            rows.append((
                _ident(m.get("flow_id")), md_escape(s.get("media_type")), md_escape(s.get("ssrc")),
                md_escape(s.get("participant")), _num(s.get("packets")), _num(s.get("frames")),
                _num(s.get("frame_rate_fps")), rate, _num(s.get("lost")), _num(s.get("jitter_ms")),
                _num(s.get("frame_jitter_ms")), _num(s.get("clock_rate")), _num(s.get("rtcp_rtt_ms")),
            ))
    notes = (report.get("media_streams") or {}).get("notes") or []
    if not rows:
        return [*[f"- {md_escape(n)}" for n in notes], ""] if notes else []
    head = ("flow", "media", "ssrc", "participant", "packets", "frames", "fps", "bit/s", "lost", "jitter ms",
            "frame jitter ms", "clock Hz", "RTCP RTT ms")
    return [*_table(head, rows, (0, 4, 5, 6, 8, 9, 10, 11, 12)), *[f"- {md_escape(n)}" for n in notes],
            *([""] if notes else [])]


def _media(report: dict[str, Any]) -> list[str]:
    items = report.get("media") or []
    if not items:
        return ["No media flows seen.", ""]
    rows = []
    for m in items:
        streams = [s for s in m.get("streams") or [] if isinstance(s, dict)]
        desc = "; ".join(
            f"{md_escape(s.get('media_type'))} ssrc {md_escape(s.get('ssrc'))}: "
            f"{_num(s.get('packets'))} pkts, {human_bytes(s.get('bytes'))}"
            for s in streams
        )
        rows.append(
            (
                _ident(m.get("flow_id")),
                md_escape(m.get("app")),
                md_escape(m.get("protocol")),
                f"{md_escape(m.get('server_ip'))}:{_ident(m.get('server_port'))}",
                md_escape(m.get("country")),
                _num(m.get("packets")),
                _num(m.get("bytes")),
                desc,
            )
        )
    return _table(("flow", "app", "protocol", "server", "country", "packets", "bytes", "streams"), rows, (0, 5, 6))


def _violations(report: dict[str, Any]) -> list[str]:
    items = common.violations(report)
    if not items:
        return ["No policy violations.", ""]
    rows = [
        (
            _ident(v.get("flow_id")),
            md_escape(common.ROLE_LABELS.get(str(v.get("role")), v.get("role"))),
            md_escape(v.get("country")),
            f"**{md_escape(str(v.get('severity', '')).upper())}**",
            md_escape(v.get("confidence")),
        )
        for v in items
    ]
    return _table(("flow", "role", "country", "severity", "confidence"), rows, (0,))


def _flow_bytes(flow: dict[str, Any]) -> int:
    return int((to_plain(flow.get("bytes_c2s")) or 0) + (to_plain(flow.get("bytes_s2c")) or 0))


def _flows(report: dict[str, Any]) -> list[str]:
    items = report.get("flows") or []
    if not items:
        return ["No flows.", ""]
    ranked = sorted(items, key=lambda f: -_flow_bytes(f))
    shown = ranked[:MAX_FLOW_ROWS]
    rows = [
        (
            _ident(f.get("flow_id")),
            md_escape(f.get("transport")),
            f"{md_escape(f.get('server_ip'))}:{_ident(f.get('server_port'))}",
            md_escape(f.get("hostname")),
            md_escape(f.get("app")),
            _list(f.get("roles")),
            md_escape(common.located(f.get("server_country"), f.get("server_country_confidence"))),
            _num(_flow_bytes(f)),
        )
        for f in shown
    ]
    headers = ("flow", "transport", "server", "hostname", "app", "roles", "country", "bytes")
    lines = _table(headers, rows, (0, 7))
    if len(items) > len(shown):
        note = f"The {len(shown)} largest of {len(items)} flows (all are in report.json and flows.csv)."
        lines[:0] = [note, ""]
    return lines


def _provenance(report: dict[str, Any]) -> list[str]:
    lines = [f"- {md_escape(label)}: {_list(value)}" for label, value in common.provenance_rows(report)]
    for db in common.geo_databases(report):
        extra = ", ".join(
            f"{md_escape(k)} {md_escape(db.get(k))}" for k in ("build_date", "sha256", "source") if db.get(k)
        )
        lines.append(f"- geo database: {md_escape(db.get('name'))} ({md_escape(db.get('type'))}; {extra})")
    return [*lines, ""]


def _warnings(report: dict[str, Any]) -> list[str]:
    items = (report.get("capture") or {}).get("warnings") or []
    items = list(items) + list(report.get("warnings") or [])
    if not items:
        return []
    return ["## Capture warnings", "", *[f"- {md_escape(w)}" for w in items], ""]


def to_markdown(report: dict[str, Any]) -> str:
    """The whole report as Markdown text."""
    lines: list[str] = [f"# confscope report: {md_escape(common.title(report))}", ""]
    lines += ["## Summary", "", *_summary(report)]
    lines += ["## Findings", "", *_findings(report)]
    lines += ["## Countries and roles (bytes, both directions)", "", *_countries(report)]
    lines += ["## Server locations (evidence and confidence)", "", *_endpoints(report)]
    lines += ["## Key-exchange endpoints", "", *_key_exchange(report)]
    lines += ["## Media flows", "", *_media(report)]
    streams = _streams(report)
    if streams:
        lines += ["## Media streams", "", *streams]
    lines += ["## Policy violations", "", *_violations(report)]
    lines += ["## Flows", "", *_flows(report)]
    lines += _warnings(report)
    lines += ["## Provenance", "", *_provenance(report)]
    lines += ["## Data attributions", ""]
    lines += [f"- {a}" for a in common.ATTRIBUTIONS]
    lines += [f"- [{common.DBIP_TEXT}]({common.DBIP_URL})", ""]
    return "\n".join(lines)
