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


def key_exchange_table(report: dict[str, Any]) -> Table:
    table = _table("Key-exchange endpoints")
    _col(table, "flow", right=True, keep=True)
    _col(table, "app")
    _col(table, "server / hostname")
    _col(table, "country", keep=True, style="bold")
    _col(table, "org")
    for k in report.get("key_exchange") or []:
        server = Text(f"{strip_terminal(k.get('server_ip'))}:{strip_terminal(k.get('server_port'))}")
        if k.get("hostname"):
            server.append("\n" + strip_terminal(k.get("hostname")), style="dim")
        table.add_row(
            _n(k.get("flow_id")),
            _t(" ".join(x for x in (strip_terminal(k.get("app")), strip_terminal(k.get("protocol"))) if x)),
            server,
            _t(k.get("country")),
            _t(k.get("org")),
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
    return f"{strip_terminal(v.get('country'))}, {how or source}"


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
