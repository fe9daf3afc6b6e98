"""What appeared or disappeared between two values of one label (two dates, two vantages, ...).

Per app: countries reached per role, countries where keys were exchanged, and finding codes. A
row is a change: present on one side and not on the other.
"""

from __future__ import annotations

import pandas as pd

from analyzer.errors import OptionError

COLUMNS = ["dimension", "a", "b", "app", "kind", "role", "item", "change", "sessions_a", "sessions_b", "bytes_a",
           "bytes_b"]


def parse_diff(text: str) -> tuple[str, str, str]:
    """"date=2026-01-01:2026-02-01" -> ("date", "2026-01-01", "2026-02-01")."""
    dim, sep, rest = text.partition("=")
    a, sep2, b = rest.partition(":")
    if not sep or not sep2 or not dim.strip() or not a.strip() or not b.strip():
        raise OptionError(f"--diff {text!r}: expected LABEL=A:B, e.g. date=2026-01-01:2026-02-01 or vantage=DE:US")
    return dim.strip().lower(), a.strip(), b.strip()


def _side(df: pd.DataFrame, dim: str, value: str, keys: list[str], sums: list[str]) -> pd.DataFrame:
    part = df[df[dim].astype(str) == value]
    if part.empty:
        return pd.DataFrame(columns=[*keys, *sums])
    return part.groupby(keys, dropna=False)[sums].sum().reset_index()


def _changes(df: pd.DataFrame, dim: str, a: str, b: str, kind: str, keys: list[str], item: str,
             sums: list[str]) -> list[dict]:
    left, right = _side(df, dim, a, keys, sums), _side(df, dim, b, keys, sums)
    merged = left.merge(right, on=keys, how="outer", suffixes=("_a", "_b"), indicator=True)
    rows = []
    for _, r in merged.iterrows():
        if r["_merge"] == "both":
            continue
        rows.append({
            "dimension": dim, "a": a, "b": b, "app": r["app"], "kind": kind,
            "role": r["role"] if "role" in keys else "", "item": r[item],
            "change": "appeared" if r["_merge"] == "right_only" else "disappeared",
            "sessions_a": int(r.get("sessions_a") or 0) if r.get("sessions_a") == r.get("sessions_a") else 0,
            "sessions_b": int(r.get("sessions_b") or 0) if r.get("sessions_b") == r.get("sessions_b") else 0,
            "bytes_a": int(r.get("bytes_a") or 0) if r.get("bytes_a") == r.get("bytes_a") else 0,
            "bytes_b": int(r.get("bytes_b") or 0) if r.get("bytes_b") == r.get("bytes_b") else 0,
        })
    return rows


def diff(routes: pd.DataFrame, key_exchange: pd.DataFrame, findings: pd.DataFrame, dim: str, a: str,
         b: str) -> pd.DataFrame:
    """Changes from `a` to `b` of label `dim`, from the fine-grain campaign frames."""
    for df in (routes, key_exchange, findings):
        if not df.empty and dim not in df.columns:
            raise OptionError(f"--diff: no label {dim!r} (known: {', '.join(c for c in df.columns[:6])})")
    rows = []
    if not routes.empty:
        rows += _changes(routes, dim, a, b, "route", ["app", "role", "country"], "country", ["sessions", "bytes"])
    if not key_exchange.empty:
        rows += _changes(key_exchange, dim, a, b, "key_exchange", ["app", "country"], "country",
                         ["sessions", "bytes"])
    if not findings.empty:
        f = findings.assign(bytes=0)
        rows += _changes(f, dim, a, b, "finding", ["app", "code"], "code", ["sessions", "bytes"])
    return pd.DataFrame(rows, columns=COLUMNS)
