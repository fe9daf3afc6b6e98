"""Media streams as the session reports them: stream ids, meetings and participants, and the
per-second time series (a pandas frame for the API and Parquet, compact series for the report).

Byte counts (also in docs): `wire_bytes` (= `bytes`) are captured frame lengths, link header
included, as everywhere else in confscope; `udp_bytes` are UDP payload lengths, what
zoom-analysis counts (34 bytes less per packet on Ethernet/IPv4); `payload_bytes` are what
follows the RTP header (SRTP tag and padding included). Frame sizes are in payload bytes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analyzer.dissect.zoom import ZOOM_UDP_PORTS

SERIES_MAX_POINTS = 600  # per stream in the report; longer calls are binned coarser (Parquet keeps all)
SERIES_COLUMNS = ("packets", "bitrate_bps", "frames", "frame_rate_fps", "lost", "jitter_ms")


def with_stream_ids(streams: pd.DataFrame, flows: pd.DataFrame) -> pd.DataFrame:
    """streams plus `stream_id` (row number of the tap's table), `meeting` and `participant`.

    Meetings follow what the capture shows, as zoom-analysis groups them: every stream of one
    Zoom SFU flow (server port one of Zoom's multimedia-router ports, dissect/zoom.py) is one
    meeting (`sfu <server>:<port>`); any other
    media flow is one two-party meeting of its endpoints (`p2p <a>-<b>`; a WebRTC/SIP call
    through a media server shows as the pair client-server, the capture cannot tell more).
    Participant: for Zoom, the SSRC without its low byte (a client's audio
    0x..02 and video 0x..01 share the upper 24 bits, checked on zoom_p2p.pcapng), otherwise
    the sending endpoint. Both are inferences from the capture, not identities."""
    out = streams.copy()
    out["stream_id"] = np.arange(len(out), dtype=np.int64)
    if out.empty:
        out["meeting"], out["participant"] = pd.Series(dtype=object), pd.Series(dtype=object)
        return out
    cols = ["flow_id", "client_ip", "client_port", "server_ip", "server_port"]
    f = flows[cols].copy() if set(cols) <= set(flows.columns) else pd.DataFrame(columns=cols)
    f["flow_id"] = pd.to_numeric(f["flow_id"], errors="coerce")
    fid = pd.to_numeric(out["flow_id"], errors="coerce")
    m = pd.DataFrame({"flow_id": fid.to_numpy()}).merge(f.drop_duplicates("flow_id"), on="flow_id", how="left")
    known = m["server_ip"].notna().to_numpy()
    sport = pd.to_numeric(m["server_port"], errors="coerce").fillna(-1).astype(np.int64).to_numpy()
    cport = pd.to_numeric(m["client_port"], errors="coerce").fillna(-1).astype(np.int64).to_numpy()
    server = m["server_ip"].astype(str).to_numpy(object) + ":" + sport.astype(str).astype(object)
    client = m["client_ip"].astype(str).to_numpy(object) + ":" + cport.astype(str).astype(object)
    zoom = out["zoom"].to_numpy(bool) if "zoom" in out else np.zeros(len(out), bool)
    sfu = zoom & (sport >= ZOOM_UDP_PORTS.start) & (sport < ZOOM_UDP_PORTS.stop)
    lo, hi = np.where(server < client, server, client), np.where(server < client, client, server)
    meeting = np.where(sfu, "sfu " + server, "p2p " + lo + "-" + hi)
    dirs = out["dir"].to_numpy(np.int64) if "dir" in out else np.zeros(len(out), np.int64)
    sender = np.where(dirs == 0, client, server)
    ssrc = out["ssrc"].to_numpy(np.int64)
    zoom_part = np.array([f"zoom {x >> 8:#08x}" for x in ssrc.tolist()], dtype=object)
    plain_part = sender + np.array([f" ssrc {x:#x}" for x in ssrc.tolist()], dtype=object)
    out["meeting"] = np.where(known, meeting, None)
    out["participant"] = np.where(known, np.where(zoom, zoom_part, plain_part), None)
    return out


def stream_seconds(streams: pd.DataFrame, seconds: pd.DataFrame | None, first_ts: float | None) -> pd.DataFrame:
    """The tap's (stream, second) rows with stream_id, flow_id, ssrc, media_type, `t_s` (seconds
    since the capture's first packet) and frame rate (frames that ended in that second)."""
    cols = ["stream_id", "flow_id", "ssrc", "media_type", "second", "t_s", "packets", "wire_bytes",
            "payload_bytes", "bitrate_bps", "frames", "frame_bytes", "frame_rate_fps", "lost", "jitter_ms"]
    if seconds is None or seconds.empty or streams.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    df = seconds.rename(columns={"stream": "stream_id"}).copy()
    meta = streams.set_index("stream_id")[["flow_id", "ssrc", "media_type"]]
    df = df.join(meta, on="stream_id")
    df["flow_id"] = pd.to_numeric(df["flow_id"], errors="coerce").astype("Int64")
    base = math.floor(first_ts) if first_ts is not None and math.isfinite(first_ts) else int(df["second"].min())
    df["t_s"] = (df["second"] - base).astype(np.int64)
    df["frame_rate_fps"] = df["frames"].astype(np.float64)
    return df[cols].reset_index(drop=True)


def stream_series(df: pd.DataFrame, max_points: int = SERIES_MAX_POINTS) -> dict[str, Any]:
    """One stream's series for the report from its rows of `stream_seconds` (see all_series)."""
    out = all_series(df, max_points)
    return next(iter(out.values())) if out else {"bin_s": 1, "t_s": [], **{c: [] for c in SERIES_COLUMNS}}


def all_series(seconds: pd.DataFrame, max_points: int = SERIES_MAX_POINTS) -> dict[int, dict[str, Any]]:
    """stream_id -> its series for the report: t_s and the SERIES_COLUMNS, binned to at most
    `max_points` per stream (counts summed, rates per second of the bin, jitter = the bin's last
    value). One grouping over all streams: a capture may hold thousands of them."""
    if seconds is None or seconds.empty:
        return {}
    df = seconds[["stream_id", "t_s", "packets", "wire_bytes", "frames", "lost", "jitter_ms"]]
    sid = df["stream_id"].to_numpy(np.int64)
    t = df["t_s"].to_numpy(np.int64)
    lo = pd.Series(t).groupby(sid).min()
    hi = pd.Series(t).groupby(sid).max()
    bin_by_stream = np.maximum(1, np.ceil((hi - lo + 1) / max_points)).astype(np.int64)
    bin_s = bin_by_stream.reindex(sid).to_numpy(np.int64)
    work = df.assign(bin=(t // bin_s) * bin_s, bin_s=bin_s)
    g = work.groupby(["stream_id", "bin"], sort=True)
    agg = g.agg(packets=("packets", "sum"), wire_bytes=("wire_bytes", "sum"), frames=("frames", "sum"),
                lost=("lost", "sum"), jitter_ms=("jitter_ms", "last"), bin_s=("bin_s", "first")).reset_index()
    width = agg["bin_s"].to_numpy(np.float64)
    cols = {
        "t_s": agg["bin"].astype(np.int64).tolist(),
        "packets": agg["packets"].astype(np.int64).tolist(),
        "bitrate_bps": np.round(agg["wire_bytes"].to_numpy(np.float64) * 8.0 / width, 3).tolist(),
        "frames": agg["frames"].astype(np.int64).tolist(),
        "frame_rate_fps": np.round(agg["frames"].to_numpy(np.float64) / width, 3).tolist(),
        "lost": agg["lost"].astype(np.int64).tolist(),
        "jitter_ms": [None if not math.isfinite(v) else round(v, 3) for v in agg["jitter_ms"].astype(float)],
    }
    ids = agg["stream_id"].to_numpy(np.int64)
    bounds = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])
    out: dict[int, dict[str, Any]] = {}
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        out[int(ids[a])] = {"bin_s": int(width[a]), **{k: v[a:b] for k, v in cols.items()}}
    return out


def media_summary(media: Any, streams: pd.DataFrame) -> dict[str, Any]:
    """Counts of the media tap for the report: streams measured, over the cap, notes."""
    return {
        "streams": len(streams),
        "streams_over_cap": int(getattr(media, "streams_over_cap", 0) or 0),
        "packets_over_cap": int(getattr(media, "packets_over_cap", 0) or 0),
        "notes": list(getattr(media, "notes", []) or []),
        "byte_counting": "bytes/wire_bytes: captured frame lengths; udp_bytes: UDP payload lengths "
                         "(zoom-analysis counts these); payload_bytes: after the RTP header",
    }


def sdp_clocks(flows: pd.DataFrame) -> dict[tuple[str, int], dict[int, tuple[str, str, int]]]:
    """(ip, port) an SDP announced for receiving media -> {PT: (media, encoding, clock)}."""
    out: dict[tuple[str, int], dict[int, tuple[str, str, int]]] = {}
    if "sdp_rtpmap" not in flows:
        return out
    for items in flows["sdp_rtpmap"]:
        if not isinstance(items, list | tuple):
            continue
        for item in items:
            try:
                ip, port, media, pt, enc, clock = item
                out.setdefault((str(ip), int(port)), {})[int(pt)] = (str(media), str(enc), int(clock))
            except (TypeError, ValueError):
                continue
    return out


def apply_sdp_clocks(streams: pd.DataFrame, seconds: pd.DataFrame | None, flows: pd.DataFrame,
                     media: Any) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Streams whose endpoint an SDP announced take that SDP's clock for their payload type
    (a=rtpmap, RFC 8866 6.6): clock_rate, clock_source "sdp", the encoding, the media type when the
    payload type did not say, and the packet, frame and per-second jitter re-expressed at that clock
    (the tap keeps them at every candidate clock of analyzer.scan.media.RATES; a clock outside
    those keeps the tap's jitter and says so in `clock_source`). The receiving endpoint's SDP is
    looked up first, then the sender's (offer and answer normally agree)."""
    from analyzer.scan.media import RATES

    clocks = sdp_clocks(flows)
    units = getattr(media, "jitter_units", None)
    if not clocks or streams.empty or units is None or len(units) != len(streams):
        return streams, seconds
    funits = media.frame_jitter_units
    sunits = media.seconds_jitter_units
    out = streams.copy()
    for col, default in (("sdp_encoding", None),):
        if col not in out:
            out[col] = default
    secs = seconds.copy() if seconds is not None else None
    info = flows.set_index("flow_id")
    for pos, r in enumerate(out.itertuples(index=False)):
        if r.flow_id not in info.index or pd.isna(r.flow_id):
            continue
        f = info.loc[r.flow_id]
        client, server = (str(f["client_ip"]), int(f["client_port"])), (str(f["server_ip"]), int(f["server_port"]))
        dst, src = (server, client) if int(r.dir) == 0 else (client, server)
        found = clocks.get(dst, {}).get(int(r.payload_type)) or clocks.get(src, {}).get(int(r.payload_type))
        if found is None:
            continue
        kind, enc, clock = found
        idx = out.index[pos]
        out.at[idx, "sdp_encoding"] = enc
        if out.at[idx, "media_type"] == "unknown" and kind in ("audio", "video"):
            out.at[idx, "media_type"] = kind
        if clock not in RATES:
            out.at[idx, "clock_source"] = f"sdp {clock} Hz (jitter at the {int(r.clock_rate)} Hz clock)"
            continue
        j = RATES.index(clock)
        out.at[idx, "clock_rate"] = clock
        out.at[idx, "clock_source"] = "sdp"
        out.at[idx, "jitter_clock_assumed"] = False
        out.at[idx, "jitter_ms"] = units[pos, j] / clock * 1000.0
        out.at[idx, "frame_jitter_ms"] = funits[pos, j] / clock * 1000.0
        if secs is not None and sunits is not None and len(sunits) == len(secs) and "stream" in secs:
            rows = np.flatnonzero(secs["stream"].to_numpy() == pos)
            secs.loc[secs.index[rows], "jitter_ms"] = sunits[rows, j] / clock * 1000.0
    return out, secs
