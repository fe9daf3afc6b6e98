"""The session's tables in the report contract (schema confscope.session/1): apps, countries,
local traffic, key exchange, media, meetings, flow records and data attributions."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from analyzer.common.plain import to_plain
from analyzer.session.policy import ROLES

FLOW_REPORT_COLUMNS = (
    "flow_id",
    "transport",
    "client_ip",
    "client_port",
    "server_ip",
    "server_port",
    "first_ts",
    "last_ts",
    "packets_c2s",
    "packets_s2c",
    "bytes_c2s",
    "bytes_s2c",
    "app",
    "app_confidence",
    "protocol",
    "roles",
    "bytes_by_role",
    "other_by_kind",
    "hostname",
    "server_country",
    "server_asn",
    "server_org",
    "remote_ip",
    "remote_country",
    "remote_scope",
    "registered_country",
    "server_country_confidence",
    "community_id",
    "tcp_rtt_ms",
    "min_rtt_ms",
    "app_evidence",
)


def _sum_roles(values: Iterable[Any]) -> dict[str, int]:
    total: dict[str, int] = dict.fromkeys(ROLES, 0)
    for d in values:
        if isinstance(d, dict):
            for k, v in d.items():
                total[k] = total.get(k, 0) + int(v)
    return {k: v for k, v in total.items() if v}


def _count_roles(values: Iterable[Any]) -> dict[str, int]:
    """Flows tagged with each role. A flow can carry several roles while each of its bytes is
    counted once, under the role of the packet that carried it (`bytes_by_role`): a key-delivery
    TLS channel is signaling and key exchange, and all its bytes are key exchange. So a role can
    have flows here and no bytes there."""
    total: dict[str, int] = dict.fromkeys(ROLES, 0)
    for roles in values:
        if isinstance(roles, list | tuple | set | frozenset | np.ndarray):
            for r in roles:
                total[str(r)] = total.get(str(r), 0) + 1
    return {k: v for k, v in total.items() if v}


def apps_table(flows: pd.DataFrame) -> list[dict[str, Any]]:
    if flows.empty:
        return []
    g = flows.groupby(flows["app"].fillna("unknown"))
    out = [
        {
            "app": app,
            "flows": len(df),
            "packets": int(df["packets"].sum()),
            "bytes": int(df["bytes"].sum()),
            "bytes_by_role": _sum_roles(df["bytes_by_role"]),
        }
        for app, df in g
    ]
    return sorted(out, key=lambda r: -r["bytes"])


def countries_table(flows: pd.DataFrame) -> list[dict[str, Any]]:
    pub = flows[flows["remote_scope"] == "public"]
    if pub.empty:
        return []
    out = []
    for cc, df in pub.groupby(pub["remote_country"].fillna("ZZ")):
        out.append(
            {
                "country": cc,
                "flows": len(df),
                "packets": int(df["packets"].sum()),
                "bytes": int(df["bytes"].sum()),
                "bytes_by_role": _sum_roles(df["bytes_by_role"]),
                "flows_by_role": _count_roles(df["roles"]),
                "apps": sorted(set(df["app"].fillna("unknown"))),
                "asns": sorted({int(a) for a in df["remote_asn"].dropna()}),
            }
        )
    return sorted(out, key=lambda r: -r["bytes"])


def local_table(flows: pd.DataFrame) -> dict[str, Any]:
    loc = flows[flows["remote_scope"] != "public"]
    return {
        "flows": len(loc),
        "packets": int(loc["packets"].sum()) if len(loc) else 0,
        "bytes": int(loc["bytes"].sum()) if len(loc) else 0,
        "by_scope": {str(k): int(v) for k, v in loc["remote_scope"].value_counts().items()},
        "bytes_by_role": _sum_roles(loc["bytes_by_role"]),
        "flows_by_role": _count_roles(loc["roles"]) if len(loc) else {},
    }


def _has_role(roles: Any, role: str) -> bool:
    return isinstance(roles, list | tuple | set | frozenset | np.ndarray) and role in list(roles)


def key_exchange_table(flows: pd.DataFrame) -> list[dict[str, Any]]:
    kx = flows[[_has_role(r, "key_exchange") for r in flows["roles"]]] if len(flows) else flows
    return [
        {
            "flow_id": int(r["flow_id"]),
            "app": r["app"],
            "protocol": r["protocol"],
            "server_ip": r["remote_ip"],
            "server_port": int(r["server_port"] if r["remote_ip"] == r["server_ip"] else r["client_port"]),
            "hostname": _opt(r.get("hostname")),
            "country": _opt(r["remote_country"]),
            "location_confidence": _opt(r.get("server_country_confidence")),
            "asn": _opt_int(r["remote_asn"]),
            "org": _opt(r["remote_org"]),
            "scope": r["remote_scope"],
            "bytes": int(r["bytes"]),
            "first_ts": float(r["first_ts"]),
            **key_exchange_evidence(r),
        }
        for _, r in kx.iterrows()
    ]


def _truthy(value: Any) -> bool:
    if value is None or value is pd.NA:
        return False
    if isinstance(value, float):
        return not math.isnan(value) and bool(value)
    if isinstance(value, list | tuple | set | np.ndarray):
        return len(value) > 0
    return bool(value)


def key_exchange_evidence(r: Any) -> dict[str, str]:
    """`observed` when the capture shows the key exchange itself (DTLS-SRTP handshake with
    use_srtp, SDES a=crypto or MIKEY in SDP, ZRTP), else `inferred` with the rule that named it."""
    sdp = r.get("sdp_key_exchange")
    sdp_items = set(sdp.split(",")) if isinstance(sdp, str) else set(sdp) if _truthy(sdp) else set()
    seen = []
    if _truthy(r.get("dtls_use_srtp")):
        seen.append("DTLS-SRTP handshake with use_srtp")
    if "crypto" in sdp_items:
        seen.append("SDES a=crypto in SDP")
    if "mikey" in sdp_items or "key-mgmt" in sdp_items:
        seen.append("MIKEY in SDP")
    if _truthy(r.get("zrtp")):
        seen.append("ZRTP handshake")
    if seen:
        return {"key_exchange_status": "observed", "key_exchange_evidence": "; ".join(seen)}
    rule = r.get("app_evidence")
    rule = rule if isinstance(rule, str) and rule else f"{r.get('protocol')} flow classified as {r.get('app')}"
    if _truthy(r.get("dtls_handshake")):
        rule = f"DTLS handshake without use_srtp seen; {rule}"
    return {"key_exchange_status": "inferred", "key_exchange_evidence": f"rule: {rule}"}


# Streams listed per media flow in the report; the rest are counted (`streams_total`). One flow
# can carry any number of SSRCs (100 000 made a 44 MB report.html); real calls have a handful.
MAX_LISTED_STREAMS = 64


def _listed(df: pd.DataFrame) -> pd.DataFrame:
    """The streams of one flow that the report lists: flagged ones (ECB-like, unencrypted) first,
    then the largest, in their original order."""
    if len(df) <= MAX_LISTED_STREAMS:
        return df
    flagged = pd.Series(False, index=df.index)
    for col in ("ecb_like", "unencrypted_like"):
        if col in df:
            flagged |= df[col].fillna(False).astype(bool)
    size = df["bytes"] if "bytes" in df else pd.Series(0, index=df.index)
    rank = pd.DataFrame({"f": ~flagged, "b": -size.fillna(0)}).sort_values(["f", "b"], kind="stable")
    return df.loc[sorted(rank.index[:MAX_LISTED_STREAMS], key=df.index.get_loc)]


def media_table(
    flows: pd.DataFrame, streams: pd.DataFrame, seconds: pd.DataFrame | None = None,
    over_cap: dict[int, int] | None = None,
) -> list[dict[str, Any]]:
    """One record per media flow with its streams (at most MAX_LISTED_STREAMS listed). The
    `streams_total` of a flow counts every stream seen on it, also those beyond the media tap's
    stream cap (`over_cap`: flow_id -> streams counted but not measured)."""
    from analyzer.session.streams import all_series

    med = flows[[_has_role(r, "media") for r in flows["roles"]]] if len(flows) else flows
    by_flow: dict[int, list[dict[str, Any]]] = {}
    totals: dict[int, int] = {}
    # One pass over the time series, not one scan of it per stream (there may be thousands).
    series = all_series(seconds) if seconds is not None else {}
    if not streams.empty and "flow_id" in streams:
        keep = [k for k in STREAM_FIELDS if k in streams.columns]
        for fid, df in streams.groupby("flow_id"):
            totals[int(fid)] = len(df)
            listed = _listed(df)[keep].to_dict("records")
            by_flow[int(fid)] = [{k: to_plain(v) for k, v in rec.items()} for rec in listed]
            if seconds is not None and not seconds.empty:
                for rec in by_flow[int(fid)]:
                    rec["series"] = series.get(rec["stream_id"]) or {"bin_s": 1, "t_s": []}
    return [
        {
            "flow_id": int(r["flow_id"]),
            "app": r["app"],
            "protocol": r["protocol"],
            "server_ip": r["remote_ip"],
            "server_port": int(r["server_port"]),
            "country": _opt(r["remote_country"]),
            "location_confidence": _opt(r.get("server_country_confidence")),
            "asn": _opt_int(r["remote_asn"]),
            "org": _opt(r["remote_org"]),
            "packets": int(r["packets"]),
            "bytes": int(r["bytes"]),
            "media_bytes": int((r["bytes_by_role"] or {}).get("media", 0))
            if isinstance(r["bytes_by_role"], dict)
            else 0,
            "streams": by_flow.get(int(r["flow_id"]), []),
            # beyond the contract: how many streams the flow had (the list stops at MAX_LISTED_STREAMS)
            "streams_total": totals.get(int(r["flow_id"]), 0) + (over_cap or {}).get(int(r["flow_id"]), 0),
            "streams_over_cap": (over_cap or {}).get(int(r["flow_id"]), 0),
        }
        for _, r in med.iterrows()
    ]


# The fields of each stream record of the report's media table (docs/media.md).
STREAM_FIELDS = (
    "stream_id",
    "verdict",
    "verdict_reason",
    "ssrc",
    "media_type",
    "dir",
    "meeting",
    "participant",
    "payload_type",
    "payload_types",
    "packets",
    "bytes",
    "wire_bytes",
    "udp_bytes",
    "payload_bytes",
    "duration_s",
    "bitrate_bps",
    "payload_bitrate_bps",
    "rate_note",
    "frames",
    "frames_marked",
    "frame_rate_fps",
    "frame_bytes_mean",
    "frame_bytes_std",
    "frame_bytes_min",
    "frame_bytes_max",
    "packets_per_frame",
    "lost",
    "expected",
    "loss_fraction",
    "reordered",
    "duplicates",
    "clock_rate",
    "jitter_clock_assumed",
    "clock_source",
    "sdp_encoding",
    "jitter_ms",
    "frame_jitter_ms",
    "rtcp_sender_reports",
    "rtcp_rtt_samples",
    "rtcp_rtt_ms",
    "ecb_blocks",
    "ecb_repeats",
    "ecb_like",
    "unencrypted_like",
)


def meetings_table(flows: pd.DataFrame) -> list[dict[str, Any]]:
    """Flows of one app whose activity overlaps in time form one meeting (unknown/DNS excluded)."""
    out = []
    apps = flows[~flows["app"].fillna("unknown").isin(["unknown", "webrtc"])] if len(flows) else flows
    for app, df in apps.groupby("app"):
        spans = sorted(zip(df["first_ts"], df["last_ts"], df["flow_id"], strict=True))
        start, end, ids = spans[0][0], spans[0][1], [spans[0][2]]
        for s, e, fid in spans[1:]:
            if s <= end + 30.0:  # a 30 s gap still belongs to the same meeting
                end, ids = max(end, e), [*ids, fid]
            else:
                out.append(_meeting(app, start, end, ids))
                start, end, ids = s, e, [fid]
        out.append(_meeting(app, start, end, ids))
    return out


def _meeting(app: str, start: float, end: float, ids: list[int]) -> dict[str, Any]:
    return {
        "app": app,
        "start_ts": float(start),
        "end_ts": float(end),
        "duration_s": float(end - start),
        "flow_ids": sorted(int(i) for i in ids),
    }


def flow_records(flows: pd.DataFrame) -> list[dict[str, Any]]:
    cols = [c for c in FLOW_REPORT_COLUMNS if c in flows]
    return [{k: to_plain(v) for k, v in zip(cols, row, strict=True)} for row in flows[cols].itertuples(index=False)]


def attributions(resolver: Any) -> list[dict[str, str]]:
    out = [
        {"text": "IP Geolocation by DB-IP", "url": "https://db-ip.com"},
        {"text": "ASN data: RouteViews, NRO and DB-IP via ip-location-db (CC BY 4.0)", "url": ""},
        {"text": "Country and RIR data: NRO / RIR delegated statistics (iptocc)", "url": ""},
        {"text": "Map: Natural Earth (public domain) via world-atlas", "url": ""},
    ]
    if any("GeoLite" in str(d.get("type", "")) for d in resolver.provenance()):
        out.append({"text": "This product includes GeoLite2 data created by MaxMind", "url": "https://www.maxmind.com"})
    return out


def _opt(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return None
    return v


def _opt_int(v: Any) -> int | None:
    v = _opt(v)
    return None if v is None else int(v)
