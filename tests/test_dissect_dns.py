"""DNS over UDP/TCP and the IP -> names map (CNAME chains), on real captures and crafted messages."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.dissect.dns import (
    TYPE_A,
    TYPE_AAAA,
    TYPE_CNAME,
    IpName,
    answers_to_ip_names,
    parse_dns,
    parse_dns_tcp,
)
from tests.conftest import real_capture


def _payloads(capture: str, port: int = 53, tcp: bool = False) -> list[tuple[int, bytes]]:
    from scapy.layers.inet import TCP, UDP
    from scapy.utils import PcapReader

    layer = TCP if tcp else UDP
    out: list[tuple[int, bytes]] = []
    with PcapReader(str(real_capture(capture))) as reader:
        for frame, pkt in enumerate(reader, 1):
            if layer in pkt and port in (pkt[layer].sport, pkt[layer].dport):
                payload = bytes(pkt[layer].payload)
                if payload:
                    out.append((frame, payload))
    return out


def test_zoom_answers_map_ips_to_zoom_names():
    msgs = [parse_dns(p) for _, p in _payloads("zoom.pcap")]
    assert all(m is not None for m in msgs)
    responses = [m for m in msgs if m.qr]
    rows = answers_to_ip_names(responses)
    assert IpName("109.94.160.99", "zoomfrn99mmr.zoom.us", ("zoomfrn99mmr.zoom.us",)) in rows
    assert IpName("213.244.140.84", "zoomfr84zc.zoom.us", ("zoomfr84zc.zoom.us",)) in rows
    # Queries carry no answers and must not contribute rows.
    assert answers_to_ip_names([m for m in msgs if not m.qr]) == []
    a_records = [r for m in responses for r in m.answers if r.rtype == TYPE_A]
    assert a_records and all(r.ttl >= 0 and r.value for r in a_records)


def test_teams_cname_chain_maps_ip_to_queried_name():
    frame_262 = dict(_payloads("teams.pcap"))[262]
    msg = parse_dns(frame_262)
    assert msg is not None and msg.qr and msg.rcode == 0
    assert msg.questions[0].name == "eu-prod.asyncgw.teams.microsoft.com"
    assert any(r.rtype == TYPE_CNAME for r in msg.answers)
    rows = [r for r in answers_to_ip_names([msg]) if r.ip == "52.114.75.70"]
    chain = (
        "eu-prod.asyncgw.teams.microsoft.com",
        "asm-api-prod-eu-teams.trafficmanager.net",
        "weu1-api-teams.cloudapp.net",
    )
    assert {r.name for r in rows} == set(chain)
    assert all(r.cname_chain == chain for r in rows)


def test_dns_over_tcp_from_dns_fragmented():
    frames = dict(_payloads("dns_fragmented.pcap", tcp=True))
    query = parse_dns(frames[48], tcp=True)
    answer = parse_dns(frames[50], tcp=True)
    assert query is not None and not query.qr
    assert answer is not None and answer.qr and answer.id == query.id
    assert len(answer.answers) == 4 and answer.complete
    # Two framed messages in one stream both come out.
    both = parse_dns_tcp(frames[48] + frames[50])
    assert [m.qr for m in both] == [False, True]
    # Without tcp=True the length prefix is read as the DNS id: a different message.
    assert parse_dns(frames[50]) is None or parse_dns(frames[50]).id != answer.id


def _name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"


def _rr(owner: bytes, rtype: int, ttl: int, rdata: bytes) -> bytes:
    return owner + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


def _response(qname: str, answers: list[bytes], flags: int = 0x8180) -> bytes:
    header = struct.pack("!HHHHHH", 0x1234, flags, 1, len(answers), 0, 0)
    return header + _name(qname) + struct.pack("!HH", TYPE_A, 1) + b"".join(answers)


def test_compressed_cname_chain_and_ipv6():
    # Owner of the first answer points back to the question name at offset 12 (0xc00c).
    msg_bytes = _response(
        "Meet.Example.com",
        [
            _rr(b"\xc0\x0c", TYPE_CNAME, 60, _name("edge.cdn.net")),
            _rr(_name("edge.cdn.net"), TYPE_AAAA, 30, bytes.fromhex("20010db8000000000000000000000001")),
        ],
    )
    msg = parse_dns(msg_bytes)
    assert msg is not None and msg.complete
    assert msg.answers[0].name == "meet.example.com"  # names compare case-insensitively
    assert msg.answers[1].value == "2001:db8::1" and msg.answers[1].ttl == 30
    rows = answers_to_ip_names([msg])
    assert {(r.ip, r.name) for r in rows} == {
        ("2001:db8::1", "meet.example.com"),
        ("2001:db8::1", "edge.cdn.net"),
    }


def test_errors_and_cname_loops_do_not_map():
    nx = _response("a.example", [_rr(_name("a.example"), TYPE_A, 5, b"\x01\x02\x03\x04")], flags=0x8183)
    assert parse_dns(nx).rcode == 3
    assert answers_to_ip_names([parse_dns(nx)]) == []
    loop = _response(
        "x.test",
        [
            _rr(_name("x.test"), TYPE_CNAME, 5, _name("y.test")),
            _rr(_name("y.test"), TYPE_CNAME, 5, _name("x.test")),
            _rr(_name("y.test"), TYPE_A, 5, b"\x0a\x00\x00\x01"),
        ],
    )
    rows = answers_to_ip_names([parse_dns(loop)])
    assert {r.name for r in rows} == {"x.test", "y.test"}


def test_compression_pointer_loop_is_rejected_quickly():
    header = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0)
    self_pointer = header + b"\xc0\x0c" + b"\x00\x01\x00\x01"
    assert parse_dns(self_pointer) is None
    ping_pong = header + b"\xc0\x0e\xc0\x0c" + b"\x00\x01\x00\x01"
    assert parse_dns(ping_pong) is None


def test_truncation_keeps_partial_answers():
    frames = dict(_payloads("teams.pcap"))
    full = frames[262]
    n_full = len(parse_dns(full).answers)
    seen_partial = False
    for cut in range(len(full)):
        msg = parse_dns(full[:cut])
        if msg is not None and not msg.complete:
            assert len(msg.answers) < n_full
            seen_partial = True
    assert seen_partial


@pytest.mark.parametrize("tcp", [False, True])
@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400))
def test_random_bytes_never_raise(data, tcp):
    msg = parse_dns(data, tcp=tcp)
    parse_dns_tcp(data)
    if msg is not None:
        answers_to_ip_names([msg])
    # Valid header + junk: the body parsers get exercised too.
    framed = struct.pack("!HHHHHH", 7, 0x8180, 1, 3, 0, 0) + data
    got = parse_dns(framed)
    if got is not None:
        answers_to_ip_names([got])
