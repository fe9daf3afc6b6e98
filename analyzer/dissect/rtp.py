"""RTP / RTCP headers (RFC 3550, RFC 5761 mux), SRTP/SRTCP evidence and per-SSRC stream statistics.

Layouts: ../shared/research/protocols.md section 2.4. Parsers are pure and never raise.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from analyzer.dissect.columns import Bytes, on
from analyzer.dissect.spec import Dissector, FlowContext, Hook, Kind, PacketHook, Rule

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


# --- Registration: kinds, rules and facts (analyzer/dissect/registry.py) ---------------------

SRTP_ENTROPY_BITS = 7.0  # bits/byte over the pooled RTP payloads; codecs in clear stay lower


def rtp_ok(b: Bytes, plen: np.ndarray, rel: np.ndarray) -> np.ndarray:
    """An RTP header at payload offset `rel` (column rule; also used inside Zoom's media header)."""
    # RFC 3550 5.1: V=2; 12 + 4*CC bytes, plus 4 + 4*len when X is set, must fit. RFC 5761 4: a
    # second byte of 192-223 is RTCP, not RTP.
    b0, b1 = b.at(rel), b.at(rel + 1)
    ok = (b0 >> 6 == 2) & (b1 >= 0) & ~((b1 >= 192) & (b1 <= 223)) & (rel + 12 <= plen)
    hl = 12 + 4 * (np.maximum(b0, 0) & 0x0F)
    has_x = (np.maximum(b0, 0) & 0x10) != 0
    ext_words = b.u16(rel + hl + 2)
    ok &= ~has_x | (ext_words >= 0)
    hl = np.where(has_x, hl + 4 + 4 * np.maximum(ext_words, 0), hl)
    return ok & (rel + hl <= plen)


def rtcp_ok(b: Bytes, plen: np.ndarray, rel: np.ndarray) -> np.ndarray:
    """An RTCP header at payload offset `rel` (column rule)."""
    # RFC 3550 6.4: V=2, packet type 192-223 (RFC 5761 range), 4*(length+1) bytes must fit.
    b0, b1, words = b.at(rel), b.at(rel + 1), b.u16(rel + 2)
    return (b0 >> 6 == 2) & (b1 >= 192) & (b1 <= 223) & (words >= 0) & (rel + 4 * (words + 1) <= plen)


def padding_only(b: Bytes, plen: np.ndarray) -> np.ndarray:
    """An RTP packet at offset 0 that is all padding (column rule; `is_padding_only` per packet)."""
    # RFC 3550 5.1: P set and the last byte (the padding count) covers everything after the
    # header, so the packet carries no payload (WebRTC's bandwidth-probe padding, RFC 4588 RTX).
    b0 = b.at(0)
    hl = 12 + 4 * (np.maximum(b0, 0) & 0x0F)
    has_x = (np.maximum(b0, 0) & 0x10) != 0
    hl = np.where(has_x, hl + 4 + 4 * np.maximum(b.u16(hl + 2), 0), hl)
    pad = b.at(plen - 1)
    return (b0 >= 0) & ((np.maximum(b0, 0) & 0x20) != 0) & (pad > 0) & (hl + pad == plen)


def _rule(b: Bytes, sport: np.ndarray, dport: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    b0 = b.at(0)
    v2 = (b0 >= 128) & (b0 <= 191)  # RFC 7983: RTP/RTCP range
    rtcp = on(v2, b, lambda x, n: rtcp_ok(x, n, np.zeros(n.shape, dtype=np.int64)))
    rtp = on(v2, b, lambda x, n: rtp_ok(x, n, np.zeros(n.shape, dtype=np.int64)))
    return rtcp, rtp & on(rtp, b, padding_only), rtp


@dataclass
class _Pooled:
    rtp: list[tuple[bytes, int]] = field(default_factory=list)
    rtcp: dict[int, list[bytes]] = field(default_factory=lambda: {0: [], 1: []})


def pooled(ctx: FlowContext) -> _Pooled:
    """The flow's RTP and RTCP datagrams kept for the pooled statistics (entropy, SRTCP trailer)."""
    return ctx.state("rtp", _Pooled)


def _packet(ctx: FlowContext, p: bytes, d: int, ts_ns: int) -> bool:
    if not (128 <= p[0] <= 191 and len(p) >= 8):
        return False
    if is_rtcp_second_byte(p[1]):
        if parse_rtcp(p):
            pooled(ctx).rtcp[d].append(p)
            return True
    elif parse_rtp(p) is not None:
        pooled(ctx).rtp.append((p, d))
        return True
    return False


def _finish(ctx: FlowContext) -> None:
    pool = ctx.scratch.get("rtp")
    if pool is None or not (pool.rtp or any(pool.rtcp.values())):
        return
    f = ctx.facts
    payloads: list[bytes] = []
    for p, _d in pool.rtp:
        h = parse_rtp(p)
        if h is None:
            continue
        f.add("rtp_ssrcs", h.ssrc)
        f.add("rtp_payload_types", h.payload_type)
        payloads.append(p[h.payload_offset :])
    f["rtp_packets"] = f.get("rtp_packets", 0) + len(payloads)
    f["rtcp_packets"] = sum(len(v) for v in pool.rtcp.values())
    kinds = [srtcp_trailer_kind(v) for v in pool.rtcp.values() if len(v) >= 2]
    kind = next((k for k in kinds if k not in (None, "none")), next((k for k in kinds if k), None))
    f.first("srtcp_kind", kind)
    if payloads:
        f["rtp_entropy"] = round(payload_entropy(b"".join(payloads)), 3)
    # RTP needs a few self-consistent packets before it counts (nDPI asks for 3 too).
    if len(payloads) >= 2 or f["rtcp_packets"] >= 2 or (payloads and f["rtcp_packets"]):
        f.proto("rtp")
    if "rtp" in f.get("protocols", []):
        f["srtp"] = _is_srtp(f)
        if f["srtp"]:
            f.proto("srtp")


def _is_srtp(f: dict) -> bool:
    if f.get("dtls_handshake") or f.get("srtcp_kind") in ("aead", "hmac80"):
        return True
    # Entropy alone is weak: compressed video in clear (H.263, PT 34 in rtp.pcapng) reaches 7.9
    # bits/byte. Count it only with dynamic payload types (96-127), which WebRTC-era stacks use;
    # legacy SIP phones with static types (PCMA 8) rarely encrypt.
    ent = f.get("rtp_entropy")
    pts = f.get("rtp_payload_types") or []
    dynamic = bool(pts) and all(96 <= pt <= 127 for pt in pts)
    return ent is not None and ent >= SRTP_ENTROPY_BITS and dynamic


DISSECTOR = Dissector(
    name="rtp",
    kinds=(
        Kind("rtp", 9, role="media", label="rtp"),
        Kind("rtcp", 10, role="media", label="rtp"),
        # RTP that is all padding carries no audio or video: filler, role `other` (issue 13).
        # Added after the first kinds, so its code comes after theirs.
        Kind("rtp_padding", 20, role="other", label="rtp"),
    ),
    rules=(Rule("rtp", "udp", 90, ("rtcp", "rtp_padding", "rtp"), _rule),),
    facts=(
        ("rtp_ssrcs", "list<i64>"),
        ("rtp_payload_types", "list<i64>"),
        ("rtp_packets", "i64"),
        ("rtcp_packets", "i64"),
        ("rtp_entropy", "f64"),
        ("srtcp_kind", "str"),
        ("srtp", "bool"),  # True when the RTP looks encrypted (DTLS on the flow, SRTCP trailer, entropy)
    ),
    labels=(("srtp", 20), ("rtp", 30)),
    udp_packet=(PacketHook(90, _packet),),
    udp_finish=(Hook(30, _finish),),
)
