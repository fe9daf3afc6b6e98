"""ZRTP packet recognition. No public capture at hand carries ZRTP (protocols.md section 3), so the
packets are built here from the RFC 6189 layout."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.dissect.zrtp import MAGIC, crc32c, parse_zrtp


def _zrtp(mtype: str, body: bytes, seq: int = 1, ssrc: int = 0xDEADBEEF, crc_order: str = "big") -> bytes:
    block = mtype.encode().ljust(8, b" ")
    words = (4 + 8 + len(body)) // 4
    message = struct.pack("!HH", 0x505A, words) + block + body
    packet = struct.pack("!BBHII", 0x10, 0, seq, MAGIC, ssrc) + message
    return packet + crc32c(packet).to_bytes(4, crc_order)


def _hello_body() -> bytes:
    # version, client id (16), H3 (32), ZID (12), flags (4), no algorithm lists, MAC (8)
    return b"1.10" + b"confscope-test  " + b"\x33" * 32 + b"\x5a" * 12 + b"\x00" * 4 + b"\x00" * 8


def test_crc32c_check_value():
    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value


def test_hello():
    pkt = _zrtp("Hello", _hello_body(), seq=7)
    msg = parse_zrtp(pkt)
    assert msg is not None
    assert (msg.sequence, msg.ssrc, msg.message_type) == (7, 0xDEADBEEF, "Hello")
    assert msg.known_type and msg.length_ok and msg.crc_ok
    assert msg.version == "1.10" and msg.client_id == "confscope-test"


def test_other_types_and_crc_byte_order():
    for mtype in ("Commit", "DHPart1", "DHPart2", "Confirm1", "Conf2ACK", "HelloACK"):
        msg = parse_zrtp(_zrtp(mtype, b"\x00" * 16, crc_order="little"))
        assert msg is not None and msg.message_type == mtype and msg.known_type
        assert msg.crc_ok and msg.version is None
    damaged = bytearray(_zrtp("Commit", b"\x00" * 16))
    damaged[30] ^= 0xFF
    msg = parse_zrtp(bytes(damaged))
    assert msg is not None and msg.crc_ok is False
    odd = parse_zrtp(_zrtp("Fancy", b"\x00" * 4))
    assert odd is not None and not odd.known_type


def test_not_zrtp():
    good = _zrtp("Hello", _hello_body())
    assert parse_zrtp(b"\x80" + good[1:]) is None  # RTP first byte
    assert parse_zrtp(good[:4] + b"ZRTQ" + good[8:]) is None  # wrong magic
    assert parse_zrtp(good[:12] + b"\x50\x5b" + good[14:]) is None  # wrong preamble
    assert parse_zrtp(good[:16] + b"Hel\x00lo  " + good[24:]) is None  # non-printable type
    short = parse_zrtp(good[:-10])
    assert short is not None and not short.length_ok and short.crc_ok is False


def test_every_truncation_is_safe():
    good = _zrtp("Hello", _hello_body())
    for cut in range(len(good)):
        msg = parse_zrtp(good[:cut])
        assert msg is None or (cut >= 24 and msg.message_type == "Hello")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise(data):
    parse_zrtp(data)
    framed = struct.pack("!BBHI", 0x10, 0, 1, MAGIC) + data[:4] + b"\x50\x5a" + data[4:]
    msg = parse_zrtp(framed)
    assert msg is None or isinstance(msg.message_type, str)
