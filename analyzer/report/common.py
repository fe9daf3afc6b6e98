"""Facts every renderer reads the same way: role order and colours, provenance, attributions.

Renderers stay tolerant of a partial report (a stage may have produced no table): every accessor
returns an empty value instead of raising.
"""

from __future__ import annotations

from typing import Any

from analyzer.classify.roles import ROLES as CLASSIFY_ROLES
from analyzer.report.sanitize import to_plain

# The roles of analyzer.classify.roles in reading order: what was exchanged first, then how.
_FIRST = ("key_exchange", "media")
ROLES: tuple[str, ...] = (*_FIRST, *(r for r in CLASSIFY_ROLES if r not in _FIRST))
# Colour-blind-friendly (Okabe-Ito) so the map and charts read without relying on red/green.
ROLE_COLOURS: dict[str, str] = {
    "key_exchange": "#D55E00",
    "media": "#0072B2",
    "signaling": "#E69F00",
    "nat_traversal": "#009E73",
    "dns": "#CC79A7",
    "other": "#999999",
}
ROLE_LABELS: dict[str, str] = {
    "key_exchange": "key exchange",
    "media": "media",
    "signaling": "signaling",
    "nat_traversal": "NAT traversal",
    "dns": "DNS",
    "other": "other",
}
SEVERITY_ORDER: dict[str, int] = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}

DBIP_URL = "https://db-ip.com"
DBIP_TEXT = "IP Geolocation by DB-IP"
ATTRIBUTIONS: tuple[str, ...] = (
    "Country borders: Natural Earth (public domain), via world-atlas (ISC).",
    "Location data: DB-IP IP-to-Country Lite (CC BY 4.0), packaged by ip-location-db.",
    "Registration data: ip-location-db geo-whois-asn-country (CC BY 4.0, NRO/RIR data); "
    "registered country: iptocc (RIR delegated statistics, credit NRO).",
    "ASN and organisation data: ip-location-db asn (CC BY 4.0: RouteViews, NRO and DB-IP).",
)


def role_colour(role: str) -> str:
    return ROLE_COLOURS.get(role, ROLE_COLOURS["other"])


def primary_role(roles: Any) -> str:
    """The most telling role of a flow or endpoint: key exchange beats media beats signaling..."""
    have = {str(r) for r in (to_plain(roles) or []) if r is not None}
    for role in ROLES:
        if role in have:
            return role
    return "other"


def role_columns(report: dict[str, Any]) -> list[str]:
    """Roles present in the countries table (by bytes or by flows), canonical order, unknown last."""
    seen: set[str] = set()
    for c in report.get("countries") or []:
        seen.update(str(k) for k in (c.get("bytes_by_role") or {}))
        seen.update(str(k) for k in (c.get("flows_by_role") or {}))
    return [r for r in ROLES if r in seen] + sorted(seen - set(ROLES))


# A role some flows of a country carry while their bytes count under another role.
SHARED_MARK = "shared"
SHARED_NOTE = (
    "Each byte is counted once, under the role of the packet that carried it. \"shared\": flows to "
    "this country carry this role too, but their bytes count under another role (a TLS channel "
    "that delivers keys is signaling as well; all its bytes are key exchange)."
)


def role_cell(row: dict[str, Any], role: str) -> str:
    """A country's cell for `role`: its bytes, `shared` when its flows carry the role but their
    bytes count under another one, or empty. Policy findings name flows by role, so a role named
    in a finding never shows an empty cell."""
    from analyzer.report.sanitize import human_bytes

    n = (row.get("bytes_by_role") or {}).get(role)
    if n:
        return human_bytes(n)
    if (row.get("flows_by_role") or {}).get(role):
        return SHARED_MARK
    return ""


def has_shared(report: dict[str, Any]) -> bool:
    """Whether any country shows a `shared` cell (renderers then print SHARED_NOTE)."""
    return any(role_cell(c, r) == SHARED_MARK for c in report.get("countries") or [] for r in role_columns(report))


def sorted_findings(report: dict[str, Any]) -> list[dict[str, Any]]:
    items = [f for f in report.get("findings") or [] if isinstance(f, dict)]
    return sorted(items, key=lambda f: SEVERITY_ORDER.get(str(f.get("severity", "")).lower(), 9))


def violations(report: dict[str, Any]) -> list[dict[str, Any]]:
    policy = report.get("policy") or {}
    items = [v for v in policy.get("violations") or [] if isinstance(v, dict)]
    return sorted(items, key=lambda v: SEVERITY_ORDER.get(str(v.get("severity", "")).lower(), 9))


def options(report: dict[str, Any]) -> dict[str, Any]:
    """Analysis options, wherever the session stage put them."""
    prov = report.get("provenance") or {}
    found = report.get("options") or prov.get("options") or {}
    return found if isinstance(found, dict) else {"options": found}


def provenance_rows(report: dict[str, Any]) -> list[tuple[str, Any]]:
    """(label, value) pairs of the provenance block, in reading order."""
    tool = report.get("tool") or {}
    cap = report.get("capture") or {}
    rows: list[tuple[str, Any]] = [
        ("schema", report.get("schema")),
        ("tool", f"{tool.get('name', 'confscope')} {tool.get('version', '?')}"),
        ("capture", cap.get("path")),
        ("capture sha256", cap.get("sha256")),
        ("capture format", cap.get("format")),
        ("link types", cap.get("linktypes")),
    ]
    for key in ("generated_at", "created_at", "python", "platform"):
        value = report.get(key) or (report.get("provenance") or {}).get(key)
        if value is not None:
            rows.append((key.replace("_", " "), value))
    for k, v in sorted(options(report).items()):
        rows.append((f"option {k}", v))
    return rows


def geo_databases(report: dict[str, Any]) -> list[dict[str, Any]]:
    geo = report.get("geo") or {}
    return [d for d in geo.get("databases") or [] if isinstance(d, dict)]


def title(report: dict[str, Any]) -> str:
    path = str((report.get("capture") or {}).get("path") or "capture")
    return path.replace("\\", "/").rsplit("/", 1)[-1]


CONFIDENCE_ORDER: dict[str, int] = {"contested": 0, "unknown": 1, "likely": 2, "confirmed": 3}


def located(country: Any, confidence: Any) -> str:
    """"NL (confirmed)": a country always travels with the confidence of its location."""
    cc = "" if country is None else str(to_plain(country))
    conf = "" if confidence is None else str(to_plain(confidence))
    if not cc:
        return ""
    return f"{cc} ({conf})" if conf else cc


def endpoints(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The endpoints table, contested first, then by bytes."""
    items = [e for e in report.get("endpoints") or [] if isinstance(e, dict)]
    return sorted(items, key=lambda e: (CONFIDENCE_ORDER.get(str(e.get("confidence")), 9), -(e.get("bytes") or 0)))


def evidence_text(e: dict[str, Any]) -> str:
    """The endpoint's evidence in one line: "dbip NL, registered GB, hostname:zoom-datacenter NL"."""
    parts = []
    for piece in e.get("evidence") or []:
        if isinstance(piece, dict) and piece.get("country"):
            parts.append(f"{piece.get('source')} {piece.get('country')}")
        elif isinstance(piece, dict) and piece.get("source") in ("anycast",):
            parts.append("anycast")
    return ", ".join(parts)


def contest_text(e: dict[str, Any], limit: int = 2) -> str:
    """For a contested endpoint: what contradicts it (competing answers and RTT limits)."""
    if e.get("confidence") != "contested":
        return ""
    why = [str(c) for c in to_plain(e.get("contradictions")) or []]
    return "; ".join(why[:limit])


def kx_text(k: dict[str, Any]) -> str:
    status = k.get("key_exchange_status")
    if not status:
        return ""
    return f"{status}: {k.get('key_exchange_evidence') or ''}".strip()


def vantage_text(report: dict[str, Any]) -> str:
    v = report.get("vantage") or {}
    cc = v.get("country")
    if not cc:
        return "unknown"
    text = located(cc, v.get("confidence"))
    rejected = [r for r in v.get("rejected") or [] if isinstance(r, dict)]
    if rejected:
        text += f"; rejected {len(rejected)}: " + ", ".join(str(r.get("ip")) for r in rejected[:3])
    return text
