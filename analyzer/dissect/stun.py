"""STUN / TURN messages (RFC 8489, RFC 8656, classic RFC 3489) and TURN ChannelData.

Layouts: ../shared/research/protocols.md sections 1.6 (Zoom's cookie-less variant) and 2.2.
Every function here is pure and returns None (or an empty list) instead of raising.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

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
