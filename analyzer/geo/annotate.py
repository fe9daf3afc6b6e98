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
    srv = servers.map(results)
    out["server_country"] = srv.map(lambda r: r.country).astype("object")
    out["server_asn"] = pd.array(srv.map(lambda r: r.asn).tolist(), dtype="Int64")
    out["server_org"] = srv.map(lambda r: r.org).astype("object")
    out["server_scope"] = srv.map(lambda r: r.scope).astype("object")
    out["registered_country"] = srv.map(lambda r: r.registered_country).astype("object")
    out["geo_sources"] = srv.map(_sources_text).astype("object")
    out["geo_disagreement"] = srv.map(lambda r: r.disagreement).astype("bool")

    clients = _ip_column(out, "client_ip")
    cres = {ip: resolver.lookup(ip) for ip in pd.unique(clients)}
    # Only public clients get a country: a LAN address has a scope, not a place.
    cli = clients.map(lambda ip: cres[ip] if cres[ip].scope == "public" else None)
    out["client_country"] = cli.map(lambda r: r.country if r is not None else None).astype("object")
    out["client_asn"] = pd.array(cli.map(lambda r: r.asn if r is not None else None).tolist(), dtype="Int64")
    return out


def _ip_column(frame: pd.DataFrame, name: str) -> pd.Series:
    if name not in frame.columns:
        return pd.Series([""] * len(frame), index=frame.index, dtype="object")
    return frame[name].astype("object").where(frame[name].notna(), "").astype(str)
