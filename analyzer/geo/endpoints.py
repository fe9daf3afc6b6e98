"""The remote endpoint of each flow, the capturing side's vantage, and the speed-of-light check."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


def remote_endpoints(flows: pd.DataFrame, resolver: Any) -> pd.DataFrame:
    """The remote side of each flow: the server, unless only the client is public (inbound)."""
    out = flows.copy()
    inbound = (out["server_scope"] != "public").to_numpy() & np.array(
        [resolver.lookup(ip).scope == "public" for ip in out["client_ip"]], dtype=bool
    )
    out["remote_ip"] = np.where(inbound, out["client_ip"], out["server_ip"])
    remote = [resolver.lookup(ip) for ip in out["remote_ip"]]
    out["remote_country"] = pd.Series([r.country for r in remote], index=out.index, dtype=object)
    out["remote_scope"] = [r.scope for r in remote]
    out["remote_asn"] = pd.Series([r.asn for r in remote], index=out.index, dtype="Int64")
    out["remote_org"] = pd.Series([r.org for r in remote], index=out.index, dtype=object)
    return out


def flow_vantage(flows: pd.DataFrame, resolver: Any, stated: Any) -> dict[str, Any]:
    from analyzer.geo.vantage import vantage_from_ips

    local = sorted(
        {
            c if r == srv else srv
            for c, srv, r in zip(flows["client_ip"], flows["server_ip"], flows["remote_ip"], strict=True)
        }
    )
    mapped = sorted({ip for v in flows.get("stun_mapped", pd.Series(dtype=object)).dropna() for ip in _ips(v)})
    public_local = [ip for ip in local if resolver.lookup(ip).scope == "public"]
    public = sorted(set(mapped) | set(public_local))
    if stated is not None:
        v = stated
    else:
        v = vantage_from_ips(public, resolver)
    return {
        "local_ips": local[:50],
        "public_ips": public[:50],
        "country": v.country,
        "latitude": v.latitude,
        "longitude": v.longitude,
        "source": v.source,
    }


def _ips(value: Any) -> list[str]:
    if isinstance(value, str):
        return [p.rsplit(":", 1)[0] if p.count(":") == 1 else p for p in value.split(",") if p]
    try:
        return [str(x[0]) if isinstance(x, tuple | list) else str(x) for x in value]
    except TypeError:
        return []


def rtt_plausibility(flows: pd.DataFrame, vantage: dict[str, Any]) -> pd.DataFrame:
    """Speed-of-light check per flow. The distance depends only on (vantage, country), so it is
    computed once per country (a border distance costs tens of milliseconds)."""
    from analyzer.geo.plausibility import check_plausible

    out = flows.copy()
    rtt = out["tcp_rtt_ms"].astype(float)
    if "stun_rtt_ms" in out:
        rtt = np.fmin(rtt, out["stun_rtt_ms"].astype(float))
    out["min_rtt_ms"] = rtt
    latlon = (vantage["latitude"], vantage["longitude"]) if vantage.get("latitude") is not None else None
    countries = [
        c if sc == "public" and c and c != "ZZ" else None
        for c, sc in zip(out["remote_country"], out["remote_scope"], strict=True)
    ]
    distance = {c: check_plausible(latlon, c, 0.0)[1] for c in set(countries) if c}
    dist = np.array([distance.get(c, math.nan) if c else math.nan for c in countries], dtype=float)
    bound = rtt.to_numpy() * 100.0  # light in fibre: ~100 km per ms of round trip
    out["geo_distance_km"] = dist
    out["geo_bound_km"] = bound
    out["geo_implausible"] = np.isfinite(dist) & np.isfinite(bound) & (dist > bound)
    return out

