"""STUN / TURN messages (RFC 8489, RFC 8656, classic RFC 3489) and TURN ChannelData.

Layouts: ../shared/research/protocols.md sections 1.6 (Zoom's cookie-less variant) and 2.2.
Every function here is pure and returns None (or an empty list) instead of raising.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

import numpy as np

from analyzer.dissect.columns import Bytes, on
from analyzer.dissect.spec import Dissector, FlowContext, Hook, Kind, PacketHook, Rule, clean_text

MAGIC_COOKIE = 0x2112A442
_COOKIE_BYTES = MAGIC_COOKIE.to_bytes(4, "big")
HEADER_LEN = 20

# Attribute types (IANA STUN registry).
ATTR_MAPPED_ADDRESS = 0x0001
ATTR_USERNAME = 0x0006
ATTR_MESSAGE_INTEGRITY = 0x0008
ATTR_ERROR_CODE = 0x0009
ATTR_CHANNEL_NUMBER = 0x000C
ATTR_XOR_PEER_ADDRESS = 0x0012
ATTR_DATA = 0x0013
ATTR_REALM = 0x0014
ATTR_NONCE = 0x0015
ATTR_XOR_RELAYED_ADDRESS = 0x0016
ATTR_XOR_MAPPED_ADDRESS = 0x0020
ATTR_MESSAGE_INTEGRITY_SHA256 = 0x001C
ATTR_SOFTWARE = 0x8022
ATTR_FINGERPRINT = 0x8028
# [MS-TURN] 2.2.2.16 / 2.2.2.17 / 2.2.2.23: the client's reflexive address is XOR-MAPPED-ADDRESS
# under the old draft number 0x8020; MS-Version 0x8008 marks the dialect; in an Allocate response
# MAPPED-ADDRESS (0x0001) and MS-Alternate Mapped Address (0x8090) are the *allocated* (relayed)
# IPv4 / IPv6 addresses on the TURN server, not the client's (MS-TURN 3.2.5.1).
ATTR_MS_XOR_MAPPED_ADDRESS = 0x8020
ATTR_MS_VERSION = 0x8008
ATTR_MS_ALTERNATE_MAPPED = 0x8090
METHOD_ALLOCATE = 0x003
# Zoom's classic-STUN response carries the reflexive address, un-XORed, in 0x0103 (protocols.md 1.6).
ATTR_ZOOM_MAPPED = 0x0103

CLASS_NAMES = ("request", "indication", "success", "error")

# [MS-TURN] 2.2.3: multiplexed TURN adds a 12-byte header that starts 0xFF10.
_MS_TURN_MAGIC = b"\xff\x10"
_MS_TURN_HEADER = 12

# Text attributes are hostile input: keep them short in facts.
_MAX_TEXT = 256


@dataclass(frozen=True)
class StunAddress:
    ip: str
    port: int
    family: int  # 1 = IPv4, 2 = IPv6 (STUN family codes)


@dataclass(frozen=True)
class StunMessage:
    msg_type: int
    method: int
    msg_class: str
    length: int
    transaction_id: bytes  # 12 bytes (RFC 8489) or 16 bytes (classic, no cookie)
    classic: bool  # no magic cookie: RFC 3489 style (Zoom, old MS-TURN)
    ms_turn: bool  # a 0xFF10 [MS-TURN] header was stripped
    attr_types: tuple[int, ...]
    mapped: StunAddress | None = None
    xor_mapped: StunAddress | None = None
    xor_relayed: StunAddress | None = None
    xor_peer: StunAddress | None = None
    software: str | None = None
    username: str | None = None
    realm: str | None = None
    nonce_present: bool = False
    integrity: bool = False
    fingerprint: bool = False
    error_code: int | None = None
    channel: int | None = None
    data: bytes | None = None  # DATA attribute of Send/Data indications (a relayed datagram)
    ms_relayed: StunAddress | None = None  # MS-TURN Allocate answer: MAPPED-ADDRESS = allocated relay address
    truncated: bool = False  # the attribute walk did not end exactly at the message end

    @property
    def is_zoom_variant(self) -> bool:
        return 0x0101 in self.attr_types or ATTR_ZOOM_MAPPED in self.attr_types


def decode_type(msg_type: int) -> tuple[int, str]:
    """Split a 14-bit STUN message type into (method, class name) (RFC 8489 section 5)."""
    method = (msg_type & 0x000F) | ((msg_type >> 1) & 0x0070) | ((msg_type >> 2) & 0x0F80)
    cls = ((msg_type >> 4) & 0x1) | ((msg_type >> 7) & 0x2)
    return method, CLASS_NAMES[cls]


def _text(value: bytes) -> str:
    return value[:_MAX_TEXT].decode("utf-8", "replace").rstrip("\x00")


def _address(value: bytes, xor: bool, txid: bytes) -> StunAddress | None:
    if len(value) < 8:
        return None
    family = value[1]
    port = struct.unpack_from(">H", value, 2)[0]
    if family == 1:
        raw = value[4:8]
    elif family == 2 and len(value) >= 20:
        raw = value[4:20]
    else:
        return None
    if xor:
        port ^= MAGIC_COOKIE >> 16
        # IPv4 is XORed with the cookie; IPv6 with cookie || transaction ID (RFC 8489 14.2).
        pad = (_COOKIE_BYTES + txid[-12:])[: len(raw)]
        raw = bytes(a ^ b for a, b in zip(raw, pad, strict=True))
    ip = ipaddress.IPv4Address(raw) if family == 1 else ipaddress.IPv6Address(raw)
    return StunAddress(ip=str(ip), port=port, family=family)


def _header_ok(data: bytes) -> tuple[bool, bool] | None:
    """(is valid header, has cookie) for a message that must span all of `data`."""
    if len(data) < HEADER_LEN or data[0] & 0xC0:
        return None
    length = struct.unpack_from(">H", data, 2)[0]
    if HEADER_LEN + length != len(data):
        return None
    if data[4:8] == _COOKIE_BYTES:
        return True, True
    # Classic STUN has no cookie; keep it to the RFC 3489 first-byte range 0-3 with aligned attributes,
    # which is what makes a random datagram unlikely to pass.
    if data[0] > 3 or length % 4:
        return None
    return True, False


def parse_stun(data: bytes) -> StunMessage | None:
    """Parse one STUN/TURN message filling a whole datagram (or one TCP-framed message)."""
    try:
        return _parse_stun(bytes(data))
    except (ValueError, IndexError, struct.error):
        return None


def _parse_stun(data: bytes) -> StunMessage | None:
    ms_turn = False
    if data[:2] == _MS_TURN_MAGIC and len(data) >= _MS_TURN_HEADER + HEADER_LEN:
        data = data[_MS_TURN_HEADER:]
        ms_turn = True
    ok = _header_ok(data)
    if ok is None:
        return None
    _, cookie = ok
    msg_type, length = struct.unpack_from(">HH", data, 0)
    txid = data[8:20] if cookie else data[4:20]
    method, cls = decode_type(msg_type)
    fields: dict[str, object] = {}
    types: list[int] = []
    pos = HEADER_LEN
    end = HEADER_LEN + length
    truncated = False
    while pos + 4 <= end:
        atype, alen = struct.unpack_from(">HH", data, pos)
        value = data[pos + 4 : pos + 4 + alen]
        if len(value) < alen:
            truncated = True
            break
        types.append(atype)
        _attribute(atype, value, txid, fields)
        pos += 4 + alen + (-alen % 4)  # attributes are padded to 4 bytes
    if pos != end:
        truncated = True
    if method == METHOD_ALLOCATE and (
        ms_turn or ATTR_MS_VERSION in types or ATTR_MS_XOR_MAPPED_ADDRESS in types or ATTR_MS_ALTERNATE_MAPPED in types
    ):
        # MS-TURN Allocate answer: what MAPPED-ADDRESS holds is the relay's allocated address.
        relayed = fields.pop("mapped", None) or fields.pop("ms_alt_mapped", None)
        fields.pop("ms_alt_mapped", None)
        if relayed is not None:
            fields["ms_relayed"] = relayed
    fields.pop("ms_alt_mapped", None)
    return StunMessage(
        msg_type=msg_type,
        method=method,
        msg_class=cls,
        length=length,
        transaction_id=txid,
        classic=not cookie,
        ms_turn=ms_turn,
        attr_types=tuple(types),
        truncated=truncated,
        **fields,  # type: ignore[arg-type]
    )


def _put(fields: dict[str, object], key: str, value: object) -> None:
    # The first valid occurrence wins (RFC 8489: later duplicates are ignored).
    if value is not None and key not in fields:
        fields[key] = value


def _attribute(atype: int, value: bytes, txid: bytes, fields: dict[str, object]) -> None:
    if atype in (ATTR_MAPPED_ADDRESS, ATTR_ZOOM_MAPPED):
        _put(fields, "mapped", _address(value, False, txid))
    elif atype in (ATTR_XOR_MAPPED_ADDRESS, ATTR_MS_XOR_MAPPED_ADDRESS):
        _put(fields, "xor_mapped", _address(value, True, txid))
    elif atype == ATTR_MS_ALTERNATE_MAPPED:
        _put(fields, "ms_alt_mapped", _address(value, False, txid))
    elif atype == ATTR_XOR_RELAYED_ADDRESS:
        _put(fields, "xor_relayed", _address(value, True, txid))
    elif atype == ATTR_XOR_PEER_ADDRESS:
        _put(fields, "xor_peer", _address(value, True, txid))
    elif atype == ATTR_SOFTWARE:
        _put(fields, "software", _text(value))
    elif atype == ATTR_USERNAME:
        _put(fields, "username", _text(value))
    elif atype == ATTR_REALM:
        _put(fields, "realm", _text(value))
    elif atype == ATTR_NONCE:
        fields["nonce_present"] = True
    elif atype in (ATTR_MESSAGE_INTEGRITY, ATTR_MESSAGE_INTEGRITY_SHA256):
        fields["integrity"] = True
    elif atype == ATTR_FINGERPRINT:
        fields["fingerprint"] = True
    elif atype == ATTR_ERROR_CODE and len(value) >= 4:
        _put(fields, "error_code", (value[2] & 0x7) * 100 + value[3])
    elif atype == ATTR_CHANNEL_NUMBER and len(value) >= 2:
        _put(fields, "channel", struct.unpack_from(">H", value, 0)[0])
    elif atype == ATTR_DATA:
        _put(fields, "data", value)


def parse_channel_data(data: bytes) -> tuple[int, bytes] | None:
    """TURN ChannelData (RFC 8656 section 12): channel 0x4000-0x4FFF, length, data, padding <= 3."""
    if len(data) < 4:
        return None
    channel, length = struct.unpack_from(">HH", data, 0)
    if not 0x4000 <= channel <= 0x4FFF:
        return None
    spare = len(data) - 4 - length
    if not 0 <= spare <= 3:
        return None
    return channel, bytes(data[4 : 4 + length])


def _stun_at(stream: bytes, pos: int) -> int | None:
    """Length of a STUN message with cookie starting at pos, if its header is there."""
    if pos + HEADER_LEN > len(stream) or stream[pos] & 0xC0 or stream[pos + 4 : pos + 8] != _COOKIE_BYTES:
        return None
    return HEADER_LEN + struct.unpack_from(">H", stream, pos + 2)[0]


def split_stun_tcp(stream: bytes) -> list[bytes]:
    """Cut a TCP byte stream into STUN / ChannelData messages.

    TURN over TCP (RFC 8656) sends messages back to back: walk by their length fields (ChannelData
    padded to 4 bytes). ICE-TCP (RFC 6544) prefixes every message with a 2-byte length (RFC 4571);
    that framing is chosen when a cookie sits at +6 instead of +4. An incomplete tail is dropped.
    """
    out: list[bytes] = []
    try:
        data = bytes(stream)
        if _stun_at(data, 0) is None and _stun_at(data, 2) is not None:
            return _split_rfc4571(data)
        pos = 0
        while pos + 4 <= len(data):
            size = _stun_at(data, pos)
            if size is None:
                channel, length = struct.unpack_from(">HH", data, pos)
                if not 0x4000 <= channel <= 0x4FFF:
                    break
                size = 4 + length
                if pos + size > len(data):
                    break
                out.append(data[pos : pos + size])
                pos += size + (-size % 4)
                continue
            if pos + size > len(data):
                break
            out.append(data[pos : pos + size])
            pos += size
    except (ValueError, IndexError, struct.error):
        return out
    return out


def _split_rfc4571(data: bytes) -> list[bytes]:
    out: list[bytes] = []
    pos = 0
    while pos + 2 <= len(data):
        length = struct.unpack_from(">H", data, pos)[0]
        if length == 0 or pos + 2 + length > len(data):
            break
        out.append(data[pos + 2 : pos + 2 + length])
        pos += 2 + length
    return out


# --- Registration: kinds, rules and facts (analyzer/dissect/registry.py) ---------------------

# STUN messages parsed per flow: ICE keep-alives and TURN refreshes repeat the same facts, and
# the scan keeps up to 200 control packets per direction.
MAX_STUN_PER_FLOW = 48
TURN_METHODS = (0x003, 0x004, 0x006, 0x007, 0x008, 0x009)  # RFC 8656: Allocate .. ChannelBind


def _stun_rule(b: Bytes, sport: np.ndarray, dport: np.ndarray) -> np.ndarray:
    return on((b.at(0) <= 0x3F) | (b.at(0) == 0xFF), b, _stun_udp)


def _stun_udp(b: Bytes, plen: np.ndarray) -> np.ndarray:
    # RFC 8489 6: top two bits 0, 20-byte header + length == datagram, cookie 0x2112A442 at +4.
    # Without the cookie (RFC 3489, Zoom 1.6): first byte 0-3 and a length that is a multiple of 4.
    # [MS-TURN] 2.2.3: a 12-byte header starting 0xFF10 comes first; the STUN message follows.
    ms = b.equals(0, _MS_TURN_MAGIC) & (plen >= 32)
    base = np.where(ms, _MS_TURN_HEADER, 0).astype(np.int64)
    t0, length = b.at(base), b.u16(base + 2)
    head = (t0 >= 0) & ((t0 & 0xC0) == 0) & (length >= 0) & (base + HEADER_LEN + length == plen)
    cookie = b.u32(base + 4) == MAGIC_COOKIE
    classic = (t0 <= 3) & (length % 4 == 0)
    return head & (cookie | classic)


def _channel_rule(b: Bytes, sport: np.ndarray, dport: np.ndarray) -> np.ndarray:
    b0, plen = b.at(0), b.length
    turn = (b0 >= 0x40) & (b0 <= 0x4F) & (plen >= 4)  # RFC 8656 12: channels 0x4000-0x4FFF
    spare = plen - 4 - b.u16(2)
    return turn & (spare >= 0) & (spare <= 3)  # padding to 4 bytes is allowed, never more


def _stun_tcp_rule(b: Bytes, sport: np.ndarray, dport: np.ndarray) -> np.ndarray:
    b0 = b.at(0)
    return on((b0 >= 0) & (b0 <= 0x3F), b, _stun_tcp)


def _stun_tcp(b: Bytes, plen: np.ndarray) -> np.ndarray:
    # TURN over TCP (RFC 8656): a STUN message with cookie at the segment start, fitting in it.
    direct = ((b.at(0) & 0xC0) == 0) & (b.u32(4) == MAGIC_COOKIE) & (20 + b.u16(2) <= plen) & (b.u16(2) >= 0)
    # ICE-TCP (RFC 6544 / RFC 4571): 2-byte frame length == the STUN message size.
    frame = b.u16(0)
    framed = ((b.at(2) & 0xC0) == 0) & (b.u32(6) == MAGIC_COOKIE) & (b.u16(4) >= 0)
    framed &= (frame == 20 + b.u16(4)) & (2 + frame <= plen)
    return (b.at(0) >= 0) & (direct | framed)


def _rtt(msg: StunMessage, d: int, ts_ns: int, ctx: FlowContext) -> None:
    """Round trip of a request (client to server) and its answer with the same transaction ID:
    a bound on the server's distance, like the TCP handshake (geo plausibility)."""
    if not ts_ns:
        return
    f = ctx.facts
    pending = ctx.state("stun_requests", dict)
    answer = msg.msg_class in ("success", "error") or (msg.classic and msg.msg_type in (0x0002, 0x0101, 0x0111))
    if d == 0 and msg.msg_class == "request" and not answer:
        pending.setdefault(msg.transaction_id, ts_ns)
    elif d == 1 and answer and msg.transaction_id in pending:
        rtt = (ts_ns - pending.pop(msg.transaction_id)) / 1e6
        if rtt >= 0 and (f.get("stun_rtt_ms") is None or rtt < f["stun_rtt_ms"]):
            f["stun_rtt_ms"] = rtt


def stun_facts(ctx: FlowContext, p: bytes, d: int, ts_ns: int = 0) -> bool:
    """Facts of one STUN message or ChannelData; False when `p` is neither."""
    f = ctx.facts
    seen = ctx.scratch.get("stun_seen", 0)
    if seen >= MAX_STUN_PER_FLOW:
        # Still recognise the message (so it is not read as another protocol), skip the facts.
        return p[4:8] == _COOKIE_BYTES or parse_stun(p) is not None
    ctx.scratch["stun_seen"] = seen + 1
    msg = parse_stun(p)
    if msg is None:
        if parse_channel_data(p) is not None:
            f.proto("turn")
            return True
        return False
    f.proto("stun")
    _rtt(msg, d, ts_ns, ctx)
    if msg.method in TURN_METHODS or msg.channel is not None:
        f.proto("turn")
    f.add("stun_msg_types", msg.msg_type)
    for t in msg.attr_types[:32]:
        f.add("stun_attr_types", t)
    if msg.classic:
        f["stun_classic"] = True
    if msg.software is not None and f.get("stun_software") is None:
        f["stun_software"] = clean_text(msg.software)
    if msg.realm is not None and f.get("stun_realm") is None:
        f["stun_realm"] = clean_text(msg.realm)
    if msg.username is not None:
        f.add("stun_usernames", clean_text(msg.username))
    # Responses carry the reflexive address of the side they are sent to; Zoom's cookie-less
    # response type 0x0002 does not encode the RFC 5389 success class, so any message with a mapped
    # address counts. The direction is kept: only an answer travelling towards the capturing host
    # tells where that host is (the session decides which side that is). Relayed addresses
    # (XOR-RELAYED-ADDRESS, MS-TURN's Allocate MAPPED-ADDRESS) are the relay's, never the client's.
    if msg.msg_class == "success" or msg.classic:
        key = "stun_mapped" if d == 1 else "stun_mapped_c2s"
        for addr in (msg.xor_mapped, msg.mapped):
            if addr is not None:
                f.add(key, (addr.ip, addr.port))
        for relayed in (msg.xor_relayed, msg.ms_relayed):
            if relayed is not None:
                f.add("stun_relayed", (relayed.ip, relayed.port))
    if msg.xor_peer is not None:
        f.add("stun_peers", (msg.xor_peer.ip, msg.xor_peer.port))
    return True


def _with_cookie(ctx: FlowContext, p: bytes, d: int, ts_ns: int) -> bool:
    # ICE checks with the RFC 8489 cookie share UDP 8801 with Zoom's set-up types 0x01-0x04 (web
    # client, protocols.md 1.8): the cookie decides before Zoom's parser.
    return p[0] <= 3 and p[4:8] == _COOKIE_BYTES and stun_facts(ctx, p, d, ts_ns)


def _stun_like(ctx: FlowContext, p: bytes, d: int, ts_ns: int) -> bool:
    b0 = p[0]
    # Classic STUN, WhatsApp's 0x08xx types and MS-TURN's 0xFF10 header.
    return (b0 <= 3 or 0x08 <= b0 <= 0x0B or p[:2] == _MS_TURN_MAGIC) and stun_facts(ctx, p, d, ts_ns)


def _channel_data(ctx: FlowContext, p: bytes, d: int, ts_ns: int) -> bool:
    if not 0x40 <= p[0] <= 0x4F or ctx.depth != 0:
        return False
    cd = parse_channel_data(p)
    if cd is None:
        return False
    ctx.facts.proto("turn")
    ctx.facts.add("turn_channels", cd[0])
    if ctx.packet is not None:  # the relayed datagram is dissected like any other (no timestamp)
        ctx.packet(ctx, cd[1], d, 0)
    return True


def _tcp(ctx: FlowContext) -> None:
    c2s, s2c = ctx.streams[0], ctx.streams[1]
    if c2s[:1] in (b"\x00", b"\x01") and _COOKIE_BYTES in (c2s[4:8], c2s[6:10]):
        for d, data in ((0, c2s), (1, s2c)):
            for msg in split_stun_tcp(data):
                stun_facts(ctx, msg, d)


DISSECTOR = Dissector(
    name="stun",
    kinds=(
        Kind("stun", 5, role="nat_traversal", control=True, label="stun"),
        Kind("turn_channel", 6, role="media", label="turn"),  # ChannelData relays the call (RFC 8656 12)
    ),
    rules=(
        Rule("stun", "udp", 20, ("stun",), _stun_rule),
        Rule("turn_channel", "udp", 30, ("turn_channel",), _channel_rule),
        Rule("stun_tcp", "tcp", 30, ("stun",), _stun_tcp_rule),
    ),
    facts=(
        ("stun_software", "str"),
        ("stun_realm", "str"),
        ("stun_usernames", "list<str>"),
        ("stun_attr_types", "list<i64>"),
        ("stun_msg_types", "list<i64>"),
        ("stun_classic", "bool"),
        # reflexive address(es) in answers sent by the flow's server side (to the client)
        ("stun_mapped", "list<addr>"),
        # reflexive address(es) in answers sent by the client side (ICE checks, inbound flows)
        ("stun_mapped_c2s", "list<addr>"),
        ("stun_relayed", "list<addr>"),
        ("stun_peers", "list<addr>"),
        ("stun_rtt_ms", "f64"),  # smallest request/answer round trip seen (ms)
        ("turn_channels", "list<i64>"),  # TURN channel numbers (RFC 8656 12) whose ChannelData the flow carries
    ),
    labels=(("turn", 120), ("stun", 130)),
    udp_packet=(PacketHook(20, _with_cookie), PacketHook(40, _stun_like), PacketHook(50, _channel_data)),
    tcp_flow=(Hook(50, _tcp),),
)
