"""RTP/RTCP/SRTP dissector: real streams from the shared captures, synthetic sequences, hostile input."""

from __future__ import annotations

import os
import struct
from collections import defaultdict
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.dissect.rtp import (
    parse_rtcp,
    parse_rtp,
    payload_entropy,
    srtcp_trailer_kind,
)
from tests.conftest import real_capture

Key = tuple[str, int, str, int]


@cache
def _udp(name: str) -> tuple[tuple[Key, bytes, int], ...]:
    scapy = pytest.importorskip("scapy.all")
    out = []
    for pkt in scapy.PcapReader(str(real_capture(name))):
        udp = pkt.getlayer(scapy.UDP)
        ip = pkt.getlayer(scapy.IP) or pkt.getlayer(scapy.IPv6)
        if udp is not None and ip is not None:
            out.append(((ip.src, udp.sport, ip.dst, udp.dport), bytes(udp.payload), int(pkt.time * 10**9)))
    return tuple(out)


def _rtcp_by_direction(name: str) -> dict[Key, list[bytes]]:
    out: dict[Key, list[bytes]] = defaultdict(list)
    for key, payload, _ in _udp(name):
        if parse_rtcp(payload) is not None and 53 not in (key[1], key[3]):
            out[key].append(payload)
    return out


def _rtp(seq: int, ts: int, ssrc: int = 0x1234, pt: int = 0, payload: bytes = bytes(20)) -> bytes:
    return struct.pack(">BBHII", 0x80, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def test_parse_rtp_header_fields_zoom_extension() -> None:
    # Zoom P2P audio: RTP at UDP+19 with a 0xBEDE one-byte extension (protocols.md 1.3).
    audio = next(p for _, p, _ in _udp("zoom_p2p.pcapng") if p[:4] == b"\x0f\x01\x00\xfb")
    hdr = parse_rtp(audio[19:])
    assert hdr is not None and hdr.version == 2 and hdr.extension
    assert hdr.ext_profile == 0xBEDE and hdr.payload_type == 113 and hdr.ssrc == 0x01000802
    assert hdr.header_length == 12 + 4 * hdr.csrc_count + 4 + 4 * hdr.ext_length
    assert hdr.payload_offset + hdr.payload_length == len(audio) - 19


def test_srtcp_trailer_kinds_on_real_captures() -> None:
    teams = _rtcp_by_direction("teams.pcap")
    assert {srtcp_trailer_kind(v) for v in teams.values()} == {"hmac80"}
    # Skype's SRTCP: E flag clear (protocols.md 2.4), so neither trailer pattern holds.
    skype = _rtcp_by_direction("skype-conference-call.pcap")
    assert {srtcp_trailer_kind(v) for v in skype.values()} == {"none"}
    rtp_pcapng = _rtcp_by_direction("rtp.pcapng")
    assert {srtcp_trailer_kind(v) for v in rtp_pcapng.values()} == {"none"}


def test_srtcp_trailer_synthetic() -> None:
    sr = struct.pack(">BBHI", 0x80, 200, 6, 0xABCD) + bytes(20)
    aead = [sr + os.urandom(30) + struct.pack(">I", 0x80000000 | i) for i in range(1, 6)]
    hmac = [sr + os.urandom(30) + struct.pack(">I", 0x80000000 | i) + os.urandom(10) for i in range(7, 12)]
    plain = [sr] * 4
    assert srtcp_trailer_kind(aead) == "aead"
    assert srtcp_trailer_kind(hmac) == "hmac80"
    assert srtcp_trailer_kind(plain) == "none"
    assert srtcp_trailer_kind(aead[:1]) is None
    # The E flag must be set: an index without it is not SRTCP encryption.
    no_e = [sr + os.urandom(30) + struct.pack(">I", i) for i in range(1, 6)]
    assert srtcp_trailer_kind(no_e) == "none"


def test_parse_rtcp_compound_sr_sdes() -> None:
    rtcp = next(p for _, p, _ in _udp("zoom_p2p.pcapng") if p[:4] == b"\x22\x01\x00\xfb")
    packets = parse_rtcp(rtcp[16:])
    assert packets is not None
    assert [p.type_name for p in packets] == ["SR", "SDES"]
    assert packets[0].ssrc == 0x01000802 and packets[1].offset == packets[0].length
    assert parse_rtcp(_rtp(1, 1)) is None  # second byte 0: RTP, not RTCP


def test_payload_entropy_bounds() -> None:
    assert payload_entropy(b"") == 0.0
    assert payload_entropy(bytes(100)) == 0.0
    assert payload_entropy(bytes(range(256)) * 4) == pytest.approx(8.0)
    srtp = [p for k, p, _ in _udp("teams.pcap") if k[1] == 16332 and parse_rtp(p)]
    assert len(srtp) == 18
    # One short packet cannot show more than log2(len) bits; the whole stream's payload can.
    assert payload_entropy(b"".join(p[parse_rtp(p).payload_offset :] for p in srtp)) > 7.5


def test_rtp_validity_rules() -> None:
    assert parse_rtp(_rtp(1, 1)[:11]) is None
    assert parse_rtp(b"\x40" + _rtp(1, 1)[1:]) is None  # V=1
    assert parse_rtp(b"\x80\xc8" + _rtp(1, 1)[2:]) is None  # 200: RTCP SR per RFC 5761
    with_ext = b"\x90\x00" + _rtp(1, 1)[2:12] + b"\xbe\xde\x00\x02" + bytes(4)
    assert parse_rtp(with_ext) is None  # the extension claims 8 bytes, 4 are present
    assert parse_rtp(with_ext + bytes(4)).payload_length == 0


def test_truncation_at_every_offset_never_raises() -> None:
    rtcp = next(v for v in _rtcp_by_direction("teams.pcap").values())[0]
    rtp = next(p for k, p, _ in _udp("teams.pcap") if k[1] == 16332 and parse_rtp(p))
    for blob in (rtcp, rtp):
        for cut in range(len(blob) + 1):
            parse_rtp(blob[:cut])
            packets = parse_rtcp(blob[:cut])
            assert packets is None or sum(p.length for p in packets) <= cut
            srtcp_trailer_kind([blob[:cut], blob[:cut]])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.lists(st.binary(max_size=40), max_size=5))
def test_random_bytes_never_raise(data: bytes, many: list[bytes]) -> None:
    for blob in (data, b"\x80" + data, b"\x90\x00" + data, b"\x81\xc8" + data):
        hdr = parse_rtp(blob)
        assert hdr is None or hdr.header_length <= len(blob)
        parse_rtcp(blob)
    srtcp_trailer_kind(many)
    assert 0.0 <= payload_entropy(data) <= 8.0
