"""The terminal summary printed by `confscope analyze`: countries x roles, key exchange, findings.

Captured strings are stripped of control characters and escape sequences (a hostname must not
move the cursor, recolour the terminal or plant an OSC 8 hyperlink) and are handed to rich as
`Text`, never as markup, so `[bold]` in an SNI prints literally.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

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


def countries_table(report: dict[str, Any]) -> Table:
    roles = common.role_columns(report)
    table = Table(title="Bytes by remote country and role", title_justify="left")
    table.add_column("country")
    for head in ("flows", "packets", "bytes"):
        table.add_column(head, justify="right")
    for role in roles:
        table.add_column(common.ROLE_LABELS.get(role, role), justify="right", style=common.role_colour(role))
    for c in report.get("countries") or []:
        by_role = c.get("bytes_by_role") or {}
        table.add_row(
            _t(c.get("country"), "bold"),
            _n(c.get("flows")),
            _n(c.get("packets")),
            _t(human_bytes(c.get("bytes"))),
            *[_t(human_bytes(by_role.get(r)) if by_role.get(r) else "") for r in roles],
        )
    return table


def key_exchange_table(report: dict[str, Any]) -> Table:
    table = Table(title="Key-exchange endpoints", title_justify="left")
    for head in ("flow", "app", "protocol", "server", "hostname", "country", "org", "key exchange"):
        table.add_column(head, justify="right" if head == "flow" else "left")
    for k in report.get("key_exchange") or []:
        table.add_row(
            _n(k.get("flow_id")),
            _t(k.get("app")),
            _t(k.get("protocol")),
            _t(f"{strip_terminal(k.get('server_ip'))}:{strip_terminal(k.get('server_port'))}"),
            _t(k.get("hostname")),
            _t(common.located(k.get("country"), k.get("location_confidence")),
               _conf_style(k.get("location_confidence"))),
            _t(k.get("org")),
            _t(k.get("key_exchange_status")),
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
    table = Table(title=f"Server locations{more}", title_justify="left")
    for head in ("address", "country", "confidence", "evidence", "contradicted by", "RTT ms"):
        table.add_column(head, justify="right" if head == "RTT ms" else "left")
    for e in shown:
        rtt = e.get("min_rtt_ms")
        table.add_row(
            _t(e.get("ip")),
            _t(e.get("country"), "bold"),
            _t(e.get("confidence"), _conf_style(e.get("confidence"))),
            _t(common.evidence_text(e)),
            _t(common.contest_text(e, 1)),
            _t(f"{rtt:.1f}" if isinstance(rtt, int | float) else ""),
        )
    return table


def findings_table(report: dict[str, Any]) -> Table:
    table = Table(title="Findings", title_justify="left")
    for head in ("severity", "code", "title", "confidence", "flows"):
        table.add_column(head)
    for f in common.sorted_findings(report):
        sev = strip_terminal(f.get("severity")).lower()
        flow_ids = to_plain(f.get("flow_ids")) or []
        shown = ", ".join(strip_terminal(x) for x in flow_ids[:8]) + (" ..." if len(flow_ids) > 8 else "")
        table.add_row(
            _t(sev.upper(), _SEVERITY_STYLE.get(sev, "")),
            _t(f.get("code")),
            _t(f.get("title")),
            _t(f.get("confidence") or "", _conf_style(f.get("confidence"))),
            _t(shown),
        )
    return table


def render_summary(report: dict[str, Any], console: Console) -> None:
    """Print the summary tables of one report to `console`."""
    cap = report.get("capture") or {}
    head = Text()
    head.append("confscope ", style="bold")
    head.append(strip_terminal(common.title(report)))
    head.append(
        f"  {strip_terminal(cap.get('packets'))} packets, {human_bytes(cap.get('bytes'))}, "
        f"{len(report.get('flows') or [])} flows"
    )
    console.print(head)
    console.print(countries_table(report))
    if report.get("endpoints"):
        console.print(endpoints_table(report))
    console.print(Text(f"Vantage: {strip_terminal(common.vantage_text(report))}"))
    if report.get("key_exchange"):
        console.print(key_exchange_table(report))
    else:
        console.print(Text("No key-exchange flows seen."))
    if report.get("findings"):
        console.print(findings_table(report))
    else:
        console.print(Text("No findings."))
    n_viol = len(common.violations(report))
    if n_viol:
        console.print(Text(f"{n_viol} policy violation(s)", style="bold red"))
