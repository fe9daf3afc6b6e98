"""Per-packet payload kinds, vectorised with numpy (hot path: no per-packet Python code).

Each packet's transport payload is buf[off:off+length]. Rules look at a few leading bytes, always
through `_Bytes`, which masks every read at or past off+length (it returns -1 there), so no rule
can see a neighbouring packet's bytes. The rules mirror the scalar parsers in stun.py, dtls.py,
rtp.py and zoom.py; tests/test_dissect_kinds.py measures the agreement on real captures.

Priority (first match wins) for UDP: dns port, STUN, TURN ChannelData, DTLS, ZRTP, Zoom SFU
(ports 8801-8810), Zoom P2P, RTCP, RTP, SIP, QUIC, other. For TCP: dns port, TLS record, STUN
(TURN-TCP / RFC 4571), SIP, tcp. Other IP protocols: other. No payload: none.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from analyzer.common.compiled import load
from analyzer.decode.fields import member

KIND_NAMES: tuple[str, ...] = (
    "none",
    "other",
    "tcp",
    "tls_handshake",
    "tls_appdata",
    "stun",
    "turn_channel",
    "dtls_handshake",
    "dtls_appdata",
    "rtp",
    "rtcp",
    "zrtp",
    "zoom_media",
    "zoom_probe",
    "zoom_control",
    "quic_long",
    "quic_short",
    "dns",
    "sip",
    # Media-path filler that carries no audio or video (role `other`, issue 13). Appended so the
    # codes above keep their values.
    "zoom_keepalive",
    "rtp_padding",
)
KIND_CODES: dict[str, int] = {name: i for i, name in enumerate(KIND_NAMES)}
(
    NONE,
    OTHER,
    TCP,
    TLS_HANDSHAKE,
    TLS_APPDATA,
    STUN,
    TURN_CHANNEL,
    DTLS_HANDSHAKE,
    DTLS_APPDATA,
    RTP,
    RTCP,
    ZRTP,
    ZOOM_MEDIA,
    ZOOM_PROBE,
    ZOOM_CONTROL,
    QUIC_LONG,
    QUIC_SHORT,
    DNS,
    SIP,
    ZOOM_KEEPALIVE,
    RTP_PADDING,
) = range(len(KIND_NAMES))

PROTO_TCP = 6
PROTO_UDP = 17

DNS_PORTS = (53, 5353, 5355)  # DNS, mDNS (RFC 6762), LLMNR (RFC 4795)
SIP_PORTS = (5060, 5061)  # RFC 3261
ZOOM_PORT_LO, ZOOM_PORT_HI = 8801, 8810  # Zoom KB: UDP 8801-8810 to multimedia routers
QUIC_PORT = 443
# RFC 3261 request methods (plus RFC 3262/3265/3428/3903/3515/3311 extensions) and the status line.
SIP_PREFIXES: tuple[bytes, ...] = tuple(
    m + b" "
    for m in (
        b"INVITE",
        b"REGISTER",
        b"ACK",
        b"BYE",
        b"CANCEL",
        b"OPTIONS",
        b"NOTIFY",
        b"SUBSCRIBE",
        b"PUBLISH",
        b"MESSAGE",
        b"INFO",
        b"PRACK",
        b"REFER",
        b"UPDATE",
        b"SIP/2.0",
    )
)
STUN_COOKIE = 0x2112A442
ZRTP_COOKIE = 0x5A525450  # "ZRTP", RFC 6189 section 5
DTLS_VERSIONS = (0xFEFF, 0xFEFD, 0xFEFC, 0x0100)
QUIC_V1, QUIC_V2 = 0x00000001, 0x6B3343CF

# Zoom inner (media header) types, protocols.md 1.3.
_Z_AUDIO, _Z_VIDEO, _Z_SCREEN, _Z_P2P_SCREEN, _Z_PROBE, _Z_KEEPALIVE = 0x0F, 0x10, 0x0D, 0x1E, 0x15, 0x0A
_Z_KNOWN = (0x0F, 0x10, 0x0D, 0x1E, 0x21, 0x22, 0x23, 0x15, 0x0A, 0x1F, 0x01, 0x0C, 0x20)
_Z_SETUP_MIN = {0x01: 39, 0x02: 27, 0x03: 13, 0x04: 13}


_LITTLE = sys.byteorder == "little"
_compiled = load("analyzer.dissect._kinds")


def _field_view(buf: np.ndarray, dtype: type, width: int) -> np.ndarray:
    n = max(buf.shape[0] - width + 1, 1)
    if buf.shape[0] < width:
        buf = np.concatenate([buf, np.zeros(width, np.uint8)])
    return np.ndarray(shape=(n,), dtype=dtype, buffer=buf, strides=(1,))


class _Bytes:
    """Masked reads of payload bytes at per-packet relative offsets."""

    def __init__(self, buf: np.ndarray, off: np.ndarray, length: np.ndarray) -> None:
        self.buf = buf
        self.off = off
        self.length = length
        self._cache: dict[object, np.ndarray] = {}

    def at(self, rel: int | np.ndarray) -> np.ndarray:
        """Byte at off+rel as int64, or -1 where rel is outside [0, length)."""
        if np.ndim(rel) == 0:
            rel = int(rel)
            if rel in self._cache:
                return self._cache[rel]
        r = np.asarray(rel, dtype=np.int64)
        ok = (r >= 0) & (r < self.length)
        out = np.full(self.off.shape, -1, dtype=np.int64)
        out[ok] = self.buf[(self.off + r)[ok] if r.ndim else self.off[ok] + r]
        if isinstance(rel, int):
            self._cache[rel] = out
        return out

    def subset(self, idx: np.ndarray) -> _Bytes:
        return _Bytes(self.buf, self.off[idx], self.length[idx])

    def _wide(self, rel: int | np.ndarray, width: int, view_dtype: type) -> np.ndarray:
        """A big-endian `width`-byte field at off+rel, or -1 where it does not fit in the payload.

        One gather through an overlapping strided view (see analyzer.decode.fields) instead of one
        gather per byte: this function dominated the cost of payload_kinds.
        """
        key = (int(rel), width) if np.ndim(rel) == 0 else None
        if key is not None and key in self._cache:
            return self._cache[key]
        r = np.asarray(rel, dtype=np.int64)
        ok = (r >= 0) & (r + width <= self.length)
        pos = self.off + r
        view = _field_view(self.buf, view_dtype, width)
        out = np.full(self.off.shape, -1, dtype=np.int64)
        vals = view[np.clip(pos[ok] if pos.ndim else pos, 0, view.shape[0] - 1)]
        out[ok] = vals.byteswap() if _LITTLE else vals
        if key is not None:
            self._cache[key] = out
        return out

    def u16(self, rel: int | np.ndarray) -> np.ndarray:
        return self._wide(rel, 2, np.uint16)

    def u32(self, rel: int | np.ndarray) -> np.ndarray:
        return self._wide(rel, 4, np.uint32)

    def equals(self, rel: int, pattern: bytes) -> np.ndarray:
        ok = np.ones(self.off.shape, dtype=bool)
        for i, value in enumerate(pattern):
            ok &= self.at(rel + i) == value
        return ok


def _on(mask: np.ndarray, b: _Bytes, rule: Callable[..., Any]) -> Any:
    """Evaluate `rule(bytes, plen)` only on the packets in `mask` (the candidates); False elsewhere.

    The variable-offset reads are the costly part, so they run on the few candidates only. A rule
    may return one mask or a tuple of masks.
    """
    idx = np.flatnonzero(mask)
    sub = b.subset(idx)
    res = rule(sub, sub.length)
    parts = res if isinstance(res, tuple) else (res,)
    outs = []
    for part in parts:
        out = np.zeros(mask.shape, dtype=bool)
        out[idx] = part
        outs.append(out)
    return tuple(outs) if isinstance(res, tuple) else outs[0]


def _port_in(sport: np.ndarray, dport: np.ndarray, ports: tuple[int, ...]) -> np.ndarray:
    return member(sport, ports) | member(dport, ports)


def _rtp_ok(b: _Bytes, plen: np.ndarray, rel: np.ndarray) -> np.ndarray:
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


def _rtcp_ok(b: _Bytes, plen: np.ndarray, rel: np.ndarray) -> np.ndarray:
    # RFC 3550 6.4: V=2, packet type 192-223 (RFC 5761 range), 4*(length+1) bytes must fit.
    b0, b1, words = b.at(rel), b.at(rel + 1), b.u16(rel + 2)
    return (b0 >> 6 == 2) & (b1 >= 192) & (b1 <= 223) & (words >= 0) & (rel + 4 * (words + 1) <= plen)


def _zoom_media_ok(b: _Bytes, plen: np.ndarray, inner: int) -> np.ndarray:
    # protocols.md 1.3: embedded RTP at inner+19 (audio), +24/+20 (video long/short form),
    # +27 (screen share 0x0d when inner+7 == 0x1e), +20 (P2P screen share); RTCP at inner+16.
    t = b.at(inner)
    video_rel = np.where(b.at(inner + 20) == 0x02, inner + 24, inner + 20)
    rtp_rel = np.full(t.shape, -1, dtype=np.int64)
    rtp_rel = np.where(t == _Z_AUDIO, inner + 19, rtp_rel)
    rtp_rel = np.where((t == _Z_VIDEO) & (b.at(inner + 20) >= 0), video_rel, rtp_rel)
    rtp_rel = np.where((t == _Z_SCREEN) & (b.at(inner + 7) == 0x1E), inner + 27, rtp_rel)
    rtp_rel = np.where(t == _Z_P2P_SCREEN, inner + 20, rtp_rel)
    is_rtcp = (t >= 0x21) & (t <= 0x23)
    rtp = (rtp_rel >= 0) & _rtp_ok(b, plen, rtp_rel)
    rtcp = is_rtcp & _rtcp_ok(b, plen, np.full(t.shape, inner + 16, dtype=np.int64))
    return rtp | rtcp


def _rtp_padding_only(b: _Bytes, plen: np.ndarray) -> np.ndarray:
    # RFC 3550 5.1: P set and the last byte (the padding count) covers everything after the
    # header, so the packet carries no payload (WebRTC's bandwidth-probe padding, RFC 4588 RTX).
    b0 = b.at(0)
    hl = 12 + 4 * (np.maximum(b0, 0) & 0x0F)
    has_x = (np.maximum(b0, 0) & 0x10) != 0
    hl = np.where(has_x, hl + 4 + 4 * np.maximum(b.u16(hl + 2), 0), hl)
    pad = b.at(plen - 1)
    return (b0 >= 0) & ((np.maximum(b0, 0) & 0x20) != 0) & (pad > 0) & (hl + pad == plen)


def _zoom_sfu(b: _Bytes, plen: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(media, probe, keep-alive, control) masks for a payload on a Zoom SFU flow (protocols.md 1.1-1.2)."""
    b0 = b.at(0)
    setup = np.zeros(b0.shape, dtype=bool)
    for t, min_len in _Z_SETUP_MIN.items():
        setup |= (b0 == t) & (plen >= min_len)
    data = (b0 == 0x05) & (plen >= 2)
    # Generation B: 8-byte header whose +7 is the direction (0x00 up, 0x04 down); else Generation A.
    gen_b = (plen > 8) & member(b.at(7), (0x00, 0x04))
    media = data & ((gen_b & _zoom_media_ok(b, plen, 8)) | _zoom_media_ok(b, plen, 1))
    t_b, t_a = b.at(8), b.at(1)
    known_b = gen_b & member(t_b, _Z_KNOWN)
    t_rest = np.where(known_b, t_b, np.where(member(t_a, _Z_KNOWN), t_a, -1))
    probe = data & ~media & (t_rest == _Z_PROBE)
    keepalive = data & ~media & (t_rest == _Z_KEEPALIVE)
    control = setup | (data & ~media & ~probe & ~keepalive)
    return media, probe, keepalive, control


def _zoom_p2p(b: _Bytes, plen: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(media, probe, control) for Zoom's media header at UDP+0 (P2P, protocols.md 1.5)."""
    media = b.equals(1, b"\x01\x00\xfb") & _zoom_media_ok(b, plen, 0)
    probe = b.equals(0, b"\x15\x01\x00\x00\x00\x00") & (plen >= 16)
    # 0x1f hello: 24-byte header, u32 length + IP text, u32 length + UUID, then exactly 4 zero bytes.
    n1 = b.u32(24)
    n1_ok = (n1 >= 0) & (n1 <= 64)
    n2 = b.u32(np.where(n1_ok, 28 + n1, -1))
    n2_ok = (n2 >= 0) & (n2 <= 64)
    end = 24 + 4 + n1 + 4 + n2 + 4
    zeros = (b.at(plen - 4) == 0) & (b.at(plen - 3) == 0) & (b.at(plen - 2) == 0) & (b.at(plen - 1) == 0)
    hello = b.equals(0, b"\x1f\x02\x01\x00") & n1_ok & n2_ok & (end == plen) & zeros
    return media, probe, hello


def _stun(b: _Bytes, plen: np.ndarray) -> np.ndarray:
    # RFC 8489 6: top two bits 0, 20-byte header + length == datagram, cookie 0x2112A442 at +4.
    # Without the cookie (RFC 3489, Zoom 1.6): first byte 0-3 and a length that is a multiple of 4.
    # [MS-TURN] 2.2.3: a 12-byte header starting 0xFF10 comes first; the STUN message follows.
    ms = b.equals(0, b"\xff\x10") & (plen >= 32)
    base = np.where(ms, 12, 0).astype(np.int64)
    t0, length = b.at(base), b.u16(base + 2)
    head = (t0 >= 0) & ((t0 & 0xC0) == 0) & (length >= 0) & (base + 20 + length == plen)
    cookie = b.u32(base + 4) == STUN_COOKIE
    classic = (t0 <= 3) & (length % 4 == 0)
    return head & (cookie | classic)


def _stun_tcp(b: _Bytes, plen: np.ndarray) -> np.ndarray:
    # TURN over TCP (RFC 8656): a STUN message with cookie at the segment start, fitting in it.
    direct = ((b.at(0) & 0xC0) == 0) & (b.u32(4) == STUN_COOKIE) & (20 + b.u16(2) <= plen) & (b.u16(2) >= 0)
    # ICE-TCP (RFC 6544 / RFC 4571): 2-byte frame length == the STUN message size.
    frame = b.u16(0)
    framed = ((b.at(2) & 0xC0) == 0) & (b.u32(6) == STUN_COOKIE) & (b.u16(4) >= 0)
    framed &= (frame == 20 + b.u16(4)) & (2 + frame <= plen)
    return (b.at(0) >= 0) & (direct | framed)


def _sip_text(b: _Bytes) -> np.ndarray:
    ok = np.zeros(b.off.shape, dtype=bool)
    for prefix in SIP_PREFIXES:
        ok |= b.equals(0, prefix)
    return ok


def payload_kinds(
    buf: np.ndarray,
    off: np.ndarray,
    length: np.ndarray,
    proto: np.ndarray,
    sport: np.ndarray,
    dport: np.ndarray,
) -> np.ndarray:
    """Kind code (index into KIND_NAMES) of each packet's transport payload buf[off:off+length]."""
    if _compiled is None:
        return payload_kinds_numpy(buf, off, length, proto, sport, dport)
    out = np.empty(len(off), dtype=np.uint8)
    _compiled.payload_kinds(*c_packet_columns(buf, off, length, proto, sport, dport), out)
    return out


def c_packet_columns(
    buf: np.ndarray,
    off: np.ndarray,
    length: np.ndarray,
    proto_or_kind: np.ndarray,
    sport: np.ndarray,
    dport: np.ndarray,
    length_dtype: type = np.int32,
) -> tuple[np.ndarray, ...]:
    """The packet columns in the layout _kinds.c reads; no copy where they already have it (the
    decoder's columns do), values beyond int32 clipped where a narrower type is asked for."""
    return (
        np.ascontiguousarray(buf, dtype=np.uint8),
        np.ascontiguousarray(off, dtype=np.int64),
        _narrow(length, length_dtype),
        np.ascontiguousarray(proto_or_kind, dtype=np.uint8),
        _narrow(sport, np.int32),
        _narrow(dport, np.int32),
    )


def _narrow(values: np.ndarray, dtype: type) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype == dtype:
        return np.ascontiguousarray(values)
    info = np.iinfo(dtype)
    return np.ascontiguousarray(np.clip(values, -1, info.max), dtype=dtype)


def payload_kinds_numpy(
    buf: np.ndarray,
    off: np.ndarray,
    length: np.ndarray,
    proto: np.ndarray,
    sport: np.ndarray,
    dport: np.ndarray,
) -> np.ndarray:
    """payload_kinds with numpy only: the reference the compiled loop (_kinds.c) is tested against."""
    off = np.asarray(off, dtype=np.int64)
    plen = np.maximum(np.asarray(length, dtype=np.int64), 0)
    n = off.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.uint8)
    buf = np.asarray(buf, dtype=np.uint8)
    # Clamp to the buffer so a bad offset/length cannot read outside it (it reads as "no byte").
    plen = np.where((off >= 0) & (off + plen <= buf.shape[0]), plen, 0)
    if buf.shape[0] == 0:
        return np.zeros(n, dtype=np.uint8)
    proto = np.asarray(proto)
    sport = np.asarray(sport, dtype=np.int64)
    dport = np.asarray(dport, dtype=np.int64)
    b = _Bytes(buf, off, plen)
    has = plen > 0
    out = np.where(has, OTHER, NONE).astype(np.uint8)
    # Each transport's rules run on its own packets only: on a TCP-heavy capture the UDP
    # demultiplexing (most of the work) then touches a fraction of the packets.
    udp = np.flatnonzero(has & (proto == PROTO_UDP))
    if udp.size:
        out[udp] = _udp_kinds(b.subset(udp), sport[udp], dport[udp])
    tcp = np.flatnonzero(has & (proto == PROTO_TCP))
    if tcp.size:
        out[tcp] = _tcp_kinds(b.subset(tcp), sport[tcp], dport[tcp])
    return out


def _sip(b: _Bytes, sport: np.ndarray, dport: np.ndarray) -> np.ndarray:
    sip_first = member(b.at(0), sorted({p[0] for p in SIP_PREFIXES}))
    return _on(sip_first, b, lambda x, n: _sip_text(x)) | _port_in(sport, dport, SIP_PORTS)


def _udp_kinds(b: _Bytes, sport: np.ndarray, dport: np.ndarray) -> np.ndarray:
    """Kinds of UDP payloads (all non-empty)."""
    plen = b.length
    b0 = b.at(0)
    dns_port = _port_in(sport, dport, DNS_PORTS)
    sip = _sip(b, sport, dport)

    # RFC 7983 / 9443 first-byte demultiplexing, with the extra checks each parser applies.
    stun = _on((b0 <= 0x3F) | (b0 == 0xFF), b, _stun)
    turn = (b0 >= 0x40) & (b0 <= 0x4F) & (plen >= 4)  # RFC 8656 12: channels 0x4000-0x4FFF
    spare = plen - 4 - b.u16(2)
    turn &= (spare >= 0) & (spare <= 3)  # padding to 4 bytes is allowed, never more
    # RFC 6347 4.1: content type, version FEFF/FEFD (FEFC, 0100 pre-standard), 13-byte header.
    # The first record must fit: Zoom's P2P probe `15 01 00 00 00 00` reads as an alert of version
    # 0x0100, and only its length field (+11) gives it away (zoom_p2p.pcapng).
    rec_len = b.u16(11)
    dtls = (plen >= 13) & member(b.u16(1), DTLS_VERSIONS) & (rec_len >= 0) & (13 + rec_len <= plen)
    dtls_hs = dtls & member(b0, (20, 21, 22, 24, 26))
    dtls_app = dtls & member(b0, (23, 25))
    # RFC 9147 4: unified header 001CSLEE; only C=0, L=1 has a readable length; one record exactly.
    uni_hl = np.where((np.maximum(b0, 0) & 0x08) != 0, 5, 4)
    unified = (b0 >= 0) & ((b0 & 0xE0) == 0x20) & ((b0 & 0x10) == 0) & ((b0 & 0x04) != 0)
    unified &= uni_hl + b.u16(uni_hl - 2) == plen
    zrtp = (b0 == 0x10) & (b.u32(4) == ZRTP_COOKIE)  # RFC 6189 5: "ZRTP" cookie at +4
    zoom_port = ((sport >= ZOOM_PORT_LO) & (sport <= ZOOM_PORT_HI)) | (
        (dport >= ZOOM_PORT_LO) & (dport <= ZOOM_PORT_HI)
    )
    zs_media, zs_probe, zs_keepalive, zs_control = _on(zoom_port & (b0 >= 0x01) & (b0 <= 0x05), b, _zoom_sfu)
    zp_cand = member(b0, (0x0F, 0x10, 0x0D, 0x1E, 0x21, 0x22, 0x23, 0x15, 0x1F))
    zp_media, zp_probe, zp_control = _on(zp_cand, b, _zoom_p2p)
    v2 = (b0 >= 128) & (b0 <= 191)  # RFC 7983: RTP/RTCP range
    rtcp = _on(v2, b, lambda x, n: _rtcp_ok(x, n, np.zeros(n.shape, dtype=np.int64)))
    rtp = _on(v2, b, lambda x, n: _rtp_ok(x, n, np.zeros(n.shape, dtype=np.int64)))
    rtp_pad = rtp & _on(rtp, b, _rtp_padding_only)
    # RFC 9000 17.2: long header (form + fixed bit), DCID length <= 20; on port 443 or a known version.
    version = b.u32(1)
    known = (version == QUIC_V1) | (version == QUIC_V2) | ((version >> 8) == 0xFF0000)
    quic_port = _port_in(sport, dport, (QUIC_PORT,))
    quic_long = (b0 >= 0xC0) & (plen >= 7) & (b.at(5) >= 0) & (b.at(5) <= 20) & (quic_port | known)
    # RFC 9000 17.3: short header (form 0, fixed bit 1); too weak alone, so port 443 only.
    quic_short = (b0 >= 0x40) & (b0 <= 0x7F) & (plen >= 21) & quic_port
    rules = [
        (dns_port, DNS),
        (stun, STUN),
        (turn, TURN_CHANNEL),
        (dtls_hs, DTLS_HANDSHAKE),
        (dtls_app | unified, DTLS_APPDATA),
        (zrtp, ZRTP),
        (zs_media, ZOOM_MEDIA),
        (zs_probe, ZOOM_PROBE),
        (zs_keepalive, ZOOM_KEEPALIVE),
        (zs_control, ZOOM_CONTROL),
        (zp_media, ZOOM_MEDIA),
        (zp_probe, ZOOM_PROBE),
        (zp_control, ZOOM_CONTROL),
        (rtcp, RTCP),
        (rtp_pad, RTP_PADDING),
        (rtp, RTP),
        (sip, SIP),
        (quic_long, QUIC_LONG),
        (quic_short, QUIC_SHORT),
    ]
    return np.select([c for c, _ in rules], [k for _, k in rules], default=OTHER).astype(np.uint8)


def _tcp_kinds(b: _Bytes, sport: np.ndarray, dport: np.ndarray) -> np.ndarray:
    """Kinds of TCP payloads (all non-empty)."""
    b0, b1 = b.at(0), b.at(1)
    # TLS record layer (RFC 8446 5.1): type 20-23, legacy version 0x03 0x00-0x04.
    tls = member(b0, (20, 21, 22, 23)) & (b1 == 3) & (b.at(2) >= 0) & (b.at(2) <= 4)
    rules = [
        (_port_in(sport, dport, (53,)), DNS),  # DNS over TCP (RFC 7766)
        (tls & (b0 == 23), TLS_APPDATA),
        (tls, TLS_HANDSHAKE),
        (_on((b0 >= 0) & (b0 <= 0x3F), b, _stun_tcp), STUN),
        (_sip(b, sport, dport), SIP),
    ]
    return np.select([c for c, _ in rules], [k for _, k in rules], default=TCP).astype(np.uint8)


def kind_name(code: int) -> str:
    return KIND_NAMES[code] if 0 <= code < len(KIND_NAMES) else "other"
