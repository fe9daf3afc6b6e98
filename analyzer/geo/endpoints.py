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
    """Where the capture was taken, from evidence: STUN/TURN answers sent *towards* the capturing
    host (their (XOR-)MAPPED-ADDRESS is that host's public address) and its own public addresses.

    Relayed addresses (XOR-RELAYED-ADDRESS, MS-TURN's Allocate MAPPED-ADDRESS) and addresses that
    are the remote end of any flow (servers, relays, peers) never become the client; they are
    listed as rejected alternatives with the reason.
    """
    from analyzer.geo.vantage import vantage_from_evidence

    remotes = {str(r) for r in flows["remote_ip"]} if len(flows) else set()
    local = sorted(
        {
            c if r == srv else srv
            for c, srv, r in zip(flows["client_ip"], flows["server_ip"], flows["remote_ip"], strict=True)
        }
    )
    relayed = {ip for v in flows.get("stun_relayed", pd.Series(dtype=object)).dropna() for ip in _ips(v)}
    candidates: list[tuple[str, str]] = []  # (ip, how it was learnt)
    rejected: list[dict[str, str]] = []
    has_c2s = "stun_mapped_c2s" in flows
    for row in flows.itertuples(index=False):
        inbound = row.remote_ip == row.client_ip  # the capturing host is the flow's server side
        col = "stun_mapped_c2s" if inbound else "stun_mapped"
        if inbound and not has_c2s:
            continue
        for ip in _ips(getattr(row, col, None)):
            candidates.append((ip, f"STUN answer from {row.remote_ip} (flow {int(row.flow_id)})"))
    for ip in local:
        if resolver.lookup(ip).scope == "public":
            candidates.append((ip, "the capturing host's own public address"))
    accepted: list[tuple[str, str]] = []
    for ip, how in candidates:
        if ip in relayed:
            rejected.append({"ip": ip, "reason": f"a TURN relayed address ({how}), the relay's, not the client's"})
        elif ip in remotes:
            rejected.append({"ip": ip, "reason": f"the remote end of a flow (server, relay or peer), {how}"})
        elif resolver.lookup(ip).scope != "public":
            continue
        else:
            accepted.append((ip, how))
    for ip in sorted(relayed):
        rejected.append({"ip": ip, "reason": "a TURN relayed address (XOR-RELAYED-ADDRESS or MS-TURN Allocate "
                                              "MAPPED-ADDRESS): the relay's, never the client's"})
    rejected = [dict(t) for t in {tuple(sorted(r.items())) for r in rejected}]
    rejected.sort(key=lambda r: r["ip"])
    public = sorted({ip for ip, _ in accepted})
    if stated is not None:
        v, evidence, confidence = stated, [{"source": stated.source, "ip": None, "country": stated.country,
                                            "detail": "stated with --vantage"}], "stated"
    else:
        v, evidence, confidence = vantage_from_evidence(accepted, resolver)
    return {
        "local_ips": local[:50],
        "public_ips": public[:50],
        "country": v.country,
        "latitude": v.latitude,
        "longitude": v.longitude,
        "source": v.source,
        "confidence": confidence,
        "evidence": evidence[:50],
        "rejected": rejected[:50],
    }


def flow_min_rtt(flows: pd.DataFrame) -> pd.Series:
    """Smallest round trip per flow (TCP handshake, STUN request/answer, DTLS hello), NaN where none
    was seen."""
    rtt = flows["tcp_rtt_ms"].astype(float) if "tcp_rtt_ms" in flows else pd.Series(np.nan, index=flows.index)
    for col in ("stun_rtt_ms", "dtls_rtt_ms"):
        if col in flows:
            rtt = np.fmin(rtt, flows[col].astype(float))
    return rtt


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
    rtt = flow_min_rtt(out)
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



# The server's own names. Certificate SANs are left out: one certificate often covers every
# facility of an operator (*.zoom.us and more), so a code in it says nothing about this server.
_HOSTNAME_COLUMNS = ("hostname", "sni", "http_host")


def _names(value: Any) -> list[str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    try:
        return [str(v) for v in value if isinstance(v, str)]
    except TypeError:
        return []


def locate_endpoints(
    flows: pd.DataFrame, resolver: Any, vantage: dict[str, Any],
) -> tuple[pd.DataFrame, list[dict[str, Any]], list[dict[str, Any]]]:
    """Decide each public remote address's country from evidence (geo/evidence.py).

    Returns the flows with remote_country / server_country set to the decided country and
    `server_country_confidence`, the `endpoints` table of the report, and the pairwise RTT
    conflicts. Work is per distinct address, never per packet.
    """
    from analyzer.geo.evidence import Location, apply_conflicts, decide, gather, pairwise_conflicts

    out = flows.copy()
    if out.empty:
        out["server_country_confidence"] = pd.Series(dtype=object)
        return out, [], []
    out["min_rtt_ms"] = flow_min_rtt(out)
    latlon = (vantage["latitude"], vantage["longitude"]) if vantage.get("latitude") is not None else None
    label = f"the vantage ({vantage.get('country') or 'given coordinates'})"
    # One pass over a narrow view: slicing the full flow table per address costs more than all else.
    cols = [c for c in _HOSTNAME_COLUMNS if c in out]
    public = out.loc[out["remote_scope"] == "public", ["remote_ip", "min_rtt_ms", "app", "bytes", *cols]]
    per_ip: dict[str, dict[str, Any]] = {}
    for row in public.itertuples(index=False, name=None):
        ip, rtt, app, nbytes, names = str(row[0]), row[1], row[2], row[3], row[4:]
        d = per_ip.setdefault(ip, {"names": set(), "rtt": math.inf, "apps": set(), "flows": 0, "bytes": 0})
        for v in names:
            d["names"].update(n for n in _names(v) if n != ip)
        if isinstance(rtt, int | float) and math.isfinite(rtt):
            d["rtt"] = min(d["rtt"], float(rtt))
        d["apps"].add(app if isinstance(app, str) else "unknown")
        d["flows"] += 1
        d["bytes"] += int(nbytes) if isinstance(nbytes, int | float | np.integer) and nbytes == nbytes else 0
    locations: dict[str, Location] = {}
    for ip, d in sorted(per_ip.items()):
        geo = resolver.lookup(ip)
        rtt = d["rtt"] if math.isfinite(d["rtt"]) else None
        ev, ruled_out, anycast = gather(ip, getattr(geo, "answers", ()), d["names"], rtt, latlon, label)
        locations[ip] = decide(ip, ev, ruled_out, anycast, rtt)
    conflicts = pairwise_conflicts(locations.values()) if latlon is None else []
    apply_conflicts(locations, conflicts)

    def decided(ip: str, current: Any) -> Any:
        loc = locations.get(ip)
        return loc.country if loc is not None and loc.country else current

    out["remote_country"] = pd.Series(
        [decided(ip, c) for ip, c in zip(out["remote_ip"], out["remote_country"], strict=True)],
        index=out.index, dtype=object,
    )
    if "server_country" in out:
        out["server_country"] = pd.Series(
            [decided(s, c) if s == r else c
             for s, r, c in zip(out["server_ip"], out["remote_ip"], out["server_country"], strict=True)],
            index=out.index, dtype=object,
        )
    out["server_country_confidence"] = pd.Series(
        [locations[ip].confidence if ip in locations else None for ip in out["remote_ip"]],
        index=out.index, dtype=object,
    )
    table = [_endpoint_row(locations[ip], resolver.lookup(ip), per_ip[ip]) for ip in sorted(locations)]
    table.sort(key=lambda r: (-r["bytes"], r["ip"]))
    return out, table, conflicts


def _endpoint_row(loc: Any, geo: Any, d: dict[str, Any]) -> dict[str, Any]:
    return {
        "ip": loc.ip,
        "country": loc.country,
        "confidence": loc.confidence,
        "evidence": [e.to_dict() for e in loc.evidence],
        "competing": loc.competing,
        "contradictions": loc.contradictions,
        "registered_country": geo.registered_country,
        "asn": geo.asn,
        "org": geo.org,
        "hostnames": sorted(d["names"])[:20],
        "min_rtt_ms": None if loc.min_rtt_ms is None else round(float(loc.min_rtt_ms), 3),
        "anycast": loc.anycast,
        "apps": sorted(d["apps"]),
        "flows": d["flows"],
        "bytes": d["bytes"],
    }
