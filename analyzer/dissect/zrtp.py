"""ZRTP packets (RFC 6189): a Diffie-Hellman key agreement carried on the media port.

Seeing ZRTP tells that the media keys were agreed end to end in the media path (nothing a server
could hand out), so the flow holds a key_exchange role next to its media.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analyzer.dissect.columns import Bytes
from analyzer.dissect.spec import Dissector, FlowContext, Kind, PacketHook, Rule

MAGIC = 0x5A525450  # "ZRTP"
PREAMBLE = 0x505A

MESSAGE_TYPES = frozenset(
    {
        "Hello",
        "HelloACK",
        "Commit",
        "DHPart1",
        "DHPart2",
        "Confirm1",
        "Confirm2",
        "Conf2ACK",
        "Error",
        "ErrorACK",
        "GoClear",
        "ClearACK",
        "SASrelay",
        "RelayACK",
        "Ping",
        "PingACK",
    }
)


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the ZRTP packet checksum."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class ZrtpMessage:
    sequence: int
    ssrc: int
    message_type: str  # type block with the padding spaces removed, e.g. "Hello", "DHPart1"
    known_type: bool
    length_words: int
    length_ok: bool  # 12-byte header + length*4 + 4-byte CRC == packet size
    crc_ok: bool | None  # None when the packet is too short to carry a CRC
    version: str | None  # Hello only, e.g. "1.10"
    client_id: str | None  # Hello only: the implementation's 16-char identifier


def _ascii(raw: bytes) -> str | None:
    if all(0x20 <= b < 0x7F for b in raw):
        return raw.decode("ascii")
    return None


def parse_zrtp(data: bytes) -> ZrtpMessage | None:
    """ZRTP facts, or None when the bytes are not a ZRTP packet."""
    try:
        data = bytes(data)
        if len(data) < 24 or data[0] & 0xFC != 0x10:  # RFC 7983: ZRTP first byte is 16..19
            return None
        if int.from_bytes(data[4:8], "big") != MAGIC:
            return None
        if int.from_bytes(data[12:14], "big") != PREAMBLE:
            return None
        mtype = _ascii(data[16:24])
        if mtype is None:
            return None
        length = int.from_bytes(data[14:16], "big")
        crc_ok: bool | None = None
        if len(data) >= 28:
            # RFC 6189 refers to RFC 3309 for the CRC; accept either byte order of the stored
            # value because implementations were seen to differ.
            calc = crc32c(data[:-4])
            stored = data[-4:]
            crc_ok = stored in (calc.to_bytes(4, "big"), calc.to_bytes(4, "little"))
        name = mtype.rstrip(" ")
        version = client = None
        if name == "Hello" and len(data) >= 48:
            version = _ascii(data[24:28])
            client = _ascii(data[28:44])
            client = client.rstrip(" ") if client is not None else None
        return ZrtpMessage(
            sequence=int.from_bytes(data[2:4], "big"),
            ssrc=int.from_bytes(data[8:12], "big"),
            message_type=name,
            known_type=name in MESSAGE_TYPES,
            length_words=length,
            length_ok=12 + length * 4 + 4 == len(data),
            crc_ok=crc_ok,
            version=version,
            client_id=client,
        )
    except MemoryError:
        raise  # out of memory is not bad input: never swallowed (issue 16)
    except Exception:
        return None


# --- Registration: kinds, rules and facts (analyzer/dissect/registry.py) ---------------------


def _rule(b: Bytes, sport: np.ndarray, dport: np.ndarray) -> np.ndarray:
    return (b.at(0) == 0x10) & (b.u32(4) == MAGIC)  # RFC 6189 5: "ZRTP" cookie at +4


def _packet(ctx: FlowContext, p: bytes, d: int, ts_ns: int) -> bool:
    if not 16 <= p[0] <= 19:
        return False
    z = parse_zrtp(p)
    if z is None:
        return False
    ctx.facts.proto("zrtp")
    ctx.facts["zrtp"] = True
    ctx.facts.first("zrtp_client", z.client_id)
    return True


DISSECTOR = Dissector(
    name="zrtp",
    kinds=(Kind("zrtp", 11, role="key_exchange", control=True, label="zrtp"),),
    rules=(Rule("zrtp", "udp", 60, ("zrtp",), _rule),),
    facts=(("zrtp", "bool"), ("zrtp_client", "str")),
    labels=(("zrtp", 40),),
    udp_packet=(PacketHook(60, _packet),),
)
