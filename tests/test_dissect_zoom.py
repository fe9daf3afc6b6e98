"""Zoom dissector: SFU generations, set-up, media header types and P2P on the shared captures."""

from __future__ import annotations

import struct
from collections import Counter
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.dissect.zoom import parse_p2p_hello, parse_zoom
from tests.conftest import real_capture

Key = tuple[str, int, str, int]


@cache
def _udp(name: str) -> tuple[tuple[Key, bytes], ...]:
    scapy = pytest.importorskip("scapy.all")
    out = []
    for pkt in scapy.PcapReader(str(real_capture(name))):
        udp = pkt.getlayer(scapy.UDP)
        ip = pkt.getlayer(scapy.IP) or pkt.getlayer(scapy.IPv6)
        if udp is not None and ip is not None:
            out.append(((ip.src, udp.sport, ip.dst, udp.dport), bytes(udp.payload)))
    return tuple(out)


def _rtp(pt: int = 98, ssrc: int = 0x01000401) -> bytes:
    ext = b"\xbe\xde\x00\x01" + b"\x10\xaa\x00\x00"
    return struct.pack(">BBHII", 0x90, pt, 7, 1000, ssrc) + ext + bytes(40)


def _inner(t: int, n: int) -> bytes:
    return bytes([t]) + b"\x01\x00\xfb" + bytes(n - 4)


def test_zoom_2019_gen_a_server_flow() -> None:
    flow = [(k, p) for k, p in _udp("zoom.pcap") if {k[1], k[3]} == {58327, 8801}]
    parsed = [parse_zoom(p, server_side=True) for _, p in flow]
    assert all(z is not None for z in parsed)
    kinds = Counter(z.media_kind for z in parsed)
    down = Counter(z.media_kind for (k, _), z in zip(flow, parsed, strict=True) if k[1] == 8801)
    assert down["probe"] == 172  # the 172 probes counted in protocols.md section 5
    assert kinds["setup"] == 4 and kinds["probe"] > down["probe"]
    assert {z.generation for z in parsed if z.media_kind == "probe"} == {"A"}
    hello = next(z for z in parsed if z.sfu_type == 0x01)
    reply = next(z for z in parsed if z.sfu_type == 0x02)
    assert (hello.setup_version, reply.setup_version) == (2, 1)  # the 2019 version field
    # The connection ID of the server's reply is repeated by the 0x03/0x04 messages.
    assert {z.conn_id for z in parsed if z.sfu_type in (0x03, 0x04)} == {reply.conn_id}


def test_zoom_2019_gen_a_rtcp_at_inner_16() -> None:
    parsed = [parse_zoom(p, server_side=True) for k, p in _udp("zoom.pcap") if 8801 in (k[1], k[3])]
    rtcp = [z for z in parsed if z is not None and z.media_kind == "rtcp"]
    assert len(rtcp) == 1
    z = rtcp[0]
    assert (z.generation, z.inner_offset, z.inner_type, z.embedded_offset) == ("A", 1, 0x22, 17)
    assert [p.type_name for p in z.rtcp] == ["SR", "SDES"] and z.rtcp[0].ssrc == 0x01000402
    assert sum(z.media_kind == "keepalive" for z in parsed if z) == 2


def test_zoom_p2p_media_and_hellos() -> None:
    parsed = [parse_zoom(p, server_side=False) for _, p in _udp("zoom_p2p.pcapng")]
    parsed = [z for z in parsed if z is not None]
    video = [z for z in parsed if z.media_kind == "video"]
    audio = [z for z in parsed if z.media_kind == "audio"]
    assert len(video) == 203 and {z.embedded_offset for z in video} == {24}
    assert {z.rtp.payload_type for z in video} == {98, 110}
    assert len(audio) == 44 and {z.embedded_offset for z in audio} == {19}
    assert {z.rtp.payload_type for z in audio} == {113}
    assert all(z.generation == "p2p" and z.sfu_type is None for z in video + audio)
    hellos = [z for z in parsed if z.media_kind == "p2p_hello"]
    assert len(hellos) == 300
    assert {z.hello_ip for z in hellos} == {"10.78.14.178", "192.168.1.226", "192.168.1.128"}
    assert all(z.hello_uuid is not None and len(z.hello_uuid) == 36 for z in hellos)
    assert sum(z.media_kind == "probe" for z in parsed) == 63


def test_gen_b_audio_video_screen_and_direction() -> None:
    head_up = b"\x05\x00\x01\x00\x4f\x83\x78\x00"
    head_down = b"\x05\x00\x02\x00\x4f\x83\x78\x04"
    audio = parse_zoom(head_up + _inner(0x0F, 19) + _rtp(112), server_side=True)
    assert audio is not None and (audio.generation, audio.media_kind) == ("B", "audio")
    assert (audio.embedded_offset, audio.rtp.payload_type) == (27, 112)
    assert (audio.conn_id, audio.direction, audio.sfu_seq) == (0x004F8378, "up", 1)
    long_video = _inner(0x10, 20) + b"\x02\x00\x05\x01" + _rtp()
    z = parse_zoom(head_down + long_video, server_side=True)
    assert (z.media_kind, z.embedded_offset, z.direction) == ("video", 32, "down")
    short_video = _inner(0x10, 20) + _rtp()  # inner+20 is the RTP first byte 0x90
    assert parse_zoom(head_down + short_video, server_side=True).embedded_offset == 28
    screen = bytearray(_inner(0x0D, 27))
    screen[7] = 0x1E
    z = parse_zoom(head_up + bytes(screen) + _rtp(), server_side=True)
    assert (z.media_kind, z.embedded_offset) == ("screenshare", 35)
    screen[7] = 0x00  # another subtype: control, not media
    assert parse_zoom(head_up + bytes(screen) + _rtp(), server_side=True).media_kind == "control"


def test_gen_a_falls_back_when_gen_b_rtp_fails() -> None:
    gen_a = b"\x05" + _inner(0x10, 20) + _rtp()  # the 2020 short video form at UDP+21
    z = parse_zoom(gen_a, server_side=True)
    assert (z.generation, z.media_kind, z.embedded_offset) == ("A", "video", 21)
    assert z.sfu_seq is None and z.direction is None


def test_p2p_requires_self_checking_packets() -> None:
    audio = _inner(0x0F, 19) + _rtp(113)
    assert parse_zoom(audio, server_side=False).media_kind == "audio"
    assert parse_zoom(audio[:25], server_side=False) is None  # RTP cut short
    assert parse_zoom(b"\x0f\x02\x00\xfb" + audio[4:], server_side=False) is None  # no marker
    assert parse_zoom(b"\x05" + audio, server_side=False) is None  # SFU framing needs server_side
    assert parse_zoom(b"\x07" + bytes(30), server_side=True) is None


def test_p2p_hello_hostile_strings() -> None:
    body = b"\x1f\x02\x01\x00" + bytes(20)
    good = body + struct.pack(">I", 8) + b"10.0.0.9" + struct.pack(">I", 36)
    good += b"af065d88-aa9b-4a81-80a4-b85cd341b921" + bytes(4)
    assert parse_p2p_hello(good) == ("10.0.0.9", "af065d88-aa9b-4a81-80a4-b85cd341b921")
    evil = body + struct.pack(">I", 8) + b"$(rm -f)" + struct.pack(">I", 4) + b"\xff\xfe\x00\x01" + bytes(4)
    assert parse_p2p_hello(evil) == (None, None)  # chain valid, strings refused
    assert parse_p2p_hello(good + b"\x00") is None
    assert parse_p2p_hello(good[:-1]) is None


def test_truncation_at_every_offset_never_raises() -> None:
    samples = [p for _, p in _udp("zoom_p2p.pcapng") if p[:1] in (b"\x10", b"\x1f", b"\x22")][:3]
    samples += [b"\x05" + p for p in samples]
    for blob in samples:
        for cut in range(len(blob) + 1):
            for side in (True, False):
                z = parse_zoom(blob[:cut], server_side=side)
                assert z is None or z.embedded_offset is None or z.embedded_offset < cut


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.sampled_from([b"", b"\x05", b"\x05\x00\x01\x00\x00\x00\x01\x00"]))
def test_random_bytes_never_raise(data: bytes, prefix: bytes) -> None:
    for side in (True, False):
        parse_zoom(prefix + data, server_side=side)
        parse_zoom(prefix + _inner(data[0] if data else 0x0F, 19) + data, server_side=side)
    parse_p2p_hello(data)
