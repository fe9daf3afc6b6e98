"""STUN/TURN dissector: real packets from the shared captures plus synthetic and hostile input."""

from __future__ import annotations

import ipaddress
import struct
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.dissect.stun import (
    MAGIC_COOKIE,
    decode_type,
    parse_channel_data,
    parse_stun,
    split_stun_tcp,
)
from tests.conftest import real_capture


@cache
def _packets(name: str) -> tuple[tuple[str, int, str, int, int, bytes], ...]:
    """(src, sport, dst, dport, proto, payload) of every UDP/TCP packet, read with scapy."""
    scapy = pytest.importorskip("scapy.all")
    out = []
    for pkt in scapy.PcapReader(str(real_capture(name))):
        l4 = pkt.getlayer(scapy.UDP) or pkt.getlayer(scapy.TCP)
        ip = pkt.getlayer(scapy.IP) or pkt.getlayer(scapy.IPv6)
        if l4 is None or ip is None:
            continue
        proto = 17 if isinstance(l4, scapy.UDP) else 6
        out.append((ip.src, l4.sport, ip.dst, l4.dport, proto, bytes(l4.payload)))
    return tuple(out)


def _between(name: str, a: tuple[str, int], b: tuple[str, int], proto: int = 17) -> list[tuple[bool, bytes]]:
    """Payloads between two endpoints, with True when sent by `a`."""
    out = []
    for src, sport, dst, dport, p, payload in _packets(name):
        if p != proto:
            continue
        if (src, sport) == a and (dst, dport) == b:
            out.append((True, payload))
        elif (src, sport) == b and (dst, dport) == a:
            out.append((False, payload))
    return out


def _attr(atype: int, value: bytes) -> bytes:
    return struct.pack(">HH", atype, len(value)) + value + b"\x00" * (-len(value) % 4)


def _message(msg_type: int, attrs: bytes, txid: bytes = bytes(range(12))) -> bytes:
    return struct.pack(">HHI", msg_type, len(attrs), MAGIC_COOKIE) + txid + attrs


def test_decode_type_methods_and_classes() -> None:
    assert decode_type(0x0001) == (0x001, "request")
    assert decode_type(0x0101) == (0x001, "success")
    assert decode_type(0x0111) == (0x001, "error")
    assert decode_type(0x0011) == (0x001, "indication")
    assert decode_type(0x0003) == (0x003, "request")  # TURN Allocate
    assert decode_type(0x0113) == (0x003, "error")
    assert decode_type(0x0016) == (0x006, "indication")  # Send
    assert decode_type(0x0017) == (0x007, "indication")  # Data
    assert decode_type(0x0800) == (0x200, "request")  # WhatsApp's 0x08xx types


def test_zoom_classic_stun_variant() -> None:
    flow = _between("zoom.pcap", ("192.168.1.117", 23903), ("162.255.37.14", 3478))
    requests = [parse_stun(p) for up, p in flow if up]
    responses = [parse_stun(p) for up, p in flow if not up]
    assert requests and responses
    assert all(m is not None and m.classic and m.msg_type == 0x0001 for m in requests)
    assert all(m.attr_types == (0x0101,) and len(m.transaction_id) == 16 for m in requests)
    assert all(m is not None and m.classic and m.msg_type == 0x0002 for m in responses)
    assert all(m.attr_types == (0x0103,) and m.is_zoom_variant for m in responses)
    # The reflexive address travels un-XORed in 0x0103: a public IPv4 address.
    mapped = responses[0].mapped
    assert mapped is not None and mapped.family == 1
    assert ipaddress.ip_address(mapped.ip).is_global
    # Request and response share the 16-byte transaction ID.
    assert {m.transaction_id for m in requests} >= {m.transaction_id for m in responses}


def test_turn_channel_data_messenger() -> None:
    flow = _between("stun.pcap", ("192.168.12.169", 38123), ("31.13.86.54", 40003))
    messages = [parse_stun(p) for _, p in flow]
    realms = {m.realm for m in messages if m is not None}
    assert "turner.facebook" in realms
    bound = {m.channel for m in messages if m is not None and m.channel is not None}
    assert bound == {0x4003}
    channel = [parse_channel_data(p) for _, p in flow if parse_stun(p) is None]
    channel = [c for c in channel if c is not None]
    assert len(channel) == 18
    assert {c[0] for c in channel} == {0x4003}
    assert all(len(c[1]) > 0 for c in channel)


def test_telegram_realm_on_relay_port() -> None:
    realms = set()
    for _src, sport, _dst, dport, proto, payload in _packets("telegram_videocall.pcapng"):
        if proto == 17 and 1400 in (sport, dport) and (m := parse_stun(payload)) is not None:
            realms.add(m.realm)
    assert "telegram.org" in realms


def test_turn_over_tcp_google() -> None:
    flow = _between("stun_dtls_rtp.pcapng", ("192.168.12.182", 50221), ("142.250.82.249", 3478), proto=6)
    messages = [parse_stun(m) for _, p in flow for m in split_stun_tcp(p)]
    assert messages and all(m is not None for m in messages)
    assert {m.realm for m in messages if m.realm} == {"turn.l.google.com"}
    allocated = [m for m in messages if m.method == 0x003 and m.msg_class == "success"]
    assert len(allocated) == 1
    assert allocated[0].xor_relayed is not None and allocated[0].xor_mapped is not None
    assert allocated[0].xor_mapped.ip == "93.35.170.27"
    # Send/Data indications carry the relayed datagram in DATA, next to XOR-PEER-ADDRESS.
    data = [m for m in messages if m.method in (0x006, 0x007)]
    assert len(data) == 31 and all(m.data and m.xor_peer for m in data)


def test_rfc4571_framing_ice_tcp() -> None:
    flow = _between("stun.pcap", ("10.77.110.51", 41588), ("10.206.50.239", 42000), proto=6)
    messages = [parse_stun(m) for _, p in flow for m in split_stun_tcp(p)]
    assert len(messages) == 12 and all(m is not None for m in messages)
    assert any(0x8054 in m.attr_types and 0x8070 in m.attr_types for m in messages)  # Microsoft
    mapped = {m.xor_mapped.ip for m in messages if m.xor_mapped}
    assert mapped == {"10.77.110.51", "10.206.50.239"}


def test_ms_turn_header_and_whatsapp_types() -> None:
    ms = [parse_stun(p) for *_, proto, p in _packets("teams.pcap") if proto == 17 and p[:2] == b"\xff\x10"]
    assert len(ms) == 2 and all(m is not None and m.ms_turn for m in ms)
    assert all(0x8070 in m.attr_types and m.integrity and m.fingerprint for m in ms)
    wa = [parse_stun(p) for *_, proto, p in _packets("whatsapp_voice_and_message.pcap") if p[:1] == b"\x08"]
    assert len(wa) == 8 and all(m is not None and m.msg_type == 0x0800 for m in wa)
    assert all(0x4000 in m.attr_types for m in wa)


def test_xor_addresses_ipv4_and_ipv6() -> None:
    txid = bytes.fromhex("b7e7a701bc34d686fa87dfae")
    v6 = ipaddress.IPv6Address("2001:db8:1234:5678:11:2233:4455:6677")
    key = MAGIC_COOKIE.to_bytes(4, "big") + txid
    xv6 = bytes(a ^ b for a, b in zip(v6.packed, key, strict=True))
    xv4 = bytes(a ^ b for a, b in zip(ipaddress.IPv4Address("192.0.2.1").packed, key, strict=False))
    attrs = (
        _attr(0x0020, struct.pack(">BBH", 0, 2, 32853 ^ 0x2112) + xv6)
        + _attr(0x0016, struct.pack(">BBH", 0, 1, 49152 ^ 0x2112) + xv4)
        + _attr(0x0001, struct.pack(">BBH", 0, 1, 3478) + bytes([10, 0, 0, 1]))
        + _attr(0x8022, b"test vector")
        + _attr(0x0006, b"evtj:h6vY")
        + _attr(0x0015, b"nonce")
        + _attr(0x0008, bytes(20))
        + _attr(0x8028, bytes(4))
    )
    m = parse_stun(_message(0x0101, attrs, txid))
    assert m is not None and not m.classic and not m.truncated
    assert m.xor_mapped is not None and m.xor_mapped.ip == str(v6) and m.xor_mapped.port == 32853
    assert m.xor_relayed is not None and m.xor_relayed.ip == "192.0.2.1" and m.xor_relayed.port == 49152
    assert m.mapped is not None and (m.mapped.ip, m.mapped.port) == ("10.0.0.1", 3478)
    assert (m.software, m.username) == ("test vector", "evtj:h6vY")
    assert m.nonce_present and m.integrity and m.fingerprint


def test_rejects_length_mismatch_and_non_stun() -> None:
    good = _message(0x0001, _attr(0x0006, b"abcd"))
    assert parse_stun(good) is not None
    assert parse_stun(good + b"\x00") is None  # length must span the datagram
    assert parse_stun(b"\x80" + good[1:]) is None  # top two bits set: RTP range
    classic = b"\x00\x01\x00\x01" + bytes(17)  # no cookie and unaligned length
    assert parse_stun(classic) is None
    assert parse_channel_data(b"\x40\x01\x00\x04abcd") == (0x4001, b"abcd")
    assert parse_channel_data(b"\x40\x01\x00\x04abcd\x00\x00\x00\x00") is None
    assert parse_channel_data(b"\x50\x01\x00\x04abcd") is None


def test_split_walks_coalesced_messages_and_drops_tail() -> None:
    a = _message(0x0001, _attr(0x0006, b"abc"))
    b = _message(0x0101, b"")
    chan = b"\x40\x00\x00\x03xyz\x00"
    stream = a + chan + b + b[:7]
    parts = split_stun_tcp(stream)
    assert parts == [a, chan[:7], b]
    framed = struct.pack(">H", len(a)) + a + struct.pack(">H", len(b)) + b
    assert split_stun_tcp(framed) == [a, b]


def test_truncation_at_every_offset_never_raises() -> None:
    flow = _between("stun.pcap", ("10.77.110.51", 41588), ("10.206.50.239", 42000), proto=6)
    whole = flow[0][1]
    for cut in range(len(whole) + 1):
        part = whole[:cut]
        split_stun_tcp(part)
        parse_stun(part)
        parse_channel_data(part)
        if cut < len(whole):
            assert parse_stun(part[2:]) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise(data: bytes) -> None:
    for blob in (data, _message(0x0101, data[: len(data) // 4 * 4]), b"\xff\x10" + bytes(10) + data):
        m = parse_stun(blob)
        assert m is None or m.length + 20 <= len(blob)
        parse_channel_data(blob)
        split_stun_tcp(blob)


def _v4(ip: str, port: int, xor: bool) -> bytes:
    raw = ipaddress.IPv4Address(ip).packed
    if xor:
        raw = bytes(a ^ b for a, b in zip(raw, MAGIC_COOKIE.to_bytes(4, "big"), strict=True))
        port ^= MAGIC_COOKIE >> 16
    return struct.pack(">BBH", 0, 1, port) + raw


def test_ms_turn_allocate_answer_mapped_address_is_the_relay() -> None:
    # [MS-TURN] 3.2.5.1: in an Allocate response MAPPED-ADDRESS is the allocated (relayed) address
    # and XOR-MAPPED-ADDRESS (0x8020) the client's reflexive one; MS-Version 0x8008 marks the dialect.
    attrs = (_attr(0x8008, bytes([0, 0, 0, 6])) + _attr(0x0001, _v4("52.114.250.141", 3480, False))
             + _attr(0x8020, _v4("80.181.206.72", 57543, True)))
    m = parse_stun(_message(0x0103, attrs))
    assert m is not None and m.method == 0x003 and m.msg_class == "success"
    assert m.mapped is None
    assert m.ms_relayed is not None and (m.ms_relayed.ip, m.ms_relayed.port) == ("52.114.250.141", 3480)
    assert m.xor_mapped is not None and (m.xor_mapped.ip, m.xor_mapped.port) == ("80.181.206.72", 57543)
    # The same attributes behind the 12-byte MS-TURN multiplexing header (0xFF10).
    framed = parse_stun(b"\xff\x10" + bytes(10) + _message(0x0103, _attr(0x0001, _v4("52.114.250.141", 3480, False))))
    assert framed is not None and framed.ms_turn and framed.mapped is None and framed.ms_relayed is not None


def test_plain_binding_answer_keeps_mapped_address() -> None:
    # Outside an MS-TURN Allocate answer, MAPPED-ADDRESS is the reflexive address (RFC 5389 15.1).
    m = parse_stun(_message(0x0101, _attr(0x0001, _v4("80.181.206.72", 40000, False))))
    assert m is not None and m.mapped is not None and m.mapped.ip == "80.181.206.72" and m.ms_relayed is None
    # A standard TURN Allocate answer: XOR-RELAYED is the relay, XOR-MAPPED the client.
    attrs = _attr(0x0016, _v4("52.114.250.141", 3480, True)) + _attr(0x0020, _v4("80.181.206.72", 1, True))
    t = parse_stun(_message(0x0103, attrs))
    assert t is not None and t.xor_relayed.ip == "52.114.250.141" and t.xor_mapped.ip == "80.181.206.72"
