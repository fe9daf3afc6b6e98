"""RTP / RTCP headers (RFC 3550, RFC 5761 mux), SRTP/SRTCP evidence and per-SSRC stream statistics.

Layouts: ../shared/research/protocols.md section 2.4. Parsers are pure and never raise.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

RTCP_TYPES = {
    200: "SR",
    201: "RR",
    202: "SDES",
    203: "BYE",
    204: "APP",
    205: "RTPFB",
    206: "PSFB",
    207: "XR",
}


@dataclass(frozen=True)
class RtpHeader:
    version: int
    padding: bool
    extension: bool
    csrc_count: int
    marker: bool
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    ext_profile: int | None  # 0xBEDE one-byte elements, 0x100x two-byte (RFC 8285)
    ext_length: int | None  # in 32-bit words, as on the wire
    header_length: int
    payload_offset: int  # == header_length: where the (possibly encrypted) payload starts
    payload_length: int  # bytes after the header, SRTP tag and padding included


@dataclass(frozen=True)
class RtcpPacket:
    packet_type: int
    count: int  # the 5-bit RC/SC/FMT field
    length: int  # bytes, header included
    offset: int  # where this packet starts in the datagram
    ssrc: int | None  # sender SSRC (absent only in a truncated 4-byte packet)

    @property
    def type_name(self) -> str:
        return RTCP_TYPES.get(self.packet_type, f"rtcp-{self.packet_type}")


def is_rtcp_second_byte(b1: int) -> bool:
    """RFC 5761 section 4: on a muxed port, second byte 192-223 is an RTCP packet type."""
    return 192 <= b1 <= 223


def parse_rtp(data: bytes) -> RtpHeader | None:
    """RTP fixed header + CSRCs + extension header; None unless V=2 and the header fits."""
    try:
        return _parse_rtp(data)
    except (ValueError, IndexError, struct.error):
        return None


def is_padding_only(hdr: RtpHeader, data: bytes) -> bool:
    """RFC 3550 5.1: P is set and the padding count (the last byte) covers every byte after the
    header, so the packet carries no media (WebRTC's bandwidth-probe padding). The scalar twin of
    the `rtp_padding` payload kind (kinds.py)."""
    return hdr.padding and hdr.payload_length > 0 and data[-1] == hdr.payload_length


def _parse_rtp(data: bytes) -> RtpHeader | None:
    n = len(data)
    if n < 12:
        return None
    b0, b1 = data[0], data[1]
    if b0 >> 6 != 2 or is_rtcp_second_byte(b1):
        return None
    cc = b0 & 0x0F
    hl = 12 + 4 * cc
    profile = ext_len = None
    if b0 & 0x10:
        if hl + 4 > n:
            return None
        profile, ext_len = struct.unpack_from(">HH", data, hl)
        hl += 4 + 4 * ext_len
    if hl > n:
        return None
    seq, ts, ssrc = struct.unpack_from(">HII", data, 2)
    return RtpHeader(
        version=2,
        padding=bool(b0 & 0x20),
        extension=bool(b0 & 0x10),
        csrc_count=cc,
        marker=bool(b1 & 0x80),
        payload_type=b1 & 0x7F,
        seq=seq,
        timestamp=ts,
        ssrc=ssrc,
        ext_profile=profile,
        ext_length=ext_len,
        header_length=hl,
        payload_offset=hl,
        payload_length=n - hl,
    )


def parse_rtcp(data: bytes) -> list[RtcpPacket] | None:
    """Walk a compound RTCP datagram. None unless the first packet is valid RTCP.

    In SRTCP only the first packet's header is cleartext, so the walk stops at the first header that
    does not check out; the bytes after the last packet (SRTCP index, tag) are left to the caller.
    """
    try:
        return _parse_rtcp(data)
    except (ValueError, IndexError, struct.error):
        return None


def _parse_rtcp(data: bytes) -> list[RtcpPacket] | None:
    out: list[RtcpPacket] = []
    pos = 0
    n = len(data)
    while pos + 4 <= n:
        b0, pt, words = data[pos], data[pos + 1], struct.unpack_from(">H", data, pos + 2)[0]
        size = 4 * (words + 1)
        if b0 >> 6 != 2 or not is_rtcp_second_byte(pt) or pos + size > n:
            break
        ssrc = struct.unpack_from(">I", data, pos + 4)[0] if size >= 8 else None
        out.append(RtcpPacket(packet_type=pt, count=b0 & 0x1F, length=size, offset=pos, ssrc=ssrc))
        pos += size
    return out or None


TrailerKind = Literal["aead", "hmac80", "none"]


def _index_run(values: list[int | None]) -> bool:
    """E flag set and the 31-bit SRTCP index stepping by 1 (gaps of up to 3 lost packets tolerated)."""
    pairs = good = 0
    for a, b in itertools.pairwise(values):
        pairs += 1
        if a is not None and b is not None and a >> 31 and b >> 31:
            step = ((b & 0x7FFFFFFF) - (a & 0x7FFFFFFF)) & 0x7FFFFFFF
            good += 1 <= step <= 4
    return pairs > 0 and good * 5 >= pairs * 4


def srtcp_trailer_kind(packets: Sequence[bytes]) -> TrailerKind | None:
    """Which SRTCP trailer do these RTCP datagrams (one direction, in order) carry?

    RFC 3711 3.4: E flag + 31-bit index after the encrypted part; the 80-bit HMAC-SHA1 tag follows it
    ([-14:-10]). RFC 7714 (AEAD) puts the index last ([-4:]). None when fewer than 2 packets.
    """
    pkts = [bytes(p) for p in packets]
    if len(pkts) < 2:
        return None

    def word(p: bytes, end: int) -> int | None:
        start = len(p) + end - 4
        if start < 8:  # the index cannot overlap the first RTCP header
            return None
        return int.from_bytes(p[start : start + 4], "big")

    if _index_run([word(p, 0) for p in pkts]):
        return "aead"
    if _index_run([word(p, -10) for p in pkts]):
        return "hmac80"
    return "none"


def payload_entropy(data: bytes) -> float:
    """Shannon entropy in bits per byte (0.0 for empty input). Encrypted payloads approach 8."""
    arr = np.frombuffer(bytes(data), dtype=np.uint8)
    if arr.size == 0:
        return 0.0
    counts = np.bincount(arr, minlength=256)
    p = counts[counts > 0] / arr.size
    return float(-(p * np.log2(p)).sum())


_SEQ_MOD = 1 << 16
_MAX_DROPOUT = 3000  # RFC 3550 A.1: a jump larger than this is not an in-order packet


@dataclass
class StreamStats:
    """Per-SSRC counters updated packet by packet (RFC 3550 appendix A.1 and A.8).

    `clock_rate` is the RTP timestamp rate in Hz (8000 for G.711, 48000 Opus, 90000 video).
    """

    ssrc: int
    clock_rate: int = 90000
    packets: int = 0
    bytes: int = 0
    payload_types: set[int] = field(default_factory=set)
    base_seq: int = -1
    max_seq: int = -1
    cycles: int = 0
    reordered: int = 0
    duplicates: int = 0
    jitter: float = 0.0  # in timestamp units, as in RTCP reports
    _last_arrival: float | None = None
    _last_ts: int = 0

    def add(self, header: RtpHeader, size: int, arrival_ns: int) -> None:
        self.packets += 1
        self.bytes += size
        self.payload_types.add(header.payload_type)
        self._update_seq(header.seq)
        self._update_jitter(header.timestamp, arrival_ns)

    def _update_seq(self, seq: int) -> None:
        if self.max_seq < 0:
            self.base_seq = self.max_seq = seq
            return
        delta = (seq - self.max_seq) % _SEQ_MOD
        if delta == 0:
            self.duplicates += 1
        elif delta < _MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += _SEQ_MOD
            self.max_seq = seq
        elif delta > _SEQ_MOD - _MAX_DROPOUT:
            self.reordered += 1
        else:
            # A large jump: the source restarted its sequence. Count it from here on.
            self.base_seq = self.max_seq = seq
            self.cycles = 0

    def _update_jitter(self, ts: int, arrival_ns: int) -> None:
        if self.clock_rate <= 0:
            return
        arrival = arrival_ns * self.clock_rate / 1e9
        if self._last_arrival is not None:
            ts_delta = (ts - self._last_ts) % (1 << 32)
            if ts_delta >= 1 << 31:
                ts_delta -= 1 << 32
            d = abs((arrival - self._last_arrival) - ts_delta)
            self.jitter += (d - self.jitter) / 16.0
        self._last_arrival = arrival
        self._last_ts = ts

    @property
    def expected(self) -> int:
        if self.max_seq < 0:
            return 0
        return self.cycles + self.max_seq - self.base_seq + 1

    @property
    def lost(self) -> int:
        """Expected minus received; negative when duplicates outnumber losses (RFC 3550 A.3)."""
        return self.expected - self.packets

    @property
    def loss_fraction(self) -> float:
        return max(self.lost, 0) / self.expected if self.expected else 0.0

    @property
    def jitter_ms(self) -> float:
        return self.jitter * 1000.0 / self.clock_rate if self.clock_rate > 0 else 0.0


def accumulate_streams(
    packets: Iterable[tuple[bytes, int]], clock_rates: dict[int, int] | None = None, default_rate: int = 90000
) -> dict[int, StreamStats]:
    """(datagram, arrival_ns) pairs of one direction -> StreamStats per SSRC. Non-RTP is skipped.

    `clock_rates` maps a payload type to its rate; the first packet's PT picks the stream's rate.
    """
    rates = clock_rates or {}
    out: dict[int, StreamStats] = {}
    for data, arrival_ns in packets:
        hdr = parse_rtp(data)
        if hdr is None:
            continue
        stats = out.get(hdr.ssrc)
        if stats is None:
            stats = out[hdr.ssrc] = StreamStats(hdr.ssrc, rates.get(hdr.payload_type, default_rate))
        stats.add(hdr, len(data), arrival_ns)
    return out


# -- packet columns (vectorised, for the scan's media tap) ---------------------------------------
# Per-packet RTP header fields of whole chunks at once: numpy, with the compiled twin in
# _kinds.c (rtp_fields); tests/test_compiled_twins.py keeps the two equal.
from analyzer.common.compiled import load  # noqa: E402
from analyzer.dissect.kinds import (  # noqa: E402
    RTCP,
    RTP,
    ZOOM_MEDIA,
    ZOOM_PORT_HI,
    ZOOM_PORT_LO,
    _Bytes,
    _zoom_media_ok,
    c_packet_columns,
)

MEDIA_TYPES: tuple[str, ...] = ("unknown", "audio", "video", "screenshare", "fec")
UNKNOWN, AUDIO, VIDEO, SCREEN, FEC = range(len(MEDIA_TYPES))
_compiled_kinds = load("analyzer.dissect._kinds")


def _zoom_inner(b: _Bytes, zp: np.ndarray, sp: np.ndarray, dp: np.ndarray) -> np.ndarray:
    """Offset of the Zoom media header: SFU Gen B (UDP+8) when its check passes, else Gen A
    (UDP+1), else P2P (UDP+0), as kinds.py decides (protocols.md 1.2)."""
    port = ((sp >= ZOOM_PORT_LO) & (sp <= ZOOM_PORT_HI)) | ((dp >= ZOOM_PORT_LO) & (dp <= ZOOM_PORT_HI))
    sfu = (b.at(0) == 0x05) & port
    gen_b = sfu & (zp > 8) & np.isin(b.at(7), (0x00, 0x04)) & _zoom_media_ok(b, zp, 8)
    gen_a = sfu & ~gen_b & _zoom_media_ok(b, zp, 1)
    return np.where(gen_b, 8, np.where(gen_a, 1, 0)).astype(np.int64)


RTCP_SR, RTCP_RR = 200, 201
RTCP_MAX_BLOCKS = 31  # RFC 3550 6.4: RC is 5 bits


def rtcp_reports(
    buf: np.ndarray, off: np.ndarray, plen: np.ndarray, kinds: np.ndarray, sport: np.ndarray, dport: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Sender reports and report blocks of the first RTCP packet of each datagram (RFC 3550 6.4;
    a compound packet starts with its SR or RR). Plain RTCP (kind rtcp) starts at 0, Zoom's
    RTCP (inner types 0x21-0x23, kind zoom_media) at inner+16 (protocols.md 1.3).

    Returns (srs, blocks): srs has `i` (packet index), `ssrc` (sender) and `ntp_mid` (the middle
    32 bits of the NTP timestamp, what a receiver echoes as LSR); blocks has `i`, `ssrc` (the
    reporter), `source` (the reportee), `lsr` and `dlsr` (1/65536 s), only blocks with an LSR."""
    n = off.shape[0]
    rel = np.full(n, -1, np.int64)
    rel[kinds == RTCP] = 0
    z = np.flatnonzero(kinds == ZOOM_MEDIA)
    if z.size:
        b = _Bytes(buf, off[z], plen[z])
        inner = _zoom_inner(b, plen[z], sport[z], dport[z])
        t = b.at(inner)
        rel[z] = np.where((t >= 0x21) & (t <= 0x23), inner + 16, -1)
    cand = np.flatnonzero(rel >= 0)
    b = _Bytes(buf, off[cand], plen[cand])
    r = rel[cand]
    b0, pt = b.at(r), b.at(r + 1)
    words = b.u16(r + 2)
    ssrc = b.u32(r + 4)
    ok = (b0 >> 6 == 2) & (words >= 1) & (ssrc >= 0) & (r + 4 * (words + 1) <= plen[cand])
    sr = ok & (pt == RTCP_SR) & (words >= 6)
    ntp_mid = b.u32(r + 10)
    srs = {"i": cand[sr], "ssrc": ssrc[sr], "ntp_mid": ntp_mid[sr]}
    rc = np.where(ok, np.maximum(b0, 0) & 0x1F, 0)
    first = np.where(pt == RTCP_SR, r + 28, r + 8)
    has_blocks = ok & ((pt == RTCP_SR) | (pt == RTCP_RR))
    end = r + 4 * (words + 1)
    parts: dict[str, list[np.ndarray]] = {"i": [], "ssrc": [], "source": [], "lsr": [], "dlsr": []}
    for k in range(int(rc[has_blocks].max()) if has_blocks.any() else 0):
        base = first + 24 * k
        sel = has_blocks & (rc > k) & (base + 24 <= end)
        lsr = b.u32(base + 16)
        sel &= lsr > 0
        parts["i"].append(cand[sel])
        parts["ssrc"].append(ssrc[sel])
        parts["source"].append(b.u32(base)[sel])
        parts["lsr"].append(lsr[sel])
        parts["dlsr"].append(b.u32(base + 20)[sel])
    blocks = {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in parts.items()}
    return srs, blocks


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
        b = _Bytes(buf, off[z], plen[z])
        zp = plen[z]
        inner = _zoom_inner(b, zp, sport[z], dport[z])
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
    b = _Bytes(buf, off, plen)
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
