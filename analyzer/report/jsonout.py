"""report.json: strict, stably ordered JSON of the report contract (schema confscope.session/1)."""

from __future__ import annotations

import json
from typing import Any

from analyzer.report.sanitize import json_text, to_plain

SCHEMA = "confscope.session/1"

# The contract of DESIGN.md: top-level key -> fields of the object, or of each list item.
# Order here is the order written, so a reader finds `schema` first and the big `flows` list last.
OBJECT_FIELDS: dict[str, tuple[str, ...]] = {
    "tool": ("name", "version"),
    "capture": (
        "path", "sha256", "format", "linktypes", "packets", "bytes", "first_ts", "last_ts",
        "duration_s", "skipped_packets", "warnings",
    ),
    "geo": ("databases",),
    "vantage": ("local_ips", "public_ips", "country", "source"),
    "policy": ("allowed_countries", "violations"),
}
LIST_FIELDS: dict[str, tuple[str, ...]] = {
    "apps": ("app", "flows", "packets", "bytes"),
    "countries": ("country", "flows", "packets", "bytes", "bytes_by_role"),
    "key_exchange": (
        "flow_id", "app", "protocol", "server_ip", "server_port", "hostname", "country", "asn", "org",
    ),
    "media": (
        "flow_id", "app", "protocol", "server_ip", "server_port", "country", "packets", "bytes",
        "streams",
    ),
    "findings": ("code", "severity", "title", "detail", "flow_ids"),
    "flows": (
        "flow_id", "transport", "client_ip", "client_port", "server_ip", "server_port", "first_ts",
        "last_ts", "packets_c2s", "packets_s2c", "bytes_c2s", "bytes_s2c", "app", "protocol", "roles",
        "bytes_by_role", "hostname", "server_country", "server_asn", "server_org",
    ),
}
NESTED_LIST_FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("geo", "databases"): ("name", "type", "build_date"),
    ("media", "streams"): ("ssrc", "media_type", "packets", "bytes"),
    ("policy", "violations"): ("flow_id", "role", "country", "severity"),
}
TOP_ORDER: tuple[str, ...] = (
    "schema", "tool", "capture", "geo", "vantage", "apps", "countries", "key_exchange", "media",
    "policy", "findings", "flows",
)


def _ordered(obj: dict[str, Any], first: tuple[str, ...]) -> dict[str, Any]:
    """Contract keys in contract order, then any extra keys sorted, so output is deterministic."""
    out = {k: obj[k] for k in first if k in obj}
    for k in sorted(obj):
        if k not in out:
            out[k] = obj[k]
    return out


def _order_value(value: Any) -> Any:
    """Plain dicts that are not contract records (bytes_by_role, options) get sorted keys."""
    if isinstance(value, dict):
        return {k: _order_value(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_order_value(v) for v in value]
    return value


def _order_record(obj: Any, fields: tuple[str, ...], parent: str) -> Any:
    if not isinstance(obj, dict):
        return _order_value(obj)
    rec = _ordered(obj, fields)
    out: dict[str, Any] = {}
    for k, v in rec.items():
        nested = NESTED_LIST_FIELDS.get((parent, k))
        if nested and isinstance(v, list):
            out[k] = [_order_record(item, nested, k) for item in v]
        else:
            out[k] = _order_value(v)
    return out


def order_report(report: dict[str, Any]) -> dict[str, Any]:
    """The report made plain (numpy/NaN free) and put in the stable contract order."""
    plain = to_plain(report)
    out: dict[str, Any] = {}
    for key, value in _ordered(plain, TOP_ORDER).items():
        if key in OBJECT_FIELDS:
            out[key] = _order_record(value, OBJECT_FIELDS[key], key)
        elif key in LIST_FIELDS and isinstance(value, list):
            out[key] = [_order_record(item, LIST_FIELDS[key], key) for item in value]
        else:
            out[key] = _order_value(value)
    return out


def to_json(report: dict[str, Any], indent: int | None = 2) -> str:
    """The report as strict JSON text (no NaN literal; numpy values converted), ending in a newline."""
    # Invisible and format characters as \\u escapes: same data, nothing hidden in the file.
    return json_text(json.dumps(order_report(report), indent=indent, ensure_ascii=False, allow_nan=False)) + "\n"


def _missing_in_items(items: list[Any], fields: tuple[str, ...], where: str) -> list[str]:
    problems: list[str] = []
    records = [it for it in items if isinstance(it, dict)]
    if len(records) != len(items):
        problems.append(f"{where}: {len(items) - len(records)} item(s) are not objects")
    for field in fields:
        n = sum(1 for r in records if field not in r)
        if n:
            problems.append(f"{where}[].{field}: missing in {n} of {len(records)} item(s)")
    return problems


def validate_report(report: Any) -> list[str]:
    """Problems of a report against the contract (missing keys, wrong shapes); [] when it conforms.

    Only presence and container shape are checked: values may be null where data is unknown.
    """
    if not isinstance(report, dict):
        return ["report: not an object"]
    problems: list[str] = []
    if report.get("schema") != SCHEMA:
        problems.append(f"schema: expected {SCHEMA!r}, got {report.get('schema')!r}")
    for key, fields in OBJECT_FIELDS.items():
        obj = report.get(key)
        if not isinstance(obj, dict):
            problems.append(f"{key}: missing or not an object")
            continue
        problems.extend(f"{key}.{f}: missing" for f in fields if f not in obj)
        for (parent, child), nested in NESTED_LIST_FIELDS.items():
            if parent == key and child in obj:
                if isinstance(obj[child], list):
                    problems.extend(_missing_in_items(obj[child], nested, f"{key}.{child}"))
                else:
                    problems.append(f"{key}.{child}: not a list")
    for key, fields in LIST_FIELDS.items():
        items = report.get(key)
        if not isinstance(items, list):
            problems.append(f"{key}: missing or not a list")
            continue
        problems.extend(_missing_in_items(items, fields, key))
        for (parent, child), nested in NESTED_LIST_FIELDS.items():
            if parent != key:
                continue
            for i, item in enumerate(items):
                sub = item.get(child) if isinstance(item, dict) else None
                if isinstance(sub, list):
                    problems.extend(_missing_in_items(sub, nested, f"{key}[{i}].{child}"))
    policy = report.get("policy")
    if isinstance(policy, dict) and "allowed_countries" in policy:
        allowed = policy["allowed_countries"]
        if allowed is not None and not isinstance(allowed, list):
            problems.append("policy.allowed_countries: must be a list or null")
    return problems
