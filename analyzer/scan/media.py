"""Media streams (per SSRC and media type) and the ECB repeated-block statistic, as a scan tap.

`MediaTap.update` is called once per chunk by the scan with the chunk's decoded packets and their
payload kinds; it keeps a few numbers per stream (last sequence number, arrival, RTP timestamp,
jitter) so that chunks of any size give the same figures. `MediaTap.result` turns them into one
row per (flow, direction, SSRC, media type). Everything per packet is numpy; Python loops run
over streams or over the 16 block alignments only.

Layouts and the ECB procedure: ../shared/research/protocols.md sections 1.3, 2.4 and 5.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd

from analyzer.common.compiled import load
from analyzer.common.hashing import mix_columns
from analyzer.dissect.columns import Bytes, port_in
from analyzer.dissect.kinds import RTP, ZOOM_MEDIA, c_packet_columns
from analyzer.dissect.zoom import ZOOM_UDP_PORTS
from analyzer.dissect.zoom import media_ok as zoom_media_ok
from analyzer.scan.groups import factorize

MEDIA_TYPES: tuple[str, ...] = ("unknown", "audio", "video", "screenshare", "fec")
UNKNOWN, AUDIO, VIDEO, SCREEN, FEC = range(len(MEDIA_TYPES))

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

ECB_MAX_PACKETS = 400  # per stream, protocols.md 5
ECB_MAX_REGION = 1500  # bytes of one packet's encrypted region that are kept
ECB_MAX_SAMPLE_BYTES = 32 * 1024 * 1024  # all streams together: bounded memory on huge captures
# Verdict thresholds (ecb_verdict). Random 16-byte blocks collide with probability ~n^2/2^129, so
# even one repeat is significant; 4 tolerates a stray cleartext fragment repeating once or twice.
ECB_MIN_EXCESS = 4
ECB_MIN_RATIO = 0.01
# Ciphertext-like: the distinct blocks' byte entropy is within this many bits of what uniformly
# random bytes of the same sample size give (plug-in entropy is biased low on small samples).
ENTROPY_MARGIN = 0.35
ENTROPY_MIN_BYTES = 256
# A verdict on fewer sampled packets than this is "insufficient": a handful of packets (a stream's
# first keyframe fragments, a probe) says nothing about a call's encryption. Eight G.711 packets
# already hold 1,280 payload bytes (sip.pcap), enough for the entropy test.
VERDICT_MIN_PACKETS = 8
# SRTP/SRTCP authentication tag (RFC 3711: HMAC-SHA1-80, the default of every SRTP profile in use):
# random-looking, not ciphertext, so it is cut off the measured region. On plain RTP this drops the
# payload's last 10 bytes, which changes no verdict beyond the sample size.
SRTP_TAG_BYTES = 10
_NEG = -(1 << 62)
_compiled_kinds = load("analyzer.dissect._kinds")


def _trailer_bytes(buf: np.ndarray, off: np.ndarray, plen: np.ndarray, rel: np.ndarray) -> np.ndarray:
    """Bytes at the end of each RTP packet that are not the encrypted payload: RTP padding (P bit;
    RFC 3550 5.1: its count is the packet's last byte) and the SRTP authentication tag."""
    n = buf.shape[0]
    first = buf[np.clip(off + np.maximum(rel, 0), 0, max(n - 1, 0))].astype(np.int64) if n else np.zeros_like(off)
    last = buf[np.clip(off + plen - 1, 0, max(n - 1, 0))].astype(np.int64) if n else np.zeros_like(off)
    padded = ((first & 0x20) != 0) & (plen > 0)
    return np.where(padded, last, 0) + SRTP_TAG_BYTES


def _signed(x: np.ndarray, bits: int) -> np.ndarray:
    half = 1 << (bits - 1)
    return ((x + half) & ((1 << bits) - 1)) - half


def locate_rtp(
    buf: np.ndarray, off: np.ndarray, plen: np.ndarray, kinds: np.ndarray, sport: np.ndarray, dport: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rtp offset in the payload or -1, media code from the Zoom header or -1, is_zoom) per packet.

    Plain RTP (kind rtp) starts at 0. For Zoom media, the generation is chosen as kinds.py does:
    SFU Gen B (inner at UDP+8) when its check passes, else Gen A (UDP+1), else P2P (UDP+0).
    """
    n = off.shape[0]
    rel = np.full(n, -1, np.int64)
    media = np.full(n, -1, np.int64)
    rel[kinds == RTP] = 0
    z = np.flatnonzero(kinds == ZOOM_MEDIA)
    if z.size:
        b = Bytes(buf, off[z], plen[z])
        zp = plen[z]
        sfu = (b.at(0) == 0x05) & port_in(sport[z], dport[z], ZOOM_UDP_PORTS)
        gen_b = sfu & (zp > 8) & np.isin(b.at(7), (0x00, 0x04)) & zoom_media_ok(b, zp, 8)
        gen_a = sfu & ~gen_b & zoom_media_ok(b, zp, 1)
        inner = np.where(gen_b, 8, np.where(gen_a, 1, 0)).astype(np.int64)
        t = b.at(inner)
        b20 = b.at(inner + 20)
        r = np.full(z.size, -1, np.int64)
        m = np.full(z.size, -1, np.int64)
        is_a, is_v = t == 0x0F, (t == 0x10) & (b20 >= 0)
        is_s = ((t == 0x0D) & (b.at(inner + 7) == 0x1E)) | (t == 0x1E)
        r = np.where(is_a, inner + 19, r)
        r = np.where(is_v, np.where(b20 == 0x02, inner + 24, inner + 20), r)
        r = np.where((t == 0x0D) & is_s, inner + 27, r)
        r = np.where(t == 0x1E, inner + 20, r)
        m = np.where(is_a, AUDIO, np.where(is_v, VIDEO, np.where(is_s, SCREEN, m)))
        rel[z], media[z] = r, m
    return rel, media, kinds == ZOOM_MEDIA


def rtp_header_fields(
    buf: np.ndarray, off: np.ndarray, plen: np.ndarray, kinds: np.ndarray, sport: np.ndarray, dport: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Per media packet (kind rtp or zoom_media; `plen` already clamped to the buffer):
    (rtp offset, header length, seq, RTP timestamp, SSRC, PT, Zoom media code, ok)."""
    if _compiled_kinds is None:
        return rtp_header_fields_numpy(buf, off, plen, kinds, sport, dport)
    out = np.empty((off.shape[0], 8), np.int64)
    _compiled_kinds.rtp_fields(*c_packet_columns(buf, off, plen, kinds, sport, dport, np.int64), out)
    cols = tuple(out[:, j].copy() for j in range(8))
    return (*cols[:7], cols[7].astype(bool))


def rtp_header_fields_numpy(
    buf: np.ndarray, off: np.ndarray, plen: np.ndarray, kinds: np.ndarray, sport: np.ndarray, dport: np.ndarray
) -> tuple[np.ndarray, ...]:
    """rtp_header_fields with numpy only: the reference for the compiled loop in _kinds.c."""
    rel, zmedia, zoom = locate_rtp(buf, off, plen, kinds, sport.astype(np.int64), dport.astype(np.int64))
    b = Bytes(buf, off, plen)
    relc = np.maximum(rel, 0)
    b0, b1 = b.at(relc), b.at(relc + 1)
    cc, has_x = np.maximum(b0, 0) & 0x0F, (np.maximum(b0, 0) & 0x10) != 0
    hl = 12 + 4 * cc
    ext_words = b.u16(relc + hl + 2)
    hl = np.where(has_x, hl + 4 + 4 * np.maximum(ext_words, 0), hl)
    seq, rts, ssrc = b.u16(relc + 2), b.u32(relc + 4), b.u32(relc + 8)
    pt = np.maximum(b1, 0) & 0x7F
    ok = (rel >= 0) & (b0 >> 6 == 2) & (seq >= 0) & (ssrc >= 0) & (~has_x | (ext_words >= 0))
    ok &= relc + hl <= plen
    # RFC 3551 / protocols.md 2.4: plain RTP PTs are 0-34 or 96-127.
    ok &= zoom | (pt <= 34) | (pt >= 96)
    ok &= ~zoom | (zmedia >= 0)
    return rel, hl, seq, rts, ssrc, pt, zmedia, ok


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
    notes: list[str] = field(default_factory=list)


_STATE_INT = (
    "flow_key", "adir", "ssrc", "media", "zoom", "first_pt", "packets", "bytes", "first_ns", "last_ns",
    "last_seq", "last_ext", "max_ext", "min_ext", "dups", "reordered", "pt_lo", "pt_hi", "last_rts",
    "ts_span", "jn", "good", "ecb_taken",
)


class MediaTap:
    """Per-stream RTP statistics and ECB samples, fed chunk by chunk (see module docstring)."""

    def __init__(self, *, ecb_packets: int = ECB_MAX_PACKETS, ecb_max_bytes: int = ECB_MAX_SAMPLE_BYTES) -> None:
        self._reg_keys = np.zeros(0, np.uint64)  # stream keys, sorted, and their stream ids
        self._reg_sids = np.zeros(0, np.int64)
        self._n = 0
        self._s: dict[str, np.ndarray] = {k: np.zeros(0, np.int64) for k in _STATE_INT}
        self._s["flow_key"] = np.zeros(0, np.uint64)
        self._s["pt_lo"] = np.zeros(0, np.uint64)
        self._s["pt_hi"] = np.zeros(0, np.uint64)
        self._jit = np.zeros((0, len(RATES)), np.float64)
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

    # -- per chunk ------------------------------------------------------------------------------
    def update(self, chunk, cols, idx: np.ndarray, kinds: np.ndarray, keys: np.ndarray, adir: np.ndarray) -> None:
        """Fold one chunk's packets in. Arguments as in scan.py: `idx` are the decoded packets,
        `kinds`, `keys` (uint64 flow keys) and `adir` (0 = A->B) are aligned with `idx`."""
        sel = np.flatnonzero((kinds == RTP) | (kinds == ZOOM_MEDIA))
        if not sel.size:
            return
        pk = idx[sel]
        buf = chunk.buf
        off = cols.l4_off[pk].astype(np.int64)
        plen = cols.l4_len[pk].astype(np.int64)
        plen = np.where((off >= 0) & (off + plen <= buf.shape[0]), np.maximum(plen, 0), 0)
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

        skey = mix_columns(fkey, fdir, ssrc, media)
        codes, uniq, firsts = factorize(skey)  # streams numbered in order of first appearance
        first = {"flow_key": fkey[firsts], "adir": fdir[firsts], "ssrc": ssrc[firsts], "media": media[firsts],
                 "zoom": zoom[firsts].astype(np.int64), "first_pt": pt[firsts]}
        before = self._s["packets"][: self._n].copy() if self._n else np.zeros(0, np.int64)
        sid_u = self._sids(np.asarray(uniq, np.uint64), first)
        sid = sid_u[codes]
        order = np.argsort(sid, kind="stable")
        sid = sid[order]
        seq, rts, ts, wire, pt, media = seq[order], rts[order], ts[order], wire[order], pt[order], media[order]
        off, plen, rel, hl = off[order], plen[order], rel[order], hl[order]
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

        # RFC 3550 6.4.1 jitter, closed form per stream: J_n = a^n J_0 + 1/16 sum a^(n-i) |D_i|.
        prev_ts = np.r_[0, ts[:-1]]
        prev_ts[starts] = np.where(seen, s["last_ns"][seg_sid], ts[starts])
        prev_rts = np.r_[0, rts[:-1]]
        prev_rts[starts] = np.where(seen, s["last_rts"][seg_sid], rts[starts])
        ds = _signed(rts - prev_rts, 32)
        dr = (ts - prev_ts).astype(np.float64) / 1e9
        hp = np.flatnonzero(has_prev)
        if hp.size:
            hseg = seg_no[hp]
            cnt = np.bincount(hseg, minlength=starts.size)
            rank = np.arange(hp.size) - np.r_[0, np.cumsum(cnt)[:-1]][hseg] + 1
            w = np.power(JITTER_A, (cnt[hseg] - rank).astype(np.float64)) / 16.0
            absd = np.abs(dr[hp, None] * np.asarray(RATES, np.float64)[None, :] - ds[hp, None])
            add = np.zeros((starts.size, len(RATES)))
            for j in range(len(RATES)):
                add[:, j] = np.bincount(hseg, weights=w * absd[:, j], minlength=starts.size)
            decay = np.power(JITTER_A, cnt.astype(np.float64))[:, None]
            self._jit[seg_sid] = decay * self._jit[seg_sid] + add
            s["jn"][seg_sid] += cnt
            s["ts_span"][seg_sid] += np.bincount(hseg, weights=ds[hp], minlength=starts.size).astype(np.int64)

        def seg_sum(x: np.ndarray) -> np.ndarray:
            return np.add.reduceat(x.astype(np.int64), starts)

        s["packets"][seg_sid] += ends - starts + 1
        s["bytes"][seg_sid] += seg_sum(wire)
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

    # -- result ---------------------------------------------------------------------------------
    def result(
        self, flow_ids_by_key: Mapping[int, int] | pd.Series | None = None,
        a_is_client_by_key: Mapping[int, bool] | pd.Series | None = None,
    ) -> MediaResult:
        """The streams table. `flow_ids_by_key` maps flow key -> flow_id (dict or Series indexed by
        key); with `a_is_client_by_key`, `dir` is turned into 0 = client->server, 1 = server->client."""
        n = self._n
        s = {k: v[:n] for k, v in self._s.items()}
        zoom = s["zoom"] == 1
        # Zoom media was recognised by its own header; plain RTP must show a sequence that steps.
        valid = zoom | ((s["packets"] >= 3) & (s["good"] * 2 >= s["packets"] - 1))
        sids = np.flatnonzero(valid)
        df = self._stream_frame(s, sids)
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
        return MediaResult(streams=df, media_packets=self.media_packets, dropped_streams=int(n - sids.size),
                           ecb_sample_truncated=self._ecb_truncated, notes=notes)

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
        with np.errstate(divide="ignore", invalid="ignore"):
            bitrate = np.where(duration > 0, g["bytes"] * 8 / duration, np.nan)
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
                "first_ts": g["first_ns"] / 1e9,
                "last_ts": g["last_ns"] / 1e9,
                "duration_s": duration,
                "bitrate_bps": bitrate,
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
            }
        )


def gather_bytes(buf: np.ndarray, starts: np.ndarray, lens: np.ndarray, step: int = 1 << 18) -> np.ndarray:
    """buf[starts[i] : starts[i] + lens[i]] for all i, back to back. Index arrays are built for
    about `step` bytes at a time, so the temporary memory stays small whatever the total."""
    starts = np.asarray(starts, np.int64)
    lens = np.asarray(lens, np.int64)
    out = np.empty(int(lens.sum()), np.uint8)
    ends = np.cumsum(lens)
    cuts = np.searchsorted(ends, np.arange(step, int(ends[-1]) if ends.size else 0, step), side="right")
    pos = 0
    for lo, hi in zip(np.r_[0, cuts].tolist(), np.r_[cuts, lens.size].tolist(), strict=True):
        if hi <= lo:
            continue
        seg = lens[lo:hi]
        total = int(seg.sum())
        idx = np.repeat(starts[lo:hi] - np.r_[0, np.cumsum(seg)[:-1]], seg) + np.arange(total)
        out[pos : pos + total] = buf[idx]
        pos += total
    return out


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


# -- ECB statistic -------------------------------------------------------------------------------
ECB_BATCH_BYTES = 1024 * 1024  # streams are processed in batches of about this many sampled bytes
_ECB_COLUMNS = [
    "ecb_packets", "ecb_blocks", "ecb_repeats", "ecb_repeat_ratio", "ecb_repeats_max", "ecb_repeat_alignment",
    "ecb_packets_with_repeats", "ecb_identical_payloads", "ecb_distinct_entropy", "ecb_distinct_bytes",
    "ecb_entropy_random", "ecb_payload_entropy", "ecb_sample_bytes", "ecb_payload_entropy_random",
    "ecb_repeats_expected_random",
]


def ecb_statistics(sid: np.ndarray, lens: np.ndarray, data: np.ndarray) -> pd.DataFrame:
    """Repeated 16-byte blocks per stream over sampled encrypted regions (protocols.md 5).

    `data` holds the regions back to back, `lens` their lengths (each >= 16), `sid` their stream.
    Returns one row per stream id (the index): packets, blocks and repeats ("excess" = blocks -
    distinct blocks) at alignment 0, the worst of alignments 0-15, packets with a repeated block,
    identical regions, the distinct blocks' byte entropy with its sample size and what random
    bytes of that size would give, the same for all sampled bytes, and the random-ciphertext
    expectation of repeats, blocks^2 / 2^129.
    """
    sid = np.asarray(sid, np.int64)
    lens = np.asarray(lens, np.int64)
    data = np.asarray(data, np.uint8)
    if sid.size == 0:
        return pd.DataFrame(columns=_ECB_COLUMNS, index=pd.Index([], dtype=np.int64))
    # Process whole streams in batches so temporary arrays stay small on big samples.
    pstart = np.r_[0, np.cumsum(lens)[:-1]]
    order = np.argsort(sid, kind="stable")
    usid, first, counts = np.unique(sid[order], return_index=True, return_counts=True)
    stream_bytes = np.add.reduceat(lens[order], first)
    batch = np.cumsum(stream_bytes) // ECB_BATCH_BYTES
    frames = []
    for b in np.unique(batch).tolist():
        members = np.flatnonzero(batch == b)
        pk = np.concatenate([order[first[i] : first[i] + counts[i]] for i in members.tolist()])
        blens = lens[pk]
        local = np.searchsorted(usid[members], sid[pk])
        part = _ecb_batch(local, blens, gather_bytes(data, pstart[pk], blens), members.size)
        part.index = pd.Index(usid[members])
        frames.append(part)
    return pd.concat(frames)[_ECB_COLUMNS]


def _ecb_batch(sid: np.ndarray, lens: np.ndarray, data: np.ndarray, m: int) -> pd.DataFrame:
    excess_by_align = np.zeros((16, m), np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(data, 16)
    pstart = np.r_[0, np.cumsum(lens)[:-1]]
    res = pd.DataFrame(index=pd.RangeIndex(m))
    packets = np.bincount(sid, minlength=m)
    res["ecb_packets"] = packets
    for a in range(16):
        nb = np.maximum((lens - a) // 16, 0)
        pkt = np.repeat(np.arange(lens.size), nb)
        first_block = np.r_[0, np.cumsum(nb)[:-1]]
        kpos = np.arange(pkt.size) - first_block[pkt]
        raw = windows[pstart[pkt] + a + 16 * kpos]
        words = np.ascontiguousarray(raw).view("<u8").reshape(-1, 2)
        bsid = sid[pkt]
        # Keyed by stream too, so one uint64 column says "same block value in the same stream".
        h = mix_columns(words[:, 0], words[:, 1], bsid)
        dup = pd.Series(h).duplicated(keep="first").to_numpy()
        excess_by_align[a] = np.bincount(bsid, weights=dup, minlength=m).astype(np.int64)
        if a:
            continue
        blocks = np.bincount(bsid, minlength=m)
        res["ecb_blocks"] = blocks
        _, inverse, counts = np.unique(h, return_inverse=True, return_counts=True)
        pkt_rep = np.bincount(pkt, weights=counts[inverse] >= 2, minlength=lens.size) > 0
        res["ecb_packets_with_repeats"] = np.bincount(sid, weights=pkt_rep, minlength=m).astype(np.int64)
        ent, nbytes = _entropy_sorted(bsid[~dup], raw[~dup].reshape(-1), 16, m)
        res["ecb_distinct_entropy"], res["ecb_distinct_bytes"] = ent, nbytes
        # A region's identity: its blocks' hashes with their positions, its last 16 bytes, its length.
        with np.errstate(over="ignore"):
            ph = np.zeros(lens.size, np.uint64)
            np.add.at(ph, pkt, mix_columns(h, kpos.astype(np.uint64)))
        tail = np.ascontiguousarray(windows[pstart + lens - 16]).view("<u8").reshape(-1, 2)
        ph = mix_columns(ph, tail[:, 0], tail[:, 1], lens.astype(np.uint64))
        pdup = pd.Series(mix_columns(ph, sid)).duplicated(keep="first").to_numpy()
        res["ecb_identical_payloads"] = np.bincount(sid, weights=pdup, minlength=m).astype(np.int64)
    blocks = res["ecb_blocks"].to_numpy()
    res["ecb_repeats"] = excess_by_align[0]
    res["ecb_repeat_ratio"] = excess_by_align[0] / np.maximum(blocks, 1)
    res["ecb_repeats_max"] = excess_by_align.max(axis=0)
    res["ecb_repeat_alignment"] = excess_by_align.argmax(axis=0)
    res["ecb_entropy_random"] = [random_entropy(int(x)) for x in res["ecb_distinct_bytes"].tolist()]
    pent, pbytes = _entropy_sorted(sid, data, lens, m)
    res["ecb_payload_entropy"], res["ecb_sample_bytes"] = pent, pbytes
    res["ecb_payload_entropy_random"] = [random_entropy(int(x)) for x in pbytes.tolist()]
    res["ecb_repeats_expected_random"] = blocks.astype(np.float64) ** 2 / 2.0**129
    return res


def _entropy_sorted(
    group: np.ndarray, data: np.ndarray, size: int | np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray]:
    """Shannon entropy (bits/byte) and byte count per group 0..m-1. `group` is sorted and item i
    owns the next `size` (or size[i]) bytes of `data`, so each group's bytes are one slice."""
    sizes = np.broadcast_to(np.asarray(size, np.int64), group.shape)
    per_group = np.bincount(group, weights=sizes, minlength=m).astype(np.int64)
    bounds = np.r_[0, np.cumsum(per_group)]
    ent = np.full(m, np.nan)
    for g in np.flatnonzero(per_group).tolist():
        counts = np.bincount(data[bounds[g] : bounds[g + 1]], minlength=256)
        p = counts[counts > 0] / per_group[g]
        ent[g] = float(-(p * np.log2(p)).sum())
    return ent, per_group


@lru_cache(maxsize=4096)
def random_entropy(n: int) -> float:
    """Expected plug-in entropy (bits/byte) of n uniformly random bytes: each byte value's count is
    Binomial(n, 1/256), and E[H] = log2 n - (256/n) E[c log2 c]."""
    if n <= 1:
        return 0.0
    p = 1.0 / 256
    mean = n * p
    hi = min(n, int(mean + 12 * math.sqrt(mean) + 20))
    j = np.arange(1, hi + 1, dtype=np.float64)
    log_pmf = (
        math.lgamma(n + 1) - np.array([math.lgamma(x + 1) for x in j]) - np.array([math.lgamma(n - x + 1) for x in j])
        + j * math.log(p) + (n - j) * math.log1p(-p)
    )
    e_clogc = float((np.exp(log_pmf) * j * np.log2(j)).sum())
    return math.log2(n) - 256.0 / n * e_clogc


# -- verdicts -------------------------------------------------------------------------------------
def _looks_random(entropy: float, nbytes: int) -> bool:
    return nbytes >= ENTROPY_MIN_BYTES and entropy >= random_entropy(nbytes) - ENTROPY_MARGIN


def ecb_verdict(row: Mapping | pd.Series) -> tuple[bool, str]:
    """Is this stream's encryption ECB-like? (is_ecb_like, reason).

    ECB-like when (1) the worst-alignment repeats reach ECB_MIN_EXCESS and ECB_MIN_RATIO of the
    blocks, which random ciphertext would give with probability ~n^2/2^129 (nil), and (2) the
    distinct blocks look like ciphertext: their byte entropy is within ENTROPY_MARGIN bits of
    random bytes of the same sample size. Repeats with low-entropy distinct blocks are plaintext
    (for example G.711 silence), reported as unencrypted-like, not ECB.
    """
    repeats = int(row.get("ecb_repeats_max", 0) or 0)
    blocks = int(row.get("ecb_blocks", 0) or 0)
    if blocks == 0:
        return False, "no media payload blocks sampled"
    ent = float(row.get("ecb_distinct_entropy", float("nan")))
    nbytes = int(row.get("ecb_distinct_bytes", 0) or 0)
    expected = blocks**2 / 2.0**129
    if repeats < ECB_MIN_EXCESS or repeats < ECB_MIN_RATIO * blocks:
        return False, (f"{repeats} repeated 16-byte blocks of {blocks} (random ciphertext: {expected:.1e}); "
                       f"below the threshold of {ECB_MIN_EXCESS} and {ECB_MIN_RATIO:.0%}")
    ent_rand = random_entropy(nbytes)
    if not _looks_random(ent, nbytes):
        return False, (f"unencrypted_like: {repeats} repeated blocks of {blocks}, but the distinct blocks "
                       f"have {ent:.2f} bits/byte over {nbytes} bytes (random: {ent_rand:.2f}), so not ciphertext")
    return True, (f"{repeats} of {blocks} 16-byte blocks repeat (alignment {int(row.get('ecb_repeat_alignment', 0))}) "
                  f"against {expected:.1e} expected from random ciphertext, and the distinct blocks look "
                  f"encrypted ({ent:.2f} bits/byte over {nbytes} bytes, random {ent_rand:.2f})")


def media_verdict(row: Mapping | pd.Series) -> tuple[str, str]:
    """('ecb_like' | 'unencrypted_like' | 'ciphertext_like' | 'insufficient', reason) for a stream.

    Measured only on the encrypted part of each packet: after the RTP header with its CSRCs and
    extensions (and after Zoom's own header, which precedes the RTP header), without RTP padding and
    the SRTP authentication tag; FEC packets and Zoom probes are not sampled. Fewer than
    VERDICT_MIN_PACKETS sampled packets give "insufficient". The reason names the statistic.
    """
    sampled = int(row.get("ecb_packets", 0) or 0)
    if sampled < VERDICT_MIN_PACKETS:
        return "insufficient", (f"only {sampled} packets' encrypted regions sampled (a verdict needs "
                                f"{VERDICT_MIN_PACKETS})")
    is_ecb, reason = ecb_verdict(row)
    if is_ecb:
        return "ecb_like", reason
    if reason.startswith("unencrypted_like"):
        return "unencrypted_like", reason.removeprefix("unencrypted_like: ")
    ent = float(row.get("ecb_payload_entropy", float("nan")))
    nbytes = int(row.get("ecb_sample_bytes", 0) or 0)
    if nbytes < ENTROPY_MIN_BYTES:
        return "insufficient", f"only {nbytes} payload bytes sampled"
    ent_rand = random_entropy(nbytes)
    if ent < ent_rand - ENTROPY_MARGIN:
        return "unencrypted_like", (f"payload entropy {ent:.2f} bits/byte over {nbytes} bytes, random bytes "
                                    f"give {ent_rand:.2f}: not ciphertext")
    return "ciphertext_like", f"payload entropy {ent:.2f} bits/byte over {nbytes} bytes (random {ent_rand:.2f})"
