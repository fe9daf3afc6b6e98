"""Media streams (per SSRC and media type) measured as a scan tap: packets, bytes, loss,
duplicates, reordering, RFC 3550 jitter, frames, frame sizes and rates, a per-second time
series, and the samples for the ECB statistic (analyzer/scan/ecb.py).

`MediaTap.update` is called once per chunk by the scan with the chunk's decoded packets and their
payload kinds; it keeps a fixed set of numbers per stream (last sequence number, arrival, RTP
timestamp, jitter, the open frame) so that chunks of any size give the same figures.
`MediaTap.result` turns them into one row per (flow, direction, SSRC, media type). Everything per
packet is numpy (the header fields come from analyzer/dissect/rtpcolumns.py); Python loops run over
streams, over the seconds of a chunk or over the 16 block alignments only. At most `max_streams`
streams are measured; later ones are counted (memory stays bounded whatever the capture holds).

Definitions (docs/media.md has the long form):
* bytes: `wire_bytes` (= `bytes`) captured frame lengths; `udp_bytes` the UDP payload;
  `payload_bytes` what follows the RTP header (padding and SRTP tag included).
* frame: consecutive in-order packets of a stream with one RTP timestamp; it ends (its time)
  at its last packet's arrival. Late packets join the open frame instead of starting one.
* clock rate: static PTs from RFC 3551; Zoom audio 48 kHz, Zoom video/screen share/FEC 90 kHz
  (protocols.md 1.3; 70,080 ticks in 1.454 s on zoom_p2p.pcapng); a dynamic PT elsewhere: the
  timestamp rate observed, snapped to 8/16/48/90 kHz (`jitter_clock_assumed` says so). The
  session replaces it with an SDP a=rtpmap clock where the capture has one
  (analyzer/session/streams.apply_sdp_clocks), from the jitter kept at every candidate clock.
* rates (bitrate, frame rate) only when the stream spans >= 1 s and >= 10 packets.

Layouts and the ECB procedure: ../shared/research/protocols.md sections 1.3, 2.4 and 5.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analyzer.common.hashing import mix_columns
from analyzer.dissect.kinds import RTCP, RTP, ZOOM_MEDIA
from analyzer.dissect.rtpcolumns import AUDIO, FEC, MEDIA_TYPES, UNKNOWN, VIDEO, rtcp_reports, rtp_header_fields
from analyzer.scan.ecb import ecb_statistics, gather_bytes
from analyzer.scan.groups import factorize

# RFC 3551 tables 4 and 5: static payload types -> (media, clock rate).
STATIC_PT: dict[int, tuple[int, int]] = {
    0: (AUDIO, 8000), 3: (AUDIO, 8000), 4: (AUDIO, 8000), 5: (AUDIO, 8000), 6: (AUDIO, 16000),
    7: (AUDIO, 8000), 8: (AUDIO, 8000), 9: (AUDIO, 8000), 10: (AUDIO, 44100), 11: (AUDIO, 44100),
    12: (AUDIO, 8000), 13: (AUDIO, 8000), 14: (AUDIO, 90000), 15: (AUDIO, 8000), 16: (AUDIO, 11025),
    17: (AUDIO, 22050), 18: (AUDIO, 8000), 25: (VIDEO, 90000), 26: (VIDEO, 90000), 28: (VIDEO, 90000),
    31: (VIDEO, 90000), 32: (VIDEO, 90000), 33: (VIDEO, 90000), 34: (VIDEO, 90000),
}
_STATIC_MEDIA = np.array([STATIC_PT.get(p, (UNKNOWN, 0))[0] for p in range(128)], np.int64)
_STATIC_RATE = np.array([STATIC_PT.get(p, (UNKNOWN, 0))[1] for p in range(128)], np.int64)
# Jitter is accumulated for every candidate clock at once; the stream's clock is chosen at the end.
RATES: tuple[int, ...] = (8000, 11025, 16000, 22050, 44100, 48000, 90000)
DYNAMIC_GUESS_RATES = (8000, 16000, 48000, 90000)  # what a dynamic PT's timestamps are snapped to
ZOOM_FEC_PT = 110  # protocols.md 1.3: cleartext FEC protection header, its own sequence space

SEQ_WINDOW = 64  # a packet repeating a sequence number within this many of the maximum is a duplicate
MAX_STEP = 100  # consecutive seq steps of 1..MAX_STEP make a stream plausible (not random UDP)
JITTER_A = 15.0 / 16.0  # RFC 3550 6.4.1: J += (|D| - J) / 16

# Rates (bitrate, frame rate) need a span that means something: a 0.4 s capture divided by its
# microseconds gave Gbit/s (issue 13). Below either bound the rate is null with the reason.
RATE_MIN_SPAN_S = 1.0
RATE_MIN_PACKETS = 10
MAX_STREAMS = 20_000  # streams kept in full; later ones are counted only (memory stays bounded)
OVERFLOW_KEYS_MAX = 1 << 20  # distinct over-cap stream keys remembered for counting (8 MiB)
MAX_SECOND_ROWS = 2_000_000  # (stream, second) rows of the time series kept, all streams together
RTCP_MAX_RECORDS = 200_000  # sender reports and report blocks kept each, for the RTT
RTT_MAX_S = 10.0  # an RTCP round trip above this is a mismatched report, not a latency

ECB_MAX_PACKETS = 400  # per stream, protocols.md 5
ECB_MAX_REGION = 1500  # bytes of one packet's encrypted region that are kept
ECB_MAX_SAMPLE_BYTES = 32 * 1024 * 1024  # all streams together: bounded memory on huge captures
# SRTP/SRTCP authentication tag (RFC 3711: HMAC-SHA1-80, the default of every SRTP profile in use):
# random-looking, not ciphertext, so it is cut off the measured region. On plain RTP this drops the
# payload's last 10 bytes, which changes no verdict beyond the sample size.
SRTP_TAG_BYTES = 10
_NEG = -(1 << 62)


def _trailer_bytes(buf: np.ndarray, off: np.ndarray, plen: np.ndarray, rel: np.ndarray) -> np.ndarray:
    """Bytes at the end of each RTP packet that are not the encrypted payload: RTP padding (P bit;
    RFC 3550 5.1: its count is the packet's last byte) and the SRTP authentication tag."""
    n = buf.shape[0]
    first = buf[np.clip(off + np.maximum(rel, 0), 0, max(n - 1, 0))].astype(np.int64) if n else np.zeros_like(off)
    last = buf[np.clip(off + plen - 1, 0, max(n - 1, 0))].astype(np.int64) if n else np.zeros_like(off)
    padded = ((first & 0x20) != 0) & (plen > 0)
    return np.where(padded, last, 0) + SRTP_TAG_BYTES


def _payloads(buf: np.ndarray, cols: Any, pk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and lengths of the packets' transport payloads in `buf`; a payload that does not
    lie inside the chunk's bytes gets length 0, so no read can reach past it."""
    off = cols.l4_off[pk].astype(np.int64)
    plen = cols.l4_len[pk].astype(np.int64)
    return off, np.where((off >= 0) & (off + plen <= buf.shape[0]), np.maximum(plen, 0), 0)


def _signed(x: np.ndarray, bits: int) -> np.ndarray:
    half = 1 << (bits - 1)
    return ((x + half) & ((1 << bits) - 1)) - half


def _segment_cummax(values: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Running maximum of `values` restarting at each new value of `seg` (non-decreasing)."""
    if not values.size:
        return values.copy()
    lo = int(values.min())
    span = int(values.max()) - lo + 1
    if span * (int(seg[-1]) + 1) < (1 << 62):
        # Lift each segment above all earlier ones, so one running maximum never crosses segments.
        lift = seg.astype(np.int64) * span
        return np.maximum.accumulate(values - lo + lift) - lift + lo
    out = np.empty_like(values)
    bounds = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1], True])
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        out[a:b] = np.maximum.accumulate(values[a:b])
    return out


def _repeats(keys: np.ndarray) -> np.ndarray:
    """True where an equal key occurred earlier in the array."""
    out = np.ones(keys.size, bool)
    out[np.unique(keys, return_index=True)[1]] = False
    return out


@dataclass
class MediaResult:
    """`streams`: one row per stream (see MediaTap.result); `media_packets`: RTP packets read."""

    streams: pd.DataFrame
    media_packets: int = 0
    dropped_streams: int = 0  # implausible RTP look-alikes (random UDP whose first byte says V=2)
    ecb_sample_truncated: bool = False
    # RFC 3550 jitter in RTP ticks at every candidate clock (columns: RATES), aligned with the
    # rows of `streams` / `seconds`, so a clock learnt later (SDP a=rtpmap) can re-express it.
    jitter_units: np.ndarray | None = None
    frame_jitter_units: np.ndarray | None = None
    seconds_jitter_units: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    # One row per (stream, second): see MediaTap.seconds. Empty when the tap kept no streams.
    seconds: pd.DataFrame | None = None
    streams_over_cap: int = 0  # streams seen beyond MediaTap's max_streams (counted, not measured)
    over_cap_by_flow: dict[int, int] = field(default_factory=dict)  # flow_id (or key) -> such streams
    packets_over_cap: int = 0


_STATE_INT = (
    "flow_key", "adir", "ssrc", "media", "zoom", "first_pt", "packets", "bytes", "first_ns", "last_ns",
    "last_seq", "last_ext", "max_ext", "min_ext", "dups", "reordered", "pt_lo", "pt_hi", "last_rts",
    "ts_span", "jn", "good", "ecb_taken",
    # byte counts (see the module docstring), RTP marker bits
    "udp_bytes", "payload_bytes", "markers",
    # the open frame (RTP timestamp group still receiving packets)
    "fr_open", "fr_rts", "fr_bytes", "fr_pkts", "fr_last_ns", "fr_marker",
    # completed frames: count, payload-size sum/min/max, packets, marker-terminated, frame jitter state
    "frames", "fsize_sum", "fsize_min", "fsize_max", "fpkts_sum", "fmarked", "fj_n", "fj_prev_ns",
    "fj_prev_rts", "first_frame_ns", "last_frame_ns",
)


class MediaTap:
    """Per-stream RTP statistics and ECB samples, fed chunk by chunk (see module docstring)."""

    def __init__(self, *, ecb_packets: int = ECB_MAX_PACKETS, ecb_max_bytes: int = ECB_MAX_SAMPLE_BYTES,
                 max_streams: int = MAX_STREAMS, max_second_rows: int = MAX_SECOND_ROWS) -> None:
        self._reg_keys = np.zeros(0, np.uint64)  # stream keys, sorted, and their stream ids
        self._reg_sids = np.zeros(0, np.int64)
        self._n = 0
        self._s: dict[str, np.ndarray] = {k: np.zeros(0, np.int64) for k in _STATE_INT}
        self._s["flow_key"] = np.zeros(0, np.uint64)
        self._s["pt_lo"] = np.zeros(0, np.uint64)
        self._s["pt_hi"] = np.zeros(0, np.uint64)
        self._jit = np.zeros((0, len(RATES)), np.float64)
        self._fjit = np.zeros((0, len(RATES)), np.float64)  # frame jitter, RFC 3550 over frames
        self._fsq = np.zeros(0, np.float64)  # sum of squared frame sizes
        self._max_streams = max(int(max_streams), 0)
        self._over_keys = np.zeros(0, np.uint64)
        self._over_streams = 0
        self._over_by_flow: dict[int, int] = {}
        self._over_packets = 0
        self._max_second_rows = max_second_rows
        self._second_rows = 0
        self._seconds_truncated = False
        self._sec_parts: list[dict[str, np.ndarray]] = []
        self._rtcp: dict[str, list[dict[str, np.ndarray]]] = {"sr": [], "rb": []}
        self._rtcp_n = {"sr": 0, "rb": 0}
        self._frame_parts: list[dict[str, np.ndarray]] = []
        self._win_sid = np.zeros(0, np.int64)
        self._win_ext = np.zeros(0, np.int64)
        self._ecb_packets = ecb_packets
        self._ecb_max_bytes = ecb_max_bytes
        self._ecb_bytes = 0
        self._ecb_truncated = False
        self._samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.media_packets = 0

    # -- stream registry ------------------------------------------------------------------------
    def _sids(self, skeys: np.ndarray, first: dict[str, np.ndarray]) -> np.ndarray:
        """Stream ids of the (distinct) keys `skeys`; new streams get the next ids, in order."""
        at = np.searchsorted(self._reg_keys, skeys)
        found = np.zeros(skeys.size, bool)
        inside = at < self._reg_keys.size
        found[inside] = self._reg_keys[at[inside]] == skeys[inside]
        pos = np.full(skeys.size, -1, np.int64)
        pos[found] = self._reg_sids[at[found]]
        new = np.flatnonzero(~found)
        room = self._max_streams - self._n
        if new.size > room:
            # Beyond the cap: not measured, only counted (distinct keys up to OVERFLOW_KEYS_MAX).
            rest = new[max(room, 0):]
            over, over_flow = skeys[rest], first["flow_key"][rest]
            if self._over_keys.size < OVERFLOW_KEYS_MAX:
                fresh = ~np.isin(over, self._over_keys)
                self._over_keys = np.union1d(self._over_keys, over[fresh])[:OVERFLOW_KEYS_MAX]
            else:
                fresh = np.ones(over.size, bool)  # a lower bound on repeats, an upper on streams
            self._over_streams += int(fresh.sum())
            # Per flow too, so a flow's stream total in the report includes the unmeasured ones.
            flows, counts = np.unique(over_flow[fresh].astype(np.uint64), return_counts=True)
            for fk, c in zip(flows.tolist(), counts.tolist(), strict=True):
                self._over_by_flow[fk] = self._over_by_flow.get(fk, 0) + c
            new = new[: max(room, 0)]
        if new.size:
            k = new.size
            start = self._n
            self._grow(start + k)
            for name, values in first.items():
                self._s[name][start : start + k] = values[new]
            pos[new] = np.arange(start, start + k)
            order = np.argsort(skeys[new], kind="stable")
            where = np.searchsorted(self._reg_keys, skeys[new][order])
            self._reg_keys = np.insert(self._reg_keys, where, skeys[new][order])
            self._reg_sids = np.insert(self._reg_sids, where, pos[new][order])
            self._n += k
        return pos

    def _grow(self, need: int) -> None:
        cap = self._jit.shape[0]
        if need <= cap:
            return
        cap = max(need, 2 * cap, 64)
        for name, arr in self._s.items():
            out = np.zeros(cap, arr.dtype)
            out[: arr.shape[0]] = arr
            self._s[name] = out
        for name in ("max_ext",):
            self._s[name][self._n :] = _NEG
        jit = np.zeros((cap, len(RATES)), np.float64)
        jit[: self._jit.shape[0]] = self._jit
        self._jit = jit
        fjit = np.zeros((cap, len(RATES)), np.float64)
        fjit[: self._fjit.shape[0]] = self._fjit
        self._fjit = fjit
        fsq = np.zeros(cap, np.float64)
        fsq[: self._fsq.shape[0]] = self._fsq
        self._fsq = fsq

    # -- per chunk ------------------------------------------------------------------------------
    def update(self, chunk, cols, idx: np.ndarray, kinds: np.ndarray, keys: np.ndarray, adir: np.ndarray) -> None:
        """Fold one chunk's packets in. Arguments as in scan.py: `idx` are the decoded packets,
        `kinds`, `keys` (uint64 flow keys) and `adir` (0 = A->B) are aligned with `idx`."""
        self._rtcp_update(chunk, cols, idx, kinds, keys, adir)
        sel = np.flatnonzero((kinds == RTP) | (kinds == ZOOM_MEDIA))
        if not sel.size:
            return
        pk = idx[sel]
        buf = chunk.buf
        off, plen = _payloads(buf, cols, pk)
        k = np.asarray(kinds)[sel]
        zoom = k == ZOOM_MEDIA
        rel, hl, seq, rts, ssrc, pt, zmedia, ok = rtp_header_fields(buf, off, plen, k, cols.sport[pk], cols.dport[pk])
        media = np.where(zoom, np.where(pt == ZOOM_FEC_PT, FEC, zmedia), _STATIC_MEDIA[pt])
        g = np.flatnonzero(ok)
        if not g.size:
            return
        self.media_packets += int(g.size)
        pk, off, plen, rel, hl, zoom = pk[g], off[g], plen[g], rel[g], hl[g], zoom[g]
        seq, rts, ssrc, pt, media = seq[g], rts[g], ssrc[g], pt[g], media[g]
        fkey = np.asarray(keys)[sel[g]].astype(np.uint64)
        fdir = np.asarray(adir)[sel[g]].astype(np.int64)
        ts = chunk.ts_ns[pk].astype(np.int64)
        wire = chunk.wirelen[pk].astype(np.int64)
        b1 = np.zeros(g.size, np.int64)
        inside = (rel >= 0) & (rel + 1 < plen)
        b1[inside] = buf[off[inside] + rel[inside] + 1]
        marker = (b1 & 0x80) != 0  # RFC 3550 5.1: M, the last packet of a video frame

        skey = mix_columns(fkey, fdir, ssrc, media)
        codes, uniq, firsts = factorize(skey)  # streams numbered in order of first appearance
        first = {"flow_key": fkey[firsts], "adir": fdir[firsts], "ssrc": ssrc[firsts], "media": media[firsts],
                 "zoom": zoom[firsts].astype(np.int64), "first_pt": pt[firsts]}
        before = self._s["packets"][: self._n].copy() if self._n else np.zeros(0, np.int64)
        sid_u = self._sids(np.asarray(uniq, np.uint64), first)
        sid = sid_u[codes]
        kept = sid >= 0
        if not kept.all():
            self._over_packets += int((~kept).sum())
            sid = np.where(kept, sid, np.iinfo(np.int64).max)
        order = np.argsort(sid, kind="stable")
        order = order[: int(kept.sum())]
        if not order.size:
            return
        sid = sid[order]
        seq, rts, ts, wire, pt, media = seq[order], rts[order], ts[order], wire[order], pt[order], media[order]
        off, plen, rel, hl, marker = off[order], plen[order], rel[order], hl[order], marker[order]
        n = sid.size
        start = np.r_[True, sid[1:] != sid[:-1]]
        starts = np.flatnonzero(start)
        ends = np.r_[starts[1:], n] - 1
        seg_sid = sid[starts]
        seen = np.zeros(seg_sid.size, bool)
        old = seg_sid < before.shape[0]
        seen[old] = before[seg_sid[old]] > 0
        seg_no = np.cumsum(start) - 1
        s = self._s

        # Sequence numbers: unwrap with signed 16-bit steps from the previous packet of the stream.
        prev_seq = np.r_[0, seq[:-1]]
        prev_seq[starts] = np.where(seen, s["last_seq"][seg_sid], seq[starts])
        d = _signed(seq - prev_seq, 16)
        has_prev = ~start | seen[seg_no]
        cs = np.cumsum(d)
        base = np.where(seen, s["last_ext"][seg_sid], seq[starts]) - (cs[starts] - d[starts])
        ext = cs + base[seg_no]
        cm = _segment_cummax(ext, seg_no)
        prevmax = np.r_[_NEG, cm[:-1]]
        prevmax[starts] = _NEG
        prevmax = np.maximum(prevmax, np.where(seen, s["max_ext"][seg_sid], _NEG)[seg_no])
        old_max = np.where(seen, s["max_ext"][seg_sid], _NEG)
        seg_max = np.maximum(old_max, np.maximum.reduceat(ext, starts))
        dup = self._duplicates(sid, ext, prevmax, seg_sid, seg_max)
        reordered = ~dup & has_prev & (ext < prevmax)
        good = has_prev & (d >= 1) & (d <= MAX_STEP)

        # RFC 3550 6.4.1 jitter, closed form per (stream, second) run: over a run of n packets
        # J_end = a^n J_start + 1/16 sum a^(n-i) |D_i|; the runs of one stream are then chained in
        # order (a loop over seconds, vectorised over streams), which also gives J at each second.
        prev_ts = np.r_[0, ts[:-1]]
        prev_ts[starts] = np.where(seen, s["last_ns"][seg_sid], ts[starts])
        prev_rts = np.r_[0, rts[:-1]]
        prev_rts[starts] = np.where(seen, s["last_rts"][seg_sid], rts[starts])
        ds = _signed(rts - prev_rts, 32)
        dr = (ts - prev_ts).astype(np.float64) / 1e9
        sec = ts // 1_000_000_000
        run_start = start | np.r_[True, sec[1:] != sec[:-1]]
        runs = np.flatnonzero(run_start)
        run_no = np.cumsum(run_start) - 1
        m = runs.size
        run_sid = sid[runs]
        jit_run = np.zeros((m, len(RATES)))
        hp = np.flatnonzero(has_prev)
        cnt = np.bincount(run_no[hp], minlength=m)
        seg_of_run = np.cumsum(start[runs]) - 1
        ccnt = np.cumsum(cnt)
        seg_first_run = np.flatnonzero(start[runs])
        # Jitter samples of the stream up to the end of each run (NaN jitter while there are none).
        jn_run = s["jn"][run_sid] + ccnt - (ccnt - cnt)[seg_first_run][seg_of_run]
        if hp.size:
            hrun = run_no[hp]
            rank = np.arange(hp.size) - np.r_[0, np.cumsum(cnt)[:-1]][hrun] + 1
            w = np.power(JITTER_A, (cnt[hrun] - rank).astype(np.float64)) / 16.0
            absd = np.abs(dr[hp, None] * np.asarray(RATES, np.float64)[None, :] - ds[hp, None])
            add = np.zeros((m, len(RATES)))
            for j in range(len(RATES)):
                add[:, j] = np.bincount(hrun, weights=w * absd[:, j], minlength=m)
            decay = np.power(JITTER_A, cnt.astype(np.float64))[:, None]
            rank_run = np.arange(m) - seg_first_run[seg_of_run]
            for k in range(int(rank_run.max()) + 1 if m else 0):
                at_k = np.flatnonzero(rank_run == k)
                rs = run_sid[at_k]
                self._jit[rs] = decay[at_k] * self._jit[rs] + add[at_k]
                jit_run[at_k] = self._jit[rs]
            s["jn"][seg_sid] += np.bincount(seg_no[hp], minlength=starts.size)
            s["ts_span"][seg_sid] += np.bincount(seg_no[hp], weights=ds[hp], minlength=starts.size).astype(np.int64)
        else:
            jit_run[:] = self._jit[run_sid]

        # Payload bytes: after the RTP header (padding and SRTP tag included); UDP bytes: the UDP
        # payload (what zoom-analysis counts); wire bytes: the captured frame's length.
        pay = np.maximum(plen - rel - hl, 0)
        # Loss per second: a packet above the running maximum skips ext - max - 1 numbers; a late
        # (reordered) one returns one of them. Summed over the seconds this is the stream's loss.
        first_ever = prevmax == _NEG
        gap = np.where(~dup & ~first_ever & (ext > prevmax), ext - prevmax - 1, 0) - (reordered & ~dup)
        self._keep_seconds(run_sid, sec[runs], {
            "packets": np.add.reduceat(np.ones(n, np.int64), runs),
            "wire_bytes": np.add.reduceat(wire, runs),
            "payload_bytes": np.add.reduceat(pay, runs),
            "lost": np.add.reduceat(gap, runs),
        }, jit_run, jn_run)
        self._frames_update(sid, starts, seg_no, seg_sid, seen, ts, rts, pay, marker, dup, reordered)

        def seg_sum(x: np.ndarray) -> np.ndarray:
            return np.add.reduceat(x.astype(np.int64), starts)

        s["packets"][seg_sid] += ends - starts + 1
        s["bytes"][seg_sid] += seg_sum(wire)
        s["udp_bytes"][seg_sid] += seg_sum(plen)
        s["payload_bytes"][seg_sid] += seg_sum(pay)
        s["markers"][seg_sid] += seg_sum(marker)
        s["first_ns"][seg_sid] = np.where(seen, s["first_ns"][seg_sid], ts[starts])
        s["last_ns"][seg_sid] = ts[ends]
        s["last_seq"][seg_sid] = seq[ends]
        s["last_ext"][seg_sid] = ext[ends]
        s["last_rts"][seg_sid] = rts[ends]
        s["max_ext"][seg_sid] = seg_max
        seg_min = np.minimum.reduceat(ext, starts)
        s["min_ext"][seg_sid] = np.where(seen, np.minimum(s["min_ext"][seg_sid], seg_min), seg_min)
        s["dups"][seg_sid] += seg_sum(dup)
        s["reordered"][seg_sid] += seg_sum(reordered)
        good_before = s["good"][seg_sid].copy()
        s["good"][seg_sid] += seg_sum(good)
        lo_bits = np.where(pt < 64, np.left_shift(np.uint64(1), np.minimum(pt, 63).astype(np.uint64)), np.uint64(0))
        hi_bits = np.where(pt >= 64, np.left_shift(np.uint64(1), (np.maximum(pt, 64) - 64).astype(np.uint64)),
                           np.uint64(0))
        s["pt_lo"][seg_sid] |= np.bitwise_or.reduceat(lo_bits.astype(np.uint64), starts)
        s["pt_hi"][seg_sid] |= np.bitwise_or.reduceat(hi_bits.astype(np.uint64), starts)

        # ECB sample: a stream becomes plausible at its first 1..MAX_STEP sequence step; from then
        # on its first ECB_MAX_PACKETS non-duplicate, non-FEC packets with a 16-byte region are kept.
        cgood = np.cumsum(good)
        plausible = good_before[seg_no] + cgood - (cgood[starts] - good[starts])[seg_no] > 0
        region_start = rel + hl
        region_len = np.minimum(plen - region_start - _trailer_bytes(buf, off, plen, rel), ECB_MAX_REGION)
        elig = plausible & ~dup & (media != FEC) & (region_len >= 16)
        ce = np.cumsum(elig)
        rank_e = ce - (ce[starts] - elig[starts])[seg_no] - 1
        take = elig & (s["ecb_taken"][seg_sid][seg_no] + rank_e < self._ecb_packets)
        t = np.flatnonzero(take)
        if t.size:
            s["ecb_taken"][seg_sid] += np.bincount(seg_no[t], minlength=starts.size)
            lens = region_len[t]
            room = self._ecb_max_bytes - self._ecb_bytes
            fits = np.cumsum(lens) <= room
            if not fits.all():
                self._ecb_truncated = True
                t, lens = t[fits], lens[fits]
            if t.size:
                data = gather_bytes(buf, off[t] + region_start[t], lens)
                self._samples.append((sid[t].copy(), lens.copy(), data))
                self._ecb_bytes += int(lens.sum())

    def _duplicates(
        self, sid: np.ndarray, ext: np.ndarray, prevmax: np.ndarray, seg_sid: np.ndarray, seg_max: np.ndarray
    ) -> np.ndarray:
        """Packets whose extended seq was already seen in the stream, within SEQ_WINDOW of the max.

        The window of recent sequence numbers is carried between chunks, so the answer does not
        depend on where the chunks were cut. `seg_max` is each stream's maximum after this chunk.
        """
        keep = np.isin(self._win_sid, seg_sid)
        w_sid, w_ext = self._win_sid[keep], self._win_ext[keep]
        all_sid = np.r_[w_sid, sid]
        all_ext = np.r_[w_ext, ext]
        # Only a packet at or below the running maximum can repeat a number (the usual in-order
        # stream skips the hash table entirely).
        if (ext <= prevmax).any():
            key = all_sid * (1 << 40) + (all_ext + (1 << 39))
            repeat = _repeats(key)
            dup = repeat[w_sid.size :] & (ext > prevmax - SEQ_WINDOW)
            all_sid, all_ext = all_sid[~repeat], all_ext[~repeat]
        else:
            dup = np.zeros(ext.size, bool)
        top = np.full(self._n, _NEG, np.int64)
        top[seg_sid] = seg_max
        near = all_ext > top[all_sid] - SEQ_WINDOW
        self._win_sid = np.r_[self._win_sid[~keep], all_sid[near]]
        self._win_ext = np.r_[self._win_ext[~keep], all_ext[near]]
        return dup


    # -- RTCP round trips -------------------------------------------------------------------------
    def _rtcp_update(self, chunk, cols, idx: np.ndarray, kinds: np.ndarray, keys: np.ndarray,
                     adir: np.ndarray) -> None:
        """Keep the sender reports and the report blocks (with an LSR) of this chunk, with their
        flow, direction and arrival; they are paired in `_rtcp_rtt` (bounded by RTCP_MAX_RECORDS)."""
        sel = np.flatnonzero((kinds == RTCP) | (kinds == ZOOM_MEDIA))
        if not sel.size:
            return
        pk = idx[sel]
        buf = chunk.buf
        off, plen = _payloads(buf, cols, pk)
        srs, blocks = rtcp_reports(buf, off, plen, np.asarray(kinds)[sel], cols.sport[pk].astype(np.int64),
                                   cols.dport[pk].astype(np.int64))
        for name, rec in (("sr", srs), ("rb", blocks)):
            i = rec["i"]
            room = RTCP_MAX_RECORDS - self._rtcp_n[name]
            if not i.size or room <= 0:
                continue
            i = i[:room]
            part = {k: v[: i.size] for k, v in rec.items() if k != "i"}
            part["flow_key"] = np.asarray(keys)[sel[i]].astype(np.uint64)
            part["adir"] = np.asarray(adir)[sel[i]].astype(np.int64)
            part["ts"] = chunk.ts_ns[pk[i]].astype(np.int64)
            self._rtcp[name].append(part)
            self._rtcp_n[name] += int(i.size)

    def _rtcp_rtt(self) -> pd.DataFrame:
        """Round trips from RTCP (RFC 3550 6.4.1): a report block that echoes a sender report's
        NTP middle bits (LSR) came back DLSR after that SR arrived at the far end, so the round
        trip seen from the capture point is t(block) - t(SR) - DLSR. Only the capture's clock
        is used. One row per (flow_key, adir of the SR, SSRC): median ms, samples, SRs seen."""
        cols = ["flow_key", "adir", "ssrc", "rtcp_rtt_ms", "rtcp_rtt_samples", "rtcp_sender_reports"]
        if not self._rtcp["sr"]:
            return pd.DataFrame({c: pd.Series(dtype=np.int64) for c in cols})
        sr = pd.DataFrame({k: np.concatenate([p[k] for p in self._rtcp["sr"]]) for k in self._rtcp["sr"][0]})
        counts = sr.groupby(["flow_key", "adir", "ssrc"]).size().rename("rtcp_sender_reports")
        out = counts.to_frame()
        out["rtcp_rtt_ms"], out["rtcp_rtt_samples"] = np.nan, 0
        if self._rtcp["rb"]:
            rb = pd.DataFrame({k: np.concatenate([p[k] for p in self._rtcp["rb"]]) for k in self._rtcp["rb"][0]})
            rb = rb.rename(columns={"ssrc": "reporter", "source": "ssrc", "lsr": "ntp_mid", "ts": "ts_rb",
                                    "adir": "adir_rb"})
            rb["adir"] = 1 - rb["adir_rb"]
            m = rb.merge(sr.rename(columns={"ts": "ts_sr"}), on=["flow_key", "adir", "ssrc", "ntp_mid"])
            m["rtt_s"] = (m["ts_rb"] - m["ts_sr"]) / 1e9 - m["dlsr"] / 65536.0
            m = m[(m["rtt_s"] >= 0) & (m["rtt_s"] <= RTT_MAX_S)]
            if len(m):
                g = m.groupby(["flow_key", "adir", "ssrc"])["rtt_s"]
                out.loc[g.median().index, "rtcp_rtt_ms"] = g.median() * 1000.0
                out.loc[g.size().index, "rtcp_rtt_samples"] = g.size()
        return out.reset_index()[cols]

    # -- frames and the time series ------------------------------------------------------------
    def _keep_seconds(self, sid: np.ndarray, sec: np.ndarray, counts: dict[str, np.ndarray], jit: np.ndarray,
                      jn: np.ndarray) -> None:
        """Keep one chunk's (stream, second) rows; the total is capped at max_second_rows."""
        room = self._max_second_rows - self._second_rows
        if room <= 0:
            self._seconds_truncated = True
            return
        if sid.size > room:
            self._seconds_truncated = True
            keep = slice(0, room)
            sid, sec, jit, jn = sid[keep], sec[keep], jit[keep], jn[keep]
            counts = {k: v[keep] for k, v in counts.items()}
        jit = np.where((jn > 0)[:, None], jit, np.nan)
        self._sec_parts.append({"sid": sid.copy(), "second": sec.copy(), "jit": jit, **counts})
        self._second_rows += int(sid.size)

    def _frames_update(self, sid: np.ndarray, starts: np.ndarray, seg_no: np.ndarray, seg_sid: np.ndarray,
                       seen: np.ndarray, ts: np.ndarray, rts: np.ndarray, pay: np.ndarray, marker: np.ndarray,
                       dup: np.ndarray, reordered: np.ndarray) -> None:
        """Frames = runs of in-order packets of a stream with one RTP timestamp (a video frame, an
        audio packet). Arrays are sorted by stream, arrival order within; the last frame of each
        stream stays open across chunks (it may still get packets), so chunking changes nothing.

        Duplicates add nothing; late (reordered) packets add their bytes to the open frame but do
        not start or end one."""
        s = self._s
        n = sid.size
        io = ~dup & ~reordered
        pos = np.where(io, np.arange(n), -1)
        cm = _segment_cummax(pos, seg_no)
        prev_io = np.r_[-1, cm[:-1]]
        prev_io[starts] = -1
        has_open = seen & (s["fr_open"][seg_sid] == 1)
        carried_rts = np.where(has_open, s["fr_rts"][seg_sid], -1)[seg_no]
        prev_rts = np.where(prev_io >= 0, rts[np.maximum(prev_io, 0)], carried_rts)
        boundary = io & (prev_rts != rts)
        live = ~dup
        run_start = boundary.copy()
        run_start[starts] = True
        rs = np.flatnonzero(run_start)
        r_bytes = np.add.reduceat(np.where(live, pay, 0), rs)
        r_pkts = np.add.reduceat(live.astype(np.int64), rs)
        r_last = np.maximum.reduceat(np.where(live, ts, _NEG), rs)
        r_mark = np.maximum.reduceat((marker & live).astype(np.int64), rs)
        r_frame = boundary[rs]
        r_seg = seg_no[rs]
        r_sid = sid[rs]
        # Continuations of the frame left open by the previous chunk (runs at a segment start).
        cont = np.flatnonzero(~r_frame)
        if cont.size:
            cs = r_sid[cont]
            s["fr_bytes"][cs] += r_bytes[cont]
            s["fr_pkts"][cs] += r_pkts[cont]
            s["fr_last_ns"][cs] = np.maximum(s["fr_last_ns"][cs], r_last[cont])
            s["fr_marker"][cs] |= r_mark[cont]
        fr = np.flatnonzero(r_frame)
        any_new = np.bincount(r_seg[fr], minlength=starts.size) > 0
        closing = np.flatnonzero(any_new & has_open)  # segments whose carried frame now ends
        last_of_seg = np.r_[r_seg[fr][1:] != r_seg[fr][:-1], True] if fr.size else np.zeros(0, bool)
        done = fr[~last_of_seg]
        c_sid = seg_sid[closing]
        f_sid = np.r_[c_sid, r_sid[done]]
        f_rts = np.r_[s["fr_rts"][c_sid], rts[rs[done]]]
        f_end = np.r_[s["fr_last_ns"][c_sid], r_last[done]]
        f_bytes = np.r_[s["fr_bytes"][c_sid], r_bytes[done]]
        f_pkts = np.r_[s["fr_pkts"][c_sid], r_pkts[done]]
        f_mark = np.r_[s["fr_marker"][c_sid], r_mark[done]]
        o = np.argsort(f_sid, kind="stable")  # carried frames first: they are the older ones
        self._fold_frames(f_sid[o], f_rts[o], f_end[o], f_bytes[o], f_pkts[o], f_mark[o])
        # The last new frame of each stream is the open one now.
        last = fr[last_of_seg]
        ls = r_sid[last]
        s["fr_open"][ls] = 1
        s["fr_rts"][ls] = rts[rs[last]]
        s["fr_bytes"][ls] = r_bytes[last]
        s["fr_pkts"][ls] = r_pkts[last]
        s["fr_last_ns"][ls] = r_last[last]
        s["fr_marker"][ls] = r_mark[last]

    def _fold_frames(self, sid: np.ndarray, rts: np.ndarray, end_ns: np.ndarray, size: np.ndarray,
                     pkts: np.ndarray, mark: np.ndarray) -> None:
        """Fold completed frames (sorted by stream, in order within) into the per-stream counters,
        the frame jitter and the per-second frame counts. A frame's time is its last packet's
        arrival (when it could be decoded), as zoom-analysis takes it."""
        if not sid.size:
            return
        s = self._s
        start = np.r_[True, sid[1:] != sid[:-1]]
        starts = np.flatnonzero(start)
        seg_no = np.cumsum(start) - 1
        seg_sid = sid[starts]
        m = starts.size
        had = s["frames"][seg_sid] > 0
        s["first_frame_ns"][seg_sid] = np.where(had, s["first_frame_ns"][seg_sid], end_ns[starts])
        s["last_frame_ns"][seg_sid] = np.maximum.reduceat(end_ns, starts)
        s["frames"][seg_sid] += np.bincount(seg_no, minlength=m)
        s["fsize_sum"][seg_sid] += np.add.reduceat(size, starts)
        self._fsq[seg_sid] += np.add.reduceat(size.astype(np.float64) ** 2, starts)
        s["fsize_min"][seg_sid] = np.where(had, np.minimum(s["fsize_min"][seg_sid], np.minimum.reduceat(size, starts)),
                                           np.minimum.reduceat(size, starts))
        s["fsize_max"][seg_sid] = np.maximum(s["fsize_max"][seg_sid], np.maximum.reduceat(size, starts))
        s["fpkts_sum"][seg_sid] += np.add.reduceat(pkts, starts)
        s["fmarked"][seg_sid] += np.add.reduceat(mark, starts)
        # RFC 3550 6.4.1 over frames: D between consecutive frames' (end time, RTP timestamp).
        prev_ns = np.r_[0, end_ns[:-1]]
        prev_rts = np.r_[0, rts[:-1]]
        prev_ns[starts] = np.where(had, s["fj_prev_ns"][seg_sid], end_ns[starts])
        prev_rts[starts] = np.where(had, s["fj_prev_rts"][seg_sid], rts[starts])
        has_prev = ~start | had[seg_no]
        hp = np.flatnonzero(has_prev)
        if hp.size:
            hseg = seg_no[hp]
            cnt = np.bincount(hseg, minlength=m)
            rank = np.arange(hp.size) - np.r_[0, np.cumsum(cnt)[:-1]][hseg] + 1
            w = np.power(JITTER_A, (cnt[hseg] - rank).astype(np.float64)) / 16.0
            dr = (end_ns[hp] - prev_ns[hp]).astype(np.float64) / 1e9
            ds = _signed(rts[hp] - prev_rts[hp], 32).astype(np.float64)
            absd = np.abs(dr[:, None] * np.asarray(RATES, np.float64)[None, :] - ds[:, None])
            add = np.zeros((m, len(RATES)))
            for j in range(len(RATES)):
                add[:, j] = np.bincount(hseg, weights=w * absd[:, j], minlength=m)
            decay = np.power(JITTER_A, cnt.astype(np.float64))[:, None]
            self._fjit[seg_sid] = decay * self._fjit[seg_sid] + add
            s["fj_n"][seg_sid] += cnt
        ends = np.r_[starts[1:], sid.size] - 1
        s["fj_prev_ns"][seg_sid] = end_ns[ends]
        s["fj_prev_rts"][seg_sid] = rts[ends]
        # Frames per (stream, second of their end), for the time series.
        fsec = end_ns // 1_000_000_000
        cut = np.flatnonzero(start | np.r_[True, fsec[1:] != fsec[:-1]])
        if self._second_rows + cut.size <= self._max_second_rows:
            self._frame_parts.append({"sid": sid[cut], "second": fsec[cut],
                                      "frames": np.diff(np.r_[cut, sid.size]),
                                      "frame_bytes": np.add.reduceat(size, cut)})
            self._second_rows += int(cut.size)
        else:
            self._seconds_truncated = True

    def _flush_frames(self) -> None:
        """End of the capture: the open frames are complete (zoom-analysis needs a patch for this)."""
        s = self._s
        open_ = np.flatnonzero(s["fr_open"][: self._n] == 1)
        self._fold_frames(open_, s["fr_rts"][open_], s["fr_last_ns"][open_], s["fr_bytes"][open_],
                          s["fr_pkts"][open_], s["fr_marker"][open_])
        s["fr_open"][open_] = 0

    def seconds(self, sids: np.ndarray, rates: np.ndarray) -> pd.DataFrame:
        """The time series: one row per (stream row in `sids` order, second) with packets, wire and
        payload bytes, bitrate (wire bits in that second), frames, frame bytes, lost and the
        RFC 3550 jitter at the end of the second in ms at the stream's clock `rates`."""
        cols = ["stream", "second", "packets", "wire_bytes", "payload_bytes", "bitrate_bps", "frames",
                "frame_bytes", "lost", "jitter_ms"]
        row_of = np.full(self._n + 1, -1, np.int64)
        row_of[sids] = np.arange(sids.size)
        col = np.array([RATES.index(r) if r in RATES else -1 for r in np.asarray(rates).tolist()], np.int64)
        if not self._sec_parts or not sids.size:
            raw = [f"_ju{j}" for j in range(len(RATES))]
            return pd.DataFrame({c: pd.Series(dtype=np.float64 if c == "jitter_ms" or c in raw else np.int64)
                                 for c in cols + raw})
        p = {k: np.concatenate([x[k] for x in self._sec_parts]) for k in self._sec_parts[0]}
        row = row_of[p["sid"]]
        keep = row >= 0
        c = np.maximum(col[np.maximum(row, 0)], 0)
        jit = p["jit"][np.arange(row.size), c] / np.maximum(np.asarray(rates)[np.maximum(row, 0)], 1) * 1000.0
        jit = np.where(col[np.maximum(row, 0)] >= 0, jit, np.nan)
        df = pd.DataFrame({"stream": row, "second": p["second"], "packets": p["packets"],
                           "wire_bytes": p["wire_bytes"], "payload_bytes": p["payload_bytes"], "lost": p["lost"],
                           "jitter_ms": jit, **{f"_ju{j}": p["jit"][:, j] for j in range(len(RATES))}})[keep]
        agg = df.groupby(["stream", "second"], sort=True).agg(
            packets=("packets", "sum"), wire_bytes=("wire_bytes", "sum"), payload_bytes=("payload_bytes", "sum"),
            lost=("lost", "sum"), jitter_ms=("jitter_ms", "last"),
            **{f"_ju{j}": (f"_ju{j}", "last") for j in range(len(RATES))})
        if self._frame_parts:
            f = {k: np.concatenate([x[k] for x in self._frame_parts]) for k in self._frame_parts[0]}
            frow = row_of[f["sid"]]
            fdf = pd.DataFrame({"stream": frow, "second": f["second"], "frames": f["frames"],
                                "frame_bytes": f["frame_bytes"]})[frow >= 0]
            fagg = fdf.groupby(["stream", "second"]).sum()
            agg = agg.join(fagg, how="outer")
        else:
            agg["frames"], agg["frame_bytes"] = 0, 0
        agg = agg.reset_index()
        for name in ("packets", "wire_bytes", "payload_bytes", "frames", "frame_bytes"):
            agg[name] = agg[name].fillna(0).astype(np.int64)
        agg["lost"] = agg["lost"].fillna(0).clip(lower=0).astype(np.int64)
        agg["bitrate_bps"] = agg["wire_bytes"] * 8.0  # per one-second bin
        return agg[cols + [f"_ju{j}" for j in range(len(RATES))]]

    # -- result ---------------------------------------------------------------------------------
    def result(
        self, flow_ids_by_key: Mapping[int, int] | pd.Series | None = None,
        a_is_client_by_key: Mapping[int, bool] | pd.Series | None = None,
    ) -> MediaResult:
        """The streams table. `flow_ids_by_key` maps flow key -> flow_id (dict or Series indexed by
        key); with `a_is_client_by_key`, `dir` is turned into 0 = client->server, 1 = server->client."""
        self._flush_frames()
        n = self._n
        s = {k: v[:n] for k, v in self._s.items()}
        zoom = s["zoom"] == 1
        # Zoom media was recognised by its own header; plain RTP must show a sequence that steps.
        valid = zoom | ((s["packets"] >= 3) & (s["good"] * 2 >= s["packets"] - 1))
        sids = np.flatnonzero(valid)
        df = self._stream_frame(s, sids)
        rtt = self._rtcp_rtt()
        df = df.merge(rtt.astype({"flow_key": np.uint64, "adir": np.int8, "ssrc": np.int64}),
                      on=["flow_key", "adir", "ssrc"], how="left")
        df["rtcp_rtt_samples"] = df["rtcp_rtt_samples"].fillna(0).astype(np.int64)
        df["rtcp_sender_reports"] = df["rtcp_sender_reports"].fillna(0).astype(np.int64)
        ecb = ecb_statistics(*self._sample_arrays())
        df = df.join(ecb.reindex(sids).reset_index(drop=True))
        for col in ("ecb_packets", "ecb_blocks", "ecb_repeats", "ecb_repeats_max", "ecb_repeat_alignment",
                    "ecb_packets_with_repeats", "ecb_identical_payloads", "ecb_distinct_bytes", "ecb_sample_bytes"):
            df[col] = df[col].fillna(0).astype(np.int64)
        df["flow_id"] = _map_keys(df["flow_key"], flow_ids_by_key)
        if a_is_client_by_key is not None:
            a_client = _map_keys(df["flow_key"], a_is_client_by_key).fillna(True).astype(bool).to_numpy()
            df["dir"] = np.where(a_client, df["adir"], 1 - df["adir"]).astype(np.int8)
        notes = []
        if self._ecb_truncated:
            notes.append(f"ECB sample capped at {self._ecb_max_bytes} bytes: later streams were not sampled")
        if self._over_streams:
            notes.append(f"{self._over_streams} RTP stream(s) beyond the first {self._max_streams} were counted "
                         f"but not measured ({self._over_packets} packets)")
        if self._seconds_truncated:
            notes.append(f"per-second time series capped at {self._max_second_rows} (stream, second) rows")
        seconds = self.seconds(sids, df["clock_rate"].to_numpy())
        raw = [f"_ju{j}" for j in range(len(RATES))]
        sec_units = seconds[raw].to_numpy(np.float64) if len(seconds) else np.zeros((0, len(RATES)))
        seconds = seconds.drop(columns=raw)
        return MediaResult(streams=df, media_packets=self.media_packets, dropped_streams=int(n - sids.size),
                           ecb_sample_truncated=self._ecb_truncated, notes=notes, seconds=seconds,
                           streams_over_cap=self._over_streams, packets_over_cap=self._over_packets,
                           over_cap_by_flow=self._over_cap_flows(flow_ids_by_key),
                           jitter_units=np.where((s["jn"][sids] > 0)[:, None], self._jit[:n][sids], np.nan),
                           frame_jitter_units=np.where((s["fj_n"][sids] > 0)[:, None], self._fjit[:n][sids], np.nan),
                           seconds_jitter_units=sec_units)

    def _over_cap_flows(self, flow_ids_by_key: Mapping[int, int] | pd.Series | None) -> dict[int, int]:
        """Over-cap stream counts per flow_id (per flow key when no mapping is given)."""
        if not self._over_by_flow:
            return {}
        keys = pd.Series(list(self._over_by_flow), dtype=np.uint64)
        ids = _map_keys(keys, flow_ids_by_key) if flow_ids_by_key is not None else keys
        out: dict[int, int] = {}
        for fid, n in zip(ids.tolist(), self._over_by_flow.values(), strict=True):
            if fid is not pd.NA and fid is not None:
                out[int(fid)] = out.get(int(fid), 0) + int(n)
        return out

    def _sample_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self._samples:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint8)
        sid = np.concatenate([x[0] for x in self._samples])
        lens = np.concatenate([x[1] for x in self._samples])
        data = np.concatenate([x[2] for x in self._samples])
        return sid, lens, data

    def _stream_frame(self, s: dict[str, np.ndarray], sids: np.ndarray) -> pd.DataFrame:
        g = {k: v[sids] for k, v in s.items()}
        jit = self._jit[: self._n][sids]
        packets = g["packets"]
        expected = g["max_ext"] - g["min_ext"] + 1
        received = packets - g["dups"]
        lost = np.maximum(expected - received, 0)
        duration = (g["last_ns"] - g["first_ns"]) / 1e9
        rate_ok = (duration >= RATE_MIN_SPAN_S) & (packets >= RATE_MIN_PACKETS)
        rate_note = np.where(
            rate_ok, None,
            np.where(duration < RATE_MIN_SPAN_S,
                     [f"spans {d:.3f} s, under {RATE_MIN_SPAN_S:g} s" for d in duration.tolist()],
                     [f"{p} packets, under {RATE_MIN_PACKETS}" for p in packets.tolist()])).astype(object)
        frames = g["frames"]
        fsq = self._fsq[: self._n][sids]
        fjit = self._fjit[: self._n][sids]
        with np.errstate(divide="ignore", invalid="ignore"):
            bitrate = np.where(rate_ok, g["bytes"] * 8 / duration, np.nan)
            payload_bitrate = np.where(rate_ok, g["payload_bytes"] * 8 / duration, np.nan)
            # Frames per second between the first and the last frame's end: a steady 25 fps stream
            # gives 25 whatever the capture's edges cut off.
            fspan = (g["last_frame_ns"] - g["first_frame_ns"]) / 1e9
            frame_rate = np.where(rate_ok & (frames > 1) & (fspan > 0),
                                  (frames - 1) / np.where(fspan > 0, fspan, 1), np.nan)
            fmean = np.where(frames > 0, g["fsize_sum"] / frames, np.nan)
            fstd = np.sqrt(np.maximum(np.where(frames > 0, fsq / frames - fmean**2, np.nan), 0))
            span_s = np.where(g["jn"] > 0, duration, 0.0)
            est = np.where(span_s > 0, g["ts_span"] / span_s, np.nan)
        media = g["media"]
        first_pt = g["first_pt"]
        zoom = g["zoom"] == 1
        rate = np.zeros(sids.size, np.int64)
        assumed = np.ones(sids.size, bool)
        static_rate = _STATIC_RATE[first_pt]
        plain_static = ~zoom & (static_rate > 0)
        rate = np.where(plain_static, static_rate, rate)
        assumed &= ~plain_static
        rate = np.where(zoom & (media == AUDIO), 48000, rate)
        rate = np.where(zoom & (media != AUDIO), 90000, rate)
        guess = _snap_rate(est)
        rate = np.where(~zoom & ~plain_static, guess, rate)
        col = np.array([RATES.index(r) if r in RATES else -1 for r in rate.tolist()], np.int64)
        jit_units = np.where(col >= 0, jit[np.arange(sids.size), np.maximum(col, 0)], np.nan)
        jitter_ms = np.where((rate > 0) & (g["jn"] > 0), jit_units / np.maximum(rate, 1) * 1000.0, np.nan)
        fjit_units = np.where(col >= 0, fjit[np.arange(sids.size), np.maximum(col, 0)], np.nan)
        frame_jitter_ms = np.where((rate > 0) & (g["fj_n"] > 0), fjit_units / np.maximum(rate, 1) * 1000.0, np.nan)
        guess_media = np.where(rate >= 90000, "video", np.where(rate > 0, "audio", "unknown"))
        media_names = np.asarray(MEDIA_TYPES, dtype=object)[media]
        return pd.DataFrame(
            {
                "flow_key": g["flow_key"].astype(np.uint64),
                "adir": g["adir"].astype(np.int8),
                "ssrc": g["ssrc"].astype(np.int64),
                "media_type": media_names,
                "media_type_guess": np.where(media == UNKNOWN, guess_media, media_names),
                "zoom": zoom,
                "payload_type": first_pt.astype(np.int64),
                "payload_types": [_pt_list(lo, hi) for lo, hi in zip(g["pt_lo"].tolist(), g["pt_hi"].tolist(),
                                                                      strict=True)],
                "packets": packets,
                "bytes": g["bytes"],
                "wire_bytes": g["bytes"],
                "udp_bytes": g["udp_bytes"],
                "payload_bytes": g["payload_bytes"],
                "first_ts": g["first_ns"] / 1e9,
                "last_ts": g["last_ns"] / 1e9,
                "duration_s": duration,
                "bitrate_bps": bitrate,
                "payload_bitrate_bps": payload_bitrate,
                "rate_note": rate_note,
                "frames": frames,
                "frames_marked": g["fmarked"],
                "markers": g["markers"],
                "frame_rate_fps": frame_rate,
                "frame_bytes_mean": fmean,
                "frame_bytes_std": fstd,
                "frame_bytes_min": np.where(frames > 0, g["fsize_min"], 0),
                "frame_bytes_max": g["fsize_max"],
                "packets_per_frame": np.where(frames > 0, g["fpkts_sum"] / np.maximum(frames, 1), np.nan),
                "seq_first": g["min_ext"],
                "seq_last": g["max_ext"],
                "expected": expected,
                "lost": lost,
                "loss_fraction": np.where(expected > 0, lost / np.maximum(expected, 1), 0.0),
                "reordered": g["reordered"],
                "duplicates": g["dups"],
                "clock_rate": rate,
                "clock_estimate_hz": est,
                "jitter_ms": jitter_ms,
                "jitter_clock_assumed": assumed,
                "clock_source": np.where(plain_static, "static_pt", np.where(zoom, "zoom", np.where(
                    rate > 0, "observed", "none"))).astype(object),
                "frame_jitter_ms": frame_jitter_ms,
            }
        )


def _pt_list(lo: int, hi: int) -> list[int]:
    return [i for i in range(64) if lo >> i & 1] + [64 + i for i in range(64) if hi >> i & 1]


def _snap_rate(est: np.ndarray) -> np.ndarray:
    """Nearest of DYNAMIC_GUESS_RATES in log scale; 0 when no estimate (a single packet)."""
    cands = np.asarray(DYNAMIC_GUESS_RATES, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = np.abs(np.log(np.maximum(est, 1e-9))[:, None] - np.log(cands)[None, :])
    pick = cands[np.argmin(dist, axis=1)].astype(np.int64) if est.size else np.zeros(0, np.int64)
    return np.where(np.isfinite(est) & (est > 0), pick, 0)


def _map_keys(keys: pd.Series, mapping: Mapping | pd.Series | None) -> pd.Series:
    if mapping is None:
        return pd.Series([pd.NA] * len(keys), index=keys.index, dtype="object")
    if not isinstance(mapping, pd.Series):
        mapping = pd.Series(dict(mapping), dtype=object)
    mapping = mapping.copy()
    mapping.index = pd.Index(np.asarray(mapping.index).astype(np.uint64))
    pos = mapping.index.get_indexer(keys.to_numpy(np.uint64))
    vals = mapping.to_numpy(dtype=object)
    return pd.Series([vals[p] if p >= 0 else pd.NA for p in pos.tolist()], index=keys.index, dtype="object")
