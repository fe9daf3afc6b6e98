"""Zoom's native media transport: SFU encapsulation (two generations), set-up messages, the media
("inner") header and the RTP/RTCP embedded in it; P2P media with the inner header at UDP+0.

Layouts verified on real packets: ../shared/research/protocols.md sections 1.1-1.3 and 1.5.
Pure functions, never raise.
"""

from __future__ import annotations

import ipaddress
import struct
import uuid
from dataclasses import dataclass

import numpy as np

from analyzer.decode.fields import member
from analyzer.dissect.columns import Bytes, on, port_in
from analyzer.dissect.rtp import RtcpPacket, RtpHeader, parse_rtcp, parse_rtp, rtcp_ok, rtp_ok
from analyzer.dissect.spec import Dissector, FlowContext, Kind, PacketHook, Rule

ZOOM_UDP_PORTS = range(8801, 8811)  # Zoom KB: UDP 8801-8810 to the multimedia routers

SFU_MEDIA = 0x05  # UDP+0 of a server flow: "data container"
SETUP_TYPES = (0x01, 0x02, 0x03, 0x04)
# Minimum sizes of the set-up messages seen in 2019 and 2022 (protocols.md 1.1).
_SETUP_MIN_LEN = {0x01: 39, 0x02: 27, 0x03: 13, 0x04: 13}

INNER_AUDIO = 0x0F
INNER_VIDEO = 0x10
INNER_SCREEN = 0x0D  # screen share only when inner+7 == 0x1e, otherwise control
INNER_P2P_SCREEN = 0x1E
INNER_RTCP = (0x21, 0x22, 0x23)
INNER_PROBE = 0x15
INNER_KEEPALIVE = 0x0A
INNER_P2P_HELLO = 0x1F
INNER_CONTROL = (0x01, 0x0C, 0x0D, 0x20)
KNOWN_INNER = frozenset(
    (
        INNER_AUDIO,
        INNER_VIDEO,
        INNER_SCREEN,
        INNER_P2P_SCREEN,
        *INNER_RTCP,
        INNER_PROBE,
        INNER_KEEPALIVE,
        INNER_P2P_HELLO,
        *INNER_CONTROL,
    )
)

MEDIA_KINDS = ("audio", "video", "screenshare", "rtcp")
# Every media header seen from 2019 to 2022 continues with these three bytes (protocols.md 1.3).
MEDIA_MARK = b"\x01\x00\xfb"
# The P2P probe and hello carry fixed bytes after the type (zoom_p2p.pcapng, protocols.md 1.5).
P2P_PROBE_MARK = b"\x15\x01\x00\x00\x00\x00"
P2P_HELLO_MARK = b"\x1f\x02\x01\x00"
P2P_PROBE_MIN = 16


@dataclass(frozen=True)
class ZoomPacket:
    generation: str  # "B" (8-byte SFU header), "A" (1-byte), "setup" or "p2p"
    sfu_type: int | None  # UDP+0 on a server flow; None on P2P
    inner_offset: int | None
    inner_type: int | None
    media_kind: str  # audio video screenshare rtcp probe control keepalive p2p_hello setup
    setup_version: int | None = None  # +1..2 of the 0x01/0x02 set-up messages (2 in 2019, 3 in 2022)
    sfu_seq: int | None = None  # Gen B only
    conn_id: int | None = None  # Gen B +3..6, 0x02 +19..22, 0x03/0x04 +9..12
    direction: str | None = None  # Gen B +7: "up" (0x00, client->server) or "down" (0x04)
    embedded_offset: int | None = None  # where the RTP/RTCP header starts in the UDP payload
    rtp: RtpHeader | None = None
    rtcp: tuple[RtcpPacket, ...] | None = None
    hello_ip: str | None = None
    hello_uuid: str | None = None

    @property
    def is_media(self) -> bool:
        return self.media_kind in MEDIA_KINDS


def embedded_offset(data: bytes, inner: int) -> tuple[str, int] | None:
    """(media kind, offset of the embedded RTP/RTCP) for the media header at `inner`, else None."""
    if inner >= len(data):
        return None
    t = data[inner]
    if t == INNER_AUDIO:
        return "audio", inner + 19
    if t == INNER_VIDEO:
        # Long form: inner+20 == 0x02 and RTP at +24; short form: RTP right at +20.
        if inner + 20 >= len(data):
            return None
        return "video", inner + (24 if data[inner + 20] == 0x02 else 20)
    if t == INNER_SCREEN:
        if inner + 7 < len(data) and data[inner + 7] == 0x1E:
            return "screenshare", inner + 27
        return None
    if t == INNER_P2P_SCREEN:
        return "screenshare", inner + 20
    if t in INNER_RTCP:
        return "rtcp", inner + 16
    return None


_Media = tuple[str, int, RtpHeader | None, tuple[RtcpPacket, ...] | None]


def _media(data: bytes, inner: int) -> _Media | None:
    """The media kind with its embedded header, only when that header checks out."""
    found = embedded_offset(data, inner)
    if found is None:
        return None
    kind, off = found
    if kind == "rtcp":
        packets = parse_rtcp(data[off:])
        return (kind, off, None, tuple(packets)) if packets else None
    hdr = parse_rtp(data[off:])
    return (kind, off, hdr, None) if hdr is not None else None


def _non_media_kind(t: int) -> str:
    if t == INNER_PROBE:
        return "probe"
    if t == INNER_KEEPALIVE:
        return "keepalive"
    if t == INNER_P2P_HELLO:
        return "p2p_hello"
    return "control"


def parse_zoom(data: bytes, server_side: bool) -> ZoomPacket | None:
    """One UDP payload of a Zoom flow.

    server_side=True: a flow to a multimedia router (UDP 8801-8810), with SFU encapsulation.
    server_side=False: a P2P flow; the media header is at UDP+0 and only self-checking packets
    (valid embedded RTP/RTCP, the hello's length chain, the probe's marker) are accepted.
    """
    try:
        data = bytes(data)
        return _parse_server(data) if server_side else _parse_p2p(data)
    except (ValueError, IndexError, struct.error):
        return None


def _setup(data: bytes) -> ZoomPacket | None:
    t = data[0]
    if len(data) < _SETUP_MIN_LEN[t]:
        return None
    version = conn = None
    if t in (0x01, 0x02):
        version = struct.unpack_from(">H", data, 1)[0]
        if t == 0x02:
            conn = struct.unpack_from(">I", data, 19)[0]
    else:
        conn = struct.unpack_from(">I", data, 9)[0]
    return ZoomPacket(
        generation="setup",
        sfu_type=t,
        inner_offset=None,
        inner_type=None,
        media_kind="setup",
        setup_version=version,
        conn_id=conn,
    )


def _gen_b_header(data: bytes) -> bool:
    return len(data) > 8 and data[7] in (0x00, 0x04)


def _parse_server(data: bytes) -> ZoomPacket | None:
    if not data:
        return None
    t = data[0]
    if t in SETUP_TYPES:
        return _setup(data)
    if t != SFU_MEDIA or len(data) < 2:
        return None
    gen_b = _gen_b_header(data)
    # protocols.md 1.2: try Gen B (inner at +8), then Gen A (inner at +1); media must check out.
    for gen, inner in (("B", 8), ("A", 1)):
        if gen == "B" and not gen_b:
            continue
        media = _media(data, inner)
        if media is not None:
            return _packet(data, gen, inner, media[0], media)
    if gen_b and data[8] in KNOWN_INNER:
        return _packet(data, "B", 8, _non_media_kind(data[8]), None)
    if data[1] in KNOWN_INNER:
        return _packet(data, "A", 1, _non_media_kind(data[1]), None)
    # A data container whose inner type is unknown: still Zoom, no known meaning.
    return ZoomPacket(
        generation="B" if gen_b else "A", sfu_type=t, inner_offset=None, inner_type=None, media_kind="control"
    )


def _packet(
    data: bytes,
    gen: str,
    inner: int,
    kind: str,
    media: _Media | None,
) -> ZoomPacket:
    seq = conn = direction = None
    if gen == "B":
        seq, conn = struct.unpack_from(">HI", data, 1)
        direction = "up" if data[7] == 0x00 else "down"
    return ZoomPacket(
        generation=gen,
        sfu_type=data[0] if gen in ("A", "B") else None,
        inner_offset=inner,
        inner_type=data[inner],
        media_kind=kind,
        sfu_seq=seq,
        conn_id=conn,
        direction=direction,
        embedded_offset=media[1] if media else None,
        rtp=media[2] if media else None,
        rtcp=media[3] if media else None,
    )


def _parse_p2p(data: bytes) -> ZoomPacket | None:
    if len(data) < 4:
        return None
    if data[1:4] == MEDIA_MARK:
        media = _media(data, 0)
        if media is not None:
            return _packet(data, "p2p", 0, media[0], media)
        return None
    # 0x15 carries both the filler probes (1028 B of 0x01/0x03) and short reports; both start alike.
    if data[:6] == P2P_PROBE_MARK and len(data) >= P2P_PROBE_MIN:
        return _packet(data, "p2p", 0, "probe", None)
    if data[:4] == P2P_HELLO_MARK:
        hello = parse_p2p_hello(data)
        if hello is not None:
            return ZoomPacket(
                generation="p2p",
                sfu_type=None,
                inner_offset=0,
                inner_type=INNER_P2P_HELLO,
                media_kind="p2p_hello",
                hello_ip=hello[0],
                hello_uuid=hello[1],
            )
    return None


_HELLO_HEADER = 24
_MAX_HELLO_FIELD = 64


def parse_p2p_hello(data: bytes) -> tuple[str | None, str | None] | None:
    """(peer private IP, UUID) from a 0x1f hello: 24-byte header, length+ASCII IP, length+UUID, 4 zeros.

    Accepted when the length chain ends exactly at 4 zero bytes at the end (as nDPI checks). The
    strings are hostile: each is kept only if it is an IP literal / a UUID, otherwise None.
    """
    try:
        pos = _HELLO_HEADER
        fields: list[bytes] = []
        for _ in range(2):
            n = struct.unpack_from(">I", data, pos)[0]
            if n > _MAX_HELLO_FIELD or pos + 4 + n > len(data):
                return None
            fields.append(bytes(data[pos + 4 : pos + 4 + n]))
            pos += 4 + n
        if pos + 4 != len(data) or data[pos:] != b"\x00\x00\x00\x00":
            return None
    except (ValueError, IndexError, struct.error):
        return None
    return _ip_text(fields[0]), _uuid_text(fields[1])


def _ip_text(raw: bytes) -> str | None:
    try:
        return str(ipaddress.ip_address(raw.decode("ascii")))
    except (ValueError, UnicodeDecodeError):
        return None


def _uuid_text(raw: bytes) -> str | None:
    try:
        return str(uuid.UUID(raw.decode("ascii")))
    except (ValueError, UnicodeDecodeError):
        return None


# --- Registration: kinds, rules and facts (analyzer/dissect/registry.py) ---------------------

_KNOWN_SORTED = tuple(sorted(KNOWN_INNER))
# First bytes a P2P payload (media header at UDP+0) can start with.
P2P_FIRST = (INNER_AUDIO, INNER_VIDEO, INNER_SCREEN, INNER_P2P_SCREEN, *INNER_RTCP, INNER_PROBE, INNER_P2P_HELLO)


def media_ok(b: Bytes, plen: np.ndarray, inner: int | np.ndarray) -> np.ndarray:
    """Column rule: a media header at `inner` whose embedded RTP/RTCP checks out."""
    # protocols.md 1.3: embedded RTP at inner+19 (audio), +24/+20 (video long/short form),
    # +27 (screen share 0x0d when inner+7 == 0x1e), +20 (P2P screen share); RTCP at inner+16.
    t = b.at(inner)
    video_rel = np.where(b.at(inner + 20) == 0x02, inner + 24, inner + 20)
    rtp_rel = np.full(t.shape, -1, dtype=np.int64)
    rtp_rel = np.where(t == INNER_AUDIO, inner + 19, rtp_rel)
    rtp_rel = np.where((t == INNER_VIDEO) & (b.at(inner + 20) >= 0), video_rel, rtp_rel)
    rtp_rel = np.where((t == INNER_SCREEN) & (b.at(inner + 7) == INNER_P2P_SCREEN), inner + 27, rtp_rel)
    rtp_rel = np.where(t == INNER_P2P_SCREEN, inner + 20, rtp_rel)
    is_rtcp = (t >= INNER_RTCP[0]) & (t <= INNER_RTCP[-1])
    rtp = (rtp_rel >= 0) & rtp_ok(b, plen, rtp_rel)
    rtcp = is_rtcp & rtcp_ok(b, plen, np.full(t.shape, inner + 16, dtype=np.int64))
    return rtp | rtcp


def _sfu(b: Bytes, plen: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(media, probe, keep-alive, control) masks for a payload on a Zoom SFU flow (protocols.md 1.1-1.2)."""
    b0 = b.at(0)
    setup = np.zeros(b0.shape, dtype=bool)
    for t, min_len in _SETUP_MIN_LEN.items():
        setup |= (b0 == t) & (plen >= min_len)
    data = (b0 == SFU_MEDIA) & (plen >= 2)
    # Generation B: 8-byte header whose +7 is the direction (0x00 up, 0x04 down); else Generation A.
    gen_b = (plen > 8) & member(b.at(7), (0x00, 0x04))
    media = data & ((gen_b & media_ok(b, plen, 8)) | media_ok(b, plen, 1))
    t_b, t_a = b.at(8), b.at(1)
    known_b = gen_b & member(t_b, _KNOWN_SORTED)
    t_rest = np.where(known_b, t_b, np.where(member(t_a, _KNOWN_SORTED), t_a, -1))
    probe = data & ~media & (t_rest == INNER_PROBE)
    keepalive = data & ~media & (t_rest == INNER_KEEPALIVE)
    control = setup | (data & ~media & ~probe & ~keepalive)
    return media, probe, keepalive, control


def _sfu_rule(b: Bytes, sport: np.ndarray, dport: np.ndarray) -> tuple[np.ndarray, ...]:
    b0 = b.at(0)
    return on(port_in(sport, dport, ZOOM_UDP_PORTS) & (b0 >= 0x01) & (b0 <= SFU_MEDIA), b, _sfu)


def _p2p(b: Bytes, plen: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(media, probe, control) for Zoom's media header at UDP+0 (P2P, protocols.md 1.5)."""
    media = b.equals(1, MEDIA_MARK) & media_ok(b, plen, 0)
    probe = b.equals(0, P2P_PROBE_MARK) & (plen >= P2P_PROBE_MIN)
    # 0x1f hello: 24-byte header, u32 length + IP text, u32 length + UUID, then exactly 4 zero bytes.
    n1 = b.u32(_HELLO_HEADER)
    n1_ok = (n1 >= 0) & (n1 <= _MAX_HELLO_FIELD)
    n2 = b.u32(np.where(n1_ok, _HELLO_HEADER + 4 + n1, -1))
    n2_ok = (n2 >= 0) & (n2 <= _MAX_HELLO_FIELD)
    end = _HELLO_HEADER + 4 + n1 + 4 + n2 + 4
    zeros = (b.at(plen - 4) == 0) & (b.at(plen - 3) == 0) & (b.at(plen - 2) == 0) & (b.at(plen - 1) == 0)
    hello = b.equals(0, P2P_HELLO_MARK) & n1_ok & n2_ok & (end == plen) & zeros
    return media, probe, hello


def _p2p_rule(b: Bytes, sport: np.ndarray, dport: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return on(member(b.at(0), P2P_FIRST), b, _p2p)


def _facts(ctx: FlowContext, z: ZoomPacket) -> None:
    f = ctx.facts
    f.proto("zoom")
    if z.generation in ("A", "B", "p2p"):
        f.first("zoom_generation", z.generation)
    f.first("zoom_setup_version", z.setup_version)
    f.add("zoom_media_kinds", z.media_kind)
    if z.media_kind == "p2p_hello":
        f.first("zoom_p2p_hello", z.hello_ip or "")
    if z.rtp is not None:
        f.add("rtp_ssrcs", z.rtp.ssrc)
        f.add("rtp_payload_types", z.rtp.payload_type)
        f["rtp_packets"] = f.get("rtp_packets", 0) + 1


def _server_packet(ctx: FlowContext, p: bytes, d: int, ts_ns: int) -> bool:
    if not (0x01 <= p[0] <= SFU_MEDIA and ctx.meta.port_in(ZOOM_UDP_PORTS)):
        return False
    z = parse_zoom(p, server_side=True)
    if z is not None:
        _facts(ctx, z)
    return z is not None


def _p2p_packet(ctx: FlowContext, p: bytes, d: int, ts_ns: int) -> bool:
    if ctx.meta.port_in(ZOOM_UDP_PORTS) or len(p) < 4:
        return False
    z = parse_zoom(p, server_side=False)
    if z is not None:
        _facts(ctx, z)
    return z is not None


DISSECTOR = Dissector(
    name="zoom",
    kinds=(
        Kind("zoom_media", 12, role="media", label="zoom"),
        # Filler on the media path that carries no audio or video (issue 13): bandwidth probes
        # (inner type 0x15) and keep-alives (0x0a). Their bytes are not media; the flow's
        # `other_by_kind` says what they were. The keep-alive came later, so its code is higher.
        Kind("zoom_probe", 13, role="other", label="zoom"),
        Kind("zoom_keepalive", 19, role="other", label="zoom"),
        # In-band control of the media channel, like RTCP.
        Kind("zoom_control", 14, role="media", control=True, label="zoom"),
    ),
    rules=(
        Rule("zoom_sfu", "udp", 70, ("zoom_media", "zoom_probe", "zoom_keepalive", "zoom_control"), _sfu_rule),
        Rule("zoom_p2p", "udp", 80, ("zoom_media", "zoom_probe", "zoom_control"), _p2p_rule),
    ),
    facts=(
        ("zoom_generation", "str"),
        ("zoom_setup_version", "i64"),
        ("zoom_media_kinds", "list<str>"),
        ("zoom_p2p_hello", "str"),
    ),
    labels=(("zoom", 10),),
    udp_packet=(PacketHook(30, _server_packet), PacketHook(80, _p2p_packet)),
)
