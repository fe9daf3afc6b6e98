"""Add geolocation columns to the flow table (one lookup per distinct address)."""

from __future__ import annotations

import pandas as pd

from analyzer.geo.resolver import GeoResolver, GeoResult

SERVER_COLUMNS = (
    "server_country", "server_asn", "server_org", "server_scope", "registered_country",
    "geo_sources", "geo_disagreement",
)
CLIENT_COLUMNS = ("client_country", "client_asn")


def _sources_text(r: GeoResult) -> str:
    # A flat string survives CSV and parquet; ";" never occurs in database names we produce.
    return ";".join(r.sources)


def annotate_flows(flows: pd.DataFrame, resolver: GeoResolver) -> pd.DataFrame:
    """A copy of `flows` with server_* geo columns, registered_country, geo_sources,
    geo_disagreement, and client_country / client_asn (filled only for public client addresses).

    Non-public servers get their scope ("private", "cgnat", ...) in server_scope and no country.
    """
    out = flows.copy()
    servers = _ip_column(out, "server_ip")
    results = {ip: resolver.lookup(ip) for ip in pd.unique(servers)}
    srv = [results[ip] for ip in servers]
    idx = out.index
    out["server_country"] = _objects([r.country for r in srv], idx)
    out["server_asn"] = pd.Series([r.asn for r in srv], index=idx, dtype="Int64")
    out["server_org"] = _objects([r.org for r in srv], idx)
    out["server_scope"] = _objects([r.scope for r in srv], idx)
    out["registered_country"] = _objects([r.registered_country for r in srv], idx)
    out["geo_sources"] = _objects([_sources_text(r) for r in srv], idx)
    out["geo_disagreement"] = pd.Series([r.disagreement for r in srv], index=idx, dtype="bool")

    clients = _ip_column(out, "client_ip")
    cres = {ip: resolver.lookup(ip) for ip in pd.unique(clients)}
    # Only public clients get a country: a LAN address has a scope, not a place.
    cli = [cres[ip] if cres[ip].scope == "public" else None for ip in clients]
    out["client_country"] = _objects([r.country if r else None for r in cli], idx)
    out["client_asn"] = pd.Series([r.asn if r else None for r in cli], index=idx, dtype="Int64")
    return out


def _objects(values: list[object], index: pd.Index) -> pd.Series:
    # Object dtype keeps None as None (pandas 3 would otherwise infer str and turn None into NaN).
    return pd.Series(values, index=index, dtype="object")


def _ip_column(frame: pd.DataFrame, name: str) -> pd.Series:
    if name not in frame.columns:
        return pd.Series([""] * len(frame), index=frame.index, dtype="object")
    return pd.Series(
        ["" if pd.isna(v) else str(v) for v in frame[name].tolist()], index=frame.index, dtype="object",
    )
