"""report.html: one self-contained page that needs no network to view.

No external URL is referenced (the only link is the DB-IP attribution the licence requires); CSS,
SVG and a small table-sorting script are inline. A Content-Security-Policy allows no fetches at
all and only the page's own script (by hash), so even a missed escape could not load or run
anything. Every captured string goes through html.escape(quote=True); the JSON copy of the report
embedded for scripts has `<`, `>`, `&`, U+2028 and U+2029 escaped so it cannot close its tag.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape
from typing import Any

import pandas as pd

from analyzer.common.words import capture_time, human_duration
from analyzer.report import common
from analyzer.report.jsonout import order_report
from analyzer.report.sanitize import human_bytes, json_for_script, strip_terminal, text, to_plain
from analyzer.report.svgcharts import (
    JITTER_MARK_MS,
    MAX_STREAM_CHARTS,
    country_role_bars,
    flow_timeline,
    stream_chart,
)
from analyzer.report.worldmap import map_legend, world_map

MAX_TABLE_ROWS = 5000

_CSS = """
:root{--fg:#1d2125;--mut:#5f6b76;--bd:#d7dde3;--bg:#fff;--alt:#f5f7f9}
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--fg);background:var(--bg);margin:0 auto;max-width:1280px;padding:16px 24px}
h1{font-size:22px;margin:8px 0}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid var(--bd)}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{border:1px solid var(--bd);border-radius:6px;
padding:8px 12px;min-width:150px}.card b{display:block;font-size:18px}.card span{color:var(--mut)}
table{border-collapse:collapse;width:100%;margin:6px 0}th,td{border:1px solid var(--bd);padding:3px 6px;
text-align:left;vertical-align:top}tbody tr:nth-child(even){background:var(--alt)}td.n,th.n{text-align:right}
td.n{white-space:nowrap}table.sortable th{cursor:pointer;user-select:none;background:#eef1f4}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
.wrap{overflow-x:auto}
.sev{display:inline-block;border-radius:4px;padding:0 6px;color:#fff;font-weight:600;font-size:12px}
.sev-critical{background:#a50026}.sev-high{background:#d73027}.sev-medium{background:#b8860b}
.sev-low{background:#4575b4}.sev-info{background:#777}.note{color:var(--mut);font-size:13px}
code,.mono,.ip{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.mono{overflow-wrap:anywhere}.ip{white-space:nowrap}td.org{min-width:7em}
@media (max-width:1150px){body{padding:12px}#flow-table{font-size:12.5px}#flow-table td,#flow-table th{padding:2px 4px}
#flow-table .ip,#flow-table .mono{font-size:11.5px}}.host{color:var(--mut)}
svg text{font:12px system-ui,sans-serif;fill:#1d2125}svg .tlb{font-size:10.5px}svg .lb{font-weight:600}
svg .grid{stroke:#e3e7eb}.map .sea{fill:#eef5fb}.map .grat{stroke:#dbe6f0;stroke-width:.6}
.map .land{fill:#dcdcdc;stroke:#fff;stroke-width:.5}.map .used{fill:#b9d3ea}
.map .kx{fill:#f4b183;stroke:#D55E00;stroke-width:1.2}.map .link{fill:none;stroke-width:1.3;opacity:.55}
.conf-contested{color:#b35900;font-weight:bold}.conf-confirmed{font-weight:bold}
.map .ep,.chart .ep{stroke:#fff;stroke-width:1.3;vector-effect:non-scaling-stroke}
.vantage{fill:#111;stroke:#fff;stroke-width:1;vector-effect:non-scaling-stroke}
.map .land,.map .link,.map .grat{vector-effect:non-scaling-stroke}
.land{fill:#dcdcdc;stroke:#fff;stroke-width:.5}.land.used{fill:#b9d3ea}.land.kx{fill:#f4b183;stroke:#D55E00;stroke-width:1.2}
svg{max-width:100%;height:auto}svg.map{width:100%}
.stream-grid{display:flex;flex-wrap:wrap;gap:10px}.stream-card{border:1px solid var(--bd);border-radius:6px;
padding:6px;width:440px}.stream-card .figs{font-size:12px;color:var(--mut);margin-bottom:4px}
svg .plot{fill:#fafbfc;stroke:#e3e7eb}svg .br{fill:none;stroke:#0072B2;stroke-width:1.6}
svg .fr{fill:none;stroke:#E69F00;stroke-width:1.4;stroke-dasharray:4 3}svg .loss{fill:#D55E00}
svg .jit{fill:#7B3294}svg .edge{stroke-dasharray:2 3;opacity:.6}svg.map{width:100%}
dl.prov{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px}
dl.prov dt{color:var(--mut)}dl.prov dd{margin:0}footer{margin-top:30px;color:var(--mut);font-size:12.5px}
"""

# Table sorting only; the page is complete without it. It also reads the embedded JSON so a
# broken escape would show up as a script error in the browser test.
_JS = """
(function(){
var el=document.getElementById('report-data'),data={};
try{data=JSON.parse(el.textContent);}catch(e){data={};}
var st=document.getElementById('js-status');
if(st&&data){st.textContent='Click a column heading to sort.';}
function key(td,num){var v=td.hasAttribute('data-v')?td.getAttribute('data-v'):td.textContent;
if(!num){return v;}var f=parseFloat(v);return isNaN(f)?-Infinity:f;}
var heads=document.querySelectorAll('table.sortable th');
Array.prototype.forEach.call(heads,function(th){th.addEventListener('click',function(){
var row=th.parentNode,table=row.parentNode.parentNode,body=table.tBodies[0];
var idx=Array.prototype.indexOf.call(row.children,th),num=th.classList.contains('n');
var asc=th.getAttribute('aria-sort')!=='ascending';
Array.prototype.forEach.call(row.children,function(h){h.removeAttribute('aria-sort');});
th.setAttribute('aria-sort',asc?'ascending':'descending');
var rows=Array.prototype.slice.call(body.rows);
rows.sort(function(a,b){var x=key(a.cells[idx],num),y=key(b.cells[idx],num);
var c=num?(x<y?-1:x>y?1:0):String(x).localeCompare(String(y));return asc?c:-c;});
rows.forEach(function(r){body.appendChild(r);});});});
})();
"""


def _e(value: Any) -> str:
    # Control and bidi characters would let a captured string disguise itself (U+202E flips the
    # text that follows), so they go before escaping, as in the terminal summary.
    return escape(strip_terminal(value), quote=True)


def _num_cell(value: Any, shown: str | None = None) -> str:
    v = to_plain(value)
    if isinstance(v, bool) or not isinstance(v, int | float):
        return f'<td class="n">{_e(v)}</td>'
    label = shown if shown is not None else (f"{v:,}" if isinstance(v, int) else f"{v:,.3f}")
    return f'<td class="n" data-v="{_e(v)}">{escape(label)}</td>'


def _table(table_id: str, headers: list[tuple[str, bool]], rows: list[str], sortable: bool = True) -> str:
    head = "".join(f'<th{" class=n" if num else ""}>{escape(h)}</th>' for h, num in headers)
    cls = ' class="sortable"' if sortable else ""
    return (
        f'<div class="wrap"><table id="{table_id}"{cls}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _sev(value: Any) -> str:
    sev = text(value).lower()
    cls = sev if sev in common.SEVERITY_ORDER else "info"
    return f'<span class="sev sev-{cls}">{_e(sev.upper())}</span>'


def _summary(report: dict[str, Any], flows: pd.DataFrame) -> str:
    cap = report.get("capture") or {}
    vantage = report.get("vantage") or {}
    countries = [text(c.get("country")) for c in report.get("countries") or []]
    kx = sorted(
        {common.located(k.get("country"), k.get("location_confidence")) for k in report.get("key_exchange") or []}
        - {""}
    )
    media = sorted({text(m.get("country")) for m in report.get("media") or []} - {""})
    policy = report.get("policy") or {}
    n_viol = len(common.violations(report))
    cards = [
        ("duration", capture_time(cap)),
        ("packets", f"{to_plain(cap.get('packets')) or 0:,}"),
        ("bytes", human_bytes(cap.get("bytes") or 0)),
        ("flows", f"{len(flows):,}"),
        ("remote countries", ", ".join(countries) or "none"),
        ("key exchange in", ", ".join(kx) or "not seen"),
        ("media via", ", ".join(media) or "not seen"),
        ("vantage", common.vantage_text(report) if vantage else "unknown"),
        ("apps", ", ".join(text(a.get("app")) for a in report.get("apps") or []) or "none"),
    ]
    if "meetings" in report:
        meetings = report["meetings"]
        cards.append(("meetings", text(len(meetings) if isinstance(meetings, list) else meetings)))
    if policy.get("allowed_countries") is not None:
        cards.append(("policy violations", str(n_viol)))
    body = "".join(f'<div class="card"><span>{escape(k)}</span><b>{_e(v)}</b></div>' for k, v in cards)
    return f'<section id="summary"><h2>Summary</h2><div class="cards">{body}</div></section>'


def _shared_note(report: dict[str, Any]) -> str:
    """Roles a country's flows carry without bytes of their own (see common.SHARED_NOTE): the bars
    show bytes, so the note names them, and the policy findings' roles all appear on the page."""
    roles = common.role_columns(report)
    shared = [
        f"{text(c.get('country'))}: {common.ROLE_LABELS.get(r, r)}"
        for c in report.get("countries") or []
        for r in roles
        if common.role_cell(c, r) == common.SHARED_MARK
    ]
    if not shared:
        return ""
    return f'<p class="note" id="shared-roles">{_e(common.SHARED_NOTE)} Shared: {_e("; ".join(shared))}.</p>'


def _findings(report: dict[str, Any]) -> str:
    items = common.sorted_findings(report)
    if not items:
        return '<section id="findings"><h2>Findings</h2><p>No findings.</p></section>'
    rows = [
        f"<tr><td>{_sev(f.get('severity'))}</td><td><code>{_e(f.get('code'))}</code></td>"
        f"<td>{_e(f.get('title'))}</td><td>{_e(f.get('detail'))}</td><td>{_e(f.get('confidence') or '')}</td>"
        f"<td class=mono>{_e(', '.join(text(x) for x in to_plain(f.get('flow_ids')) or []))}</td></tr>"
        for f in items
    ]
    table = _table(
        "findings-table",
        [("severity", False), ("code", False), ("title", False), ("detail", False), ("confidence", False),
         ("flows", False)],
        rows,
        sortable=False,
    )
    return f'<section id="findings"><h2>Findings</h2>{table}</section>'


def _violations(report: dict[str, Any]) -> str:
    policy = report.get("policy") or {}
    allowed = policy.get("allowed_countries")
    items = common.violations(report)
    head = "<h2>Geofence policy</h2>"
    if allowed is None:
        return f'<section id="policy">{head}<p>No policy was given.</p></section>'
    intro = f"<p>Allowed countries: <b>{_e(', '.join(text(a) for a in allowed)) or 'none'}</b>.</p>"
    if not items:
        return f'<section id="policy">{head}{intro}<p>No violations.</p></section>'
    rows = [
        f"<tr>{_num_cell(v.get('flow_id'))}"
        f"<td>{_e(common.ROLE_LABELS.get(text(v.get('role')), v.get('role')))}</td>"
        f"<td>{_e(v.get('country'))}</td><td>{_sev(v.get('severity'))}</td>"
        f"<td>{_e(v.get('confidence'))}</td></tr>"
        for v in items
    ]
    table = _table(
        "violations-table",
        [("flow", True), ("role", False), ("country", False), ("severity", False), ("confidence", False)],
        rows,
    )
    return f'<section id="policy">{head}{intro}{table}</section>'


def _key_exchange(report: dict[str, Any]) -> str:
    items = report.get("key_exchange") or []
    head = "<h2>Key-exchange endpoints</h2>"
    if not items:
        return f'<section id="key-exchange">{head}<p>No key-exchange flows seen.</p></section>'
    rows = [
        f"<tr>{_num_cell(k.get('flow_id'))}<td>{_e(k.get('app'))}</td><td>{_e(k.get('protocol'))}</td>"
        f"<td class=ip>{_e(k.get('server_ip'))}</td>"
        f"{_num_cell(k.get('server_port'), text(k.get('server_port')))}"
        f"<td class=mono>{_e(k.get('hostname'))}</td>"
        f"<td>{_e(common.located(k.get('country'), k.get('location_confidence')))}</td>"
        f"<td>{_e(('AS' + text(k.get('asn'))) if k.get('asn') is not None else '')}</td>"
        f"<td>{_e(k.get('org'))}</td><td>{_e(common.kx_text(k))}</td></tr>"
        for k in items
    ]
    headers = [("flow", True), ("app", False), ("protocol", False), ("server", False), ("port", True),
               ("hostname", False), ("country", False), ("ASN", False), ("org", False), ("key exchange", False)]
    return f'<section id="key-exchange">{head}{_table("kx-table", headers, rows)}</section>'


def _endpoints(report: dict[str, Any]) -> str:
    items = common.endpoints(report)
    head = "<h2>Server locations</h2>"
    if not items:
        return f'<section id="endpoints">{head}<p>No public remote addresses.</p></section>'
    intro = (
        "<p>Country of each remote address decided from evidence (location databases, registration, "
        "the server's own names, round-trip times, known anycast prefixes). Confidence: confirmed (two kinds "
        "agree), likely (one source), contested (sources disagree or an RTT rules the answer out), unknown.</p>"
    )
    rows = [
        f"<tr><td class=ip>{_e(e.get('ip'))}</td><td>{_e(e.get('country'))}</td>"
        f'<td class="conf conf-{_e(e.get("confidence"))}">{_e(e.get("confidence"))}</td>'
        f"<td>{_e(common.evidence_text(e))}</td><td>{_e(common.contest_text(e))}</td>"
        f"<td>{_e(e.get('registered_country'))}</td>"
        f"<td>{_e(('AS' + text(e.get('asn')) + ' ' + text(e.get('org'))) if e.get('asn') is not None else '')}</td>"
        f"<td class=mono>{_e(', '.join(text(h) for h in (to_plain(e.get('hostnames')) or [])[:3]))}</td>"
        f"{_num_cell(e.get('min_rtt_ms'))}<td>{'yes' if e.get('anycast') else ''}</td></tr>"
        for e in items
    ]
    headers = [("address", False), ("country", False), ("confidence", False), ("evidence", False),
               ("competing answers / contradiction", False), ("registered", False), ("ASN", False),
               ("hostnames", False), ("min RTT ms", True), ("anycast", False)]
    return f'<section id="endpoints">{head}{intro}{_table("endpoints-table", headers, rows)}</section>'


def _stream(s: dict[str, Any]) -> str:
    packets = to_plain(s.get("packets"))
    shown = f"{packets:,}" if isinstance(packets, int) else text(packets)
    return (
        f"{_e(s.get('media_type'))} ssrc <code>{_e(s.get('ssrc'))}</code>: "
        f"{_e(shown)} pkts, {_e(human_bytes(s.get('bytes')))}"
    )


def _media(report: dict[str, Any]) -> str:
    items = report.get("media") or []
    head = "<h2>Media flows</h2>"
    if not items:
        return f'<section id="media">{head}<p>No media flows seen.</p></section>'
    rows = []
    for m in items:
        streams = "<br>".join(_stream(s) for s in m.get("streams") or [] if isinstance(s, dict))
        rows.append(
            f"<tr>{_num_cell(m.get('flow_id'))}<td>{_e(m.get('app'))}</td><td>{_e(m.get('protocol'))}</td>"
            f"<td class=ip>{_e(m.get('server_ip'))}:{_e(m.get('server_port'))}</td>"
            f"<td>{_e(m.get('country'))}</td>{_num_cell(m.get('packets'))}"
            f"{_num_cell(m.get('bytes'), human_bytes(m.get('bytes')))}<td>{streams}</td></tr>"
        )
    headers = [("flow", True), ("app", False), ("protocol", False), ("server", False), ("country", False),
               ("packets", True), ("bytes", True), ("streams", False)]
    return f'<section id="media">{head}{_table("media-table", headers, rows)}</section>'


def _clock(ts: Any, with_date: bool) -> tuple[str, str]:
    """(shown, full) UTC time of an epoch timestamp: `17:54:26.081` (with the date when the flows
    span several days) and the full ISO form for the tooltip."""
    v = to_plain(ts)
    if not isinstance(v, int | float) or isinstance(v, bool) or v != v:
        return "", ""
    at = pd.Timestamp(v, unit="s", tz="UTC")
    full = at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
    return (at.strftime("%Y-%m-%d %H:%M:%S") if with_date else at.strftime("%H:%M:%S.%f")[:-3]), full


def _endpoint(ip: Any, port: Any) -> str:
    return f"<span class=ip>{_e(ip)}</span><wbr><span class=ip>:{_e(port)}</span>"


def _num(v: Any, fmt: str = "{:.1f}") -> str:
    v = to_plain(v)
    return fmt.format(v) if isinstance(v, int | float) and v == v else "–"


def _streams_over_time(report: dict[str, Any]) -> str:
    """One small chart and one line of figures per media stream (the largest first)."""
    streams = [s for m in report.get("media") or [] for s in m.get("streams") or [] if isinstance(s, dict)]
    head = '<section id="streams"><h2>Media streams over time</h2>'
    summary = report.get("media_streams") or {}
    note = ""
    if summary.get("streams_over_cap"):
        note += (f'<p class="note">{_e(summary["streams_over_cap"])} more stream(s) were counted but not measured '
                 f"(stream cap).</p>")
    if not streams:
        return f'{head}<p>No RTP media streams measured.</p>{note}</section>'
    streams.sort(key=lambda s: -(to_plain(s.get("packets")) or 0))
    if len(streams) > MAX_STREAM_CHARTS:
        note += f'<p class="note">The {MAX_STREAM_CHARTS} largest of {len(streams)} streams are drawn.</p>'
        streams = streams[:MAX_STREAM_CHARTS]
    legend_svg = ('<p class="note">Solid: bitrate; dashed: frame rate; red triangle: packets lost in that second; '
                  f"purple dot: jitter above {JITTER_MARK_MS:g} ms; dotted: a stream's first and last "
                  "second, which it covers only in part. Rates need a stream of at least 1 s and 10 packets.</p>")
    cards = []
    for s in streams:
        rate = _num(s.get("bitrate_bps"), "{:,.0f} bit/s") if s.get("bitrate_bps") is not None else (
            f"rate: {_e(s.get('rate_note'))}")
        figures = (f"{_e(s.get('media_type'))} ssrc <code>{_e(s.get('ssrc'))}</code> · {_e(s.get('participant'))} · "
                   f"{_num(s.get('packets'), '{:,}')} pkts · {_num(s.get('frames'), '{:,}')} frames · "
                   f"{_num(s.get('frame_rate_fps'))} fps · {rate} · jitter {_num(s.get('jitter_ms'))} ms "
                   f"(frames {_num(s.get('frame_jitter_ms'))} ms, clock {_num(s.get('clock_rate'), '{:,}')} Hz) · "
                   f"lost {_num(s.get('lost'), '{:,}')}")
        if to_plain(s.get("rtcp_rtt_samples")):
            figures += f" · RTCP round trip {_num(s.get('rtcp_rtt_ms'))} ms"
        cards.append(f'<div class="stream-card"><div class="figs">{figures}</div>{stream_chart(s)}</div>')
    return f'{head}{legend_svg}{note}<div class="stream-grid">{"".join(cards)}</div></section>'


def _flow_table(flows: pd.DataFrame) -> str:
    """Flows in 11 columns that fit a 1,400 px window: the server's hostname under its address,
    app and protocol together, ASN with the org, both directions' bytes in one column (the split
    is in the cell's tooltip), start as UTC clock time."""
    df = flows
    note = ""
    if len(df) > MAX_TABLE_ROWS:
        total = df.get("bytes_c2s", 0) + df.get("bytes_s2c", 0)
        df = df.assign(_b=total).nlargest(MAX_TABLE_ROWS, "_b")
        note = (
            f'<p class="note">The {MAX_TABLE_ROWS:,} largest of {len(flows):,} flows; flows.csv has all.</p>'
        )
    starts = pd.to_numeric(flows["first_ts"], errors="coerce") if "first_ts" in flows else pd.Series(dtype=float)
    days = starts.dropna().floordiv(86400).nunique() if len(starts) else 0
    rows = []
    for rec in df.to_dict("records"):
        first, last = to_plain(rec.get("first_ts")), to_plain(rec.get("last_ts"))
        dur = last - first if isinstance(first, int | float) and isinstance(last, int | float) else None
        shown, full = _clock(first, days > 1)
        roles = to_plain(rec.get("roles")) or []
        role = common.primary_role(roles)
        c2s, s2c = to_plain(rec.get("bytes_c2s")) or 0, to_plain(rec.get("bytes_s2c")) or 0
        host = text(rec.get("hostname"))
        asn = text(rec.get("server_asn"))
        org = " ".join(x for x in (f"AS{asn}" if asn else "", text(rec.get("server_org"))) if x)
        rows.append(
            "<tr>"
            f"{_num_cell(rec.get('flow_id'))}"
            # <wbr>: on a narrow window the port may go under the address, the address never breaks
            f"<td>{_endpoint(rec.get('client_ip'), rec.get('client_port'))}</td>"
            f"<td>{_endpoint(rec.get('server_ip'), rec.get('server_port'))}"
            + (f"<br><span class='mono host'>{_e(host)}</span>" if host else "")
            + "</td>"
            f"<td>{_e(rec.get('app'))} <span class=note>{_e(rec.get('protocol') or rec.get('transport'))}</span></td>"
            f'<td><span style="color:{common.role_colour(role)}">&#9632;</span> '
            f"{_e(', '.join(text(r) for r in roles))}</td>"
            f"<td>{_e(rec.get('server_country'))}</td><td class=org>{_e(org)}</td>"
            f'<td class="n ip" data-v="{_e(first)}" title="{_e(full)}">{"<br>".join(map(_e, shown.split(" ")))}</td>'
            f"{_num_cell(dur, human_duration(dur) if dur is not None else '')}"
            f"{_num_cell((to_plain(rec.get('packets_c2s')) or 0) + (to_plain(rec.get('packets_s2c')) or 0))}"
            f'<td class=n data-v="{c2s + s2c}" title="client to server {c2s:,} B, server to client {s2c:,} B">'
            f"{escape(human_bytes(c2s + s2c))}</td>"
            "</tr>"
        )
    headers = [("flow", True), ("client", False), ("server / hostname", False), ("app", False),
               ("roles", False), ("country", False), ("org", False), ("start (UTC)", True), ("duration", True),
               ("packets", True), ("bytes", True)]
    return (
        f'<section id="flows"><h2>Flows</h2><p class="note" id="js-status"></p>'
        f"{note}{_table('flow-table', headers, rows)}</section>"
    )


def _joined(value: Any) -> str:
    v = to_plain(value)
    if isinstance(v, bool):
        return "yes" if v else "no"
    if v is None or v == []:
        return "none"
    return ", ".join(text(x) for x in v) if isinstance(v, list) else text(v)


def _provenance(report: dict[str, Any]) -> str:
    items = "".join(
        f"<dt>{_e(label)}</dt><dd class=mono>{_e(_joined(value))}</dd>"
        for label, value in common.provenance_rows(report)
    )
    rows = [
        f"<tr><td>{_e(db.get('name'))}</td><td>{_e(db.get('type'))}</td><td>{_e(db.get('build_date'))}</td>"
        f"<td class=mono>{_e(db.get('sha256'))}</td><td>{_e(db.get('source') or db.get('path'))}</td></tr>"
        for db in common.geo_databases(report)
    ]
    dbs = _table(
        "geo-db-table",
        [("database", False), ("type", False), ("build date", False), ("sha256", False), ("source", False)],
        rows,
        sortable=False,
    )
    warnings = list((report.get("capture") or {}).get("warnings") or []) + list(report.get("warnings") or [])
    warn = (
        "<h3>Warnings</h3><ul>" + "".join(f"<li>{_e(w)}</li>" for w in warnings) + "</ul>" if warnings else ""
    )
    return (
        f'<section id="provenance"><h2>Provenance</h2><dl class="prov">{items}</dl>'
        f"<h3>Geolocation databases</h3>{dbs}{warn}</section>"
    )


def _attributions() -> str:
    items = "".join(f"<li>{escape(a)}</li>" for a in common.ATTRIBUTIONS)
    link = f'<li><a href="{common.DBIP_URL}">{escape(common.DBIP_TEXT)}</a></li>'
    return (
        '<footer id="attributions"><h2>Data attributions</h2><ul>'
        f"{items}{link}</ul><p>Made with Natural Earth. Free vector and raster map data "
        "@ naturalearthdata.com.</p></footer>"
    )


def _script_hash(script: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()


def to_html(report: dict[str, Any], flows: pd.DataFrame | None = None) -> str:
    """The whole report as one HTML document (UTF-8 text)."""
    if flows is None or not isinstance(flows, pd.DataFrame):
        flows = pd.DataFrame(report.get("flows") or [])
    # The flows are in the table already; the embedded copy keeps the page small and fast.
    embedded = order_report({k: v for k, v in report.items() if k != "flows"})
    csp = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src '{_script_hash(_JS)}'; base-uri 'none'; form-action 'none'"
    )
    map_key = map_legend(list(common.ROLES))
    name = _e(common.title(report))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{escape(csp, quote=True)}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>confscope report: {name}</title><style>{_CSS}</style></head><body>",
        f"<h1>confscope report: <span class=mono>{name}</span></h1>",
        _summary(report, flows),
        _findings(report),
        _violations(report),
        '<section id="countries"><h2>Bytes by remote country and role</h2>',
        country_role_bars(report),
        _shared_note(report),
        "</section>",
        '<section id="map"><h2>Where the call travelled</h2>',
        map_key,
        world_map(report, flows),
        "</section>",
        _endpoints(report),
        _key_exchange(report),
        _media(report),
        _streams_over_time(report),
        '<section id="timeline-section"><h2>Flow timeline</h2>',
        flow_timeline(flows, segments=(report.get("capture") or {}).get("time_segments")),
        "</section>",
        _flow_table(flows),
        _provenance(report),
        _attributions(),
        f'<script type="application/json" id="report-data">{json_for_script(embedded)}</script>',
        f"<script>{_JS}</script>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
