"""The terminal summary printed by `confscope analyze`: vantage, policy, apps, local traffic,
countries x roles, key exchange, findings.

Captured strings are stripped of control characters and escape sequences (a hostname must not
move the cursor, recolour the terminal or plant an OSC 8 hyperlink) and are handed to rich as
`Text`, never as markup, so `[bold]` in an SNI prints literally.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from analyzer.common.words import capture_time, plural
from analyzer.report import common
from analyzer.report.sanitize import human_bytes, strip_terminal, to_plain

_SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}


def _t(value: Any, style: str = "") -> Text:
    return Text(strip_terminal(value), style=style)


def _n(value: Any) -> Text:
    v = to_plain(value)
    if isinstance(v, int) and not isinstance(v, bool):
        return Text(f"{v:,}")
    return _t(v)


def _table(title: str) -> Table:
    # No column may cut a value: narrow terminals fold long cells onto more lines instead.
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)


def _col(table: Table, head: str, *, right: bool = False, keep: bool = False, style: str = "") -> None:
    """`keep`: short values (codes, sizes) that must stay on one line; others fold."""
    table.add_column(
        head, justify="right" if right else "left", no_wrap=keep, overflow="fold", style=style or None
    )


def _by_role(c: dict[str, Any], roles: list[str]) -> Text:
    out = Text()
    for role in roles:
        cell = common.role_cell(c, role)
        if not cell:
            continue
        if out:
            out.append(", ")
        out.append(common.ROLE_LABELS.get(role, role), style=common.role_colour(role))
        out.append(f"\u00a0{cell}")  # keep "media 189.0 KiB" together when the cell wraps
    return out


def countries_table(report: dict[str, Any]) -> Table:
    """Countries with their bytes and, stacked in one cell, the bytes per role (fits 80 columns)."""
    roles = common.role_columns(report)
    table = _table("Bytes by remote country and role")
    _col(table, "country", keep=True, style="bold")
    _col(table, "flows", right=True, keep=True)
    _col(table, "bytes", right=True, keep=True)
    _col(table, "by role")
    for c in report.get("countries") or []:
        table.add_row(_t(c.get("country")), _n(c.get("flows")), _t(human_bytes(c.get("bytes"))), _by_role(c, roles))
    return table


def _stacked(first: str, second: Any, style: str = "dim") -> Text:
    """Two short values on two lines (narrow terminals keep both whole)."""
    cell = Text(first)
    if second:
        cell.append("\n" + strip_terminal(second), style=style or None)
    return cell


def key_exchange_table(report: dict[str, Any]) -> Table:
    table = _table("Key-exchange endpoints")
    _col(table, "flow", right=True, keep=True)
    _col(table, "app")
    _col(table, "country", keep=True, style="bold")
    # Address, host name and network in one column, one under the other: only this column holds
    # long text, so a folded host name is never interleaved with a neighbour's second line.
    _col(table, "server / hostname / network")
    table.columns[-1].min_width = max(  # an address is never folded
        (len(f"{k.get('server_ip')}:{k.get('server_port')}") for k in report.get("key_exchange") or []), default=0
    )
    for k in report.get("key_exchange") or []:
        server = Text(f"{strip_terminal(k.get('server_ip'))}:{strip_terminal(k.get('server_port'))}")
        for extra, style in ((k.get("hostname"), "dim"), (k.get("org"), "")):
            if extra:
                server.append("\n" + strip_terminal(extra), style=style or None)
        table.add_row(
            _n(k.get("flow_id")),
            _stacked(" ".join(x for x in (strip_terminal(k.get("app")), strip_terminal(k.get("protocol"))) if x),
                     k.get("key_exchange_status")),
            _t(common.located(k.get("country"), k.get("location_confidence")),
               _conf_style(k.get("location_confidence"))),
            server,
        )
    return table


_CONFIDENCE_STYLE = {"confirmed": "bold", "likely": "", "contested": "bold yellow", "unknown": "dim"}
MAX_ENDPOINT_ROWS = 15


def _conf_style(confidence: Any) -> str:
    return _CONFIDENCE_STYLE.get(strip_terminal(confidence), "")


def endpoints_table(report: dict[str, Any]) -> Table:
    """Server locations with their confidence; contested ones first, with the competing answers."""
    items = common.endpoints(report)
    shown = items[:MAX_ENDPOINT_ROWS]
    more = f" ({len(shown)} of {len(items)}; all in report.json)" if len(items) > len(shown) else ""
    table = _table(f"Server locations{more}")
    _col(table, "address", keep=True)
    _col(table, "country", keep=True, style="bold")
    _col(table, "confidence", keep=True)
    _col(table, "evidence")
    _col(table, "RTT ms", right=True, keep=True)
    for e in shown:
        rtt = e.get("min_rtt_ms")
        evidence = Text(strip_terminal(common.evidence_text(e)))
        contest = common.contest_text(e, 1)
        if contest:
            evidence.append("\n" + strip_terminal(contest), style="yellow")
        table.add_row(
            _t(e.get("ip")),
            _t(e.get("country")),
            _t(e.get("confidence"), _conf_style(e.get("confidence"))),
            evidence,
            _t(f"{rtt:.1f}" if isinstance(rtt, int | float) else ""),
        )
    return table


def findings_table(report: dict[str, Any]) -> Table:
    table = _table("Findings")
    _col(table, "severity", keep=True)
    _col(table, "finding")
    _col(table, "flows")
    for f in common.sorted_findings(report):
        sev = strip_terminal(f.get("severity")).lower()
        flow_ids = to_plain(f.get("flow_ids")) or []
        shown = ", ".join(strip_terminal(x) for x in flow_ids[:8]) + (" ..." if len(flow_ids) > 8 else "")
        what = Text(strip_terminal(f.get("code")), style="bold")
        if f.get("confidence") in _CONFIDENCE_STYLE:  # a location's confidence (docs/locations.md)
            what.append(f" ({strip_terminal(f.get('confidence'))})", style=_conf_style(f.get("confidence")))
        what.append("\n" + strip_terminal(f.get("title")))
        table.add_row(_t(sev.upper(), _SEVERITY_STYLE.get(sev, "")), what, _t(shown))
    return table


def _vantage_line(report: dict[str, Any]) -> str:
    v = report.get("vantage") or {}
    source = strip_terminal(v.get("source"))
    if not v.get("country"):
        return "unknown (no STUN mapped address seen; give --vantage CC)"
    how = {
        "option:country": "given with --vantage",
        "option:coordinates": "from the --vantage coordinates",
    }.get(source)
    if how is None and source.startswith("public-ip:"):
        how = f"from the capture's public address {source.split(':', 1)[1]} (STUN mapped address)"
    text = f"{strip_terminal(common.located(v.get('country'), v.get('confidence')))}, {how or source}"
    rejected = [r for r in v.get("rejected") or [] if isinstance(r, dict)]
    if rejected:  # relays and other answers that were not taken for the client
        text += f"; not the client: {', '.join(strip_terminal(r.get('ip')) for r in rejected[:3])}"
    return text


def _policy_line(report: dict[str, Any]) -> str:
    policy = report.get("policy") or {}
    if not policy.get("source"):
        return "no policy checked (give --allow, --region or --policy to check one)"
    allowed = policy.get("allowed_countries")
    shown = "any country" if allowed is None else ", ".join(strip_terminal(c) for c in allowed[:12])
    more = f" and {len(allowed) - 12} more" if allowed and len(allowed) > 12 else ""
    return f"{strip_terminal(policy.get('source'))} (allowed: {shown}{more})"


def _apps_line(report: dict[str, Any]) -> str:
    apps = [a for a in report.get("apps") or [] if isinstance(a, dict)]
    return "; ".join(
        f"{strip_terminal(a.get('app'))} {plural(int(a.get('flows') or 0), 'flow')}, {human_bytes(a.get('bytes'))}"
        for a in apps
    ) or "none"


def _local_line(report: dict[str, Any]) -> str | None:
    local = report.get("local") or {}
    if not local.get("flows"):
        return None
    scopes = ", ".join(f"{strip_terminal(k)} {v}" for k, v in sorted((local.get("by_scope") or {}).items()))
    return (
        f"{plural(int(local['flows']), 'flow')}, {human_bytes(local.get('bytes'))} to local addresses "
        f"({scopes}): P2P and LAN traffic, not in the country table"
    )


def render_summary(report: dict[str, Any], console: Console) -> None:
    """Print the summary of one report to `console`; readable from 80 columns up (long values
    wrap, none is cut)."""
    cap = report.get("capture") or {}
    head = Text()
    head.append("confscope ", style="bold")
    head.append(strip_terminal(common.title(report)))
    head.append(
        f"  {plural(int(to_plain(cap.get('packets')) or 0), 'packet')}, {human_bytes(cap.get('bytes'))}, "
        f"{plural(len(report.get('flows') or []), 'flow')}, {capture_time(cap)}"
    )
    console.print(head)
    facts = Table.grid(padding=(0, 1))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column(overflow="fold")
    facts.add_row("vantage", _t(_vantage_line(report)))
    facts.add_row("policy", _t(_policy_line(report)))
    facts.add_row("apps", _t(_apps_line(report)))
    local = _local_line(report)
    if local:
        facts.add_row("local", _t(local))
    console.print(facts)
    if report.get("countries"):
        console.print(countries_table(report))
        if common.has_shared(report):
            console.print(Text(common.SHARED_NOTE, style="dim"))
    else:
        console.print(Text("No public remote addresses."))
    if report.get("endpoints"):
        console.print(endpoints_table(report))
    if report.get("key_exchange"):
        console.print(key_exchange_table(report))
    else:
        console.print(Text("No key-exchange flows seen."))
    if report.get("findings"):
        console.print(findings_table(report))
    elif not (report.get("policy") or {}).get("source"):
        console.print(Text("No findings (no policy was checked)."))
    else:
        console.print(Text("No findings."))
    n_viol = len(common.violations(report))
    if n_viol:
        console.print(Text(plural(n_viol, "policy violation"), style="bold red"))
