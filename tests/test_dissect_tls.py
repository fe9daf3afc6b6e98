"""TLS ClientHello/ServerHello/certificate dissection and TCP stream reassembly, on real captures."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.dissect.tcpstream import reassemble
from analyzer.dissect.tls import (
    ClientHello,
    parse_certificate_der,
    parse_client_hello,
    parse_client_hello_message,
    parse_server_handshake,
)
from tests.conftest import real_capture


def _segments(capture: str, src: tuple[str, int], dst: tuple[str, int], limit: int = 60):
    """(seq, payload) of the data segments from src to dst, in capture order."""
    from scapy.layers.inet import IP, TCP
    from scapy.utils import PcapReader

    out: list[tuple[int, bytes]] = []
    with PcapReader(str(real_capture(capture))) as reader:
        for pkt in reader:
            if IP not in pkt or TCP not in pkt:
                continue
            ip, tcp = pkt[IP], pkt[TCP]
            if (ip.src, tcp.sport, ip.dst, tcp.dport) != (*src, *dst):
                continue
            payload = bytes(tcp.payload)
            if payload:
                out.append((tcp.seq, payload))
                if len(out) >= limit:
                    break
    assert out, f"no segments {src} -> {dst} in {capture}"
    return out


ZOOM_CLIENT = ("192.168.1.117", 54868)
ZOOM_ZC = ("213.19.144.104", 443)


@pytest.fixture(scope="module")
def zoom_zc_client() -> list[tuple[int, bytes]]:
    return _segments("zoom.pcap", ZOOM_CLIENT, ZOOM_ZC)


@pytest.fixture(scope="module")
def zoom_zc_server() -> list[tuple[int, bytes]]:
    return _segments("zoom.pcap", ZOOM_ZC, ZOOM_CLIENT)


def test_zoom_zone_controller_client_hello(zoom_zc_client):
    hello = parse_client_hello(reassemble(zoom_zc_client))
    assert isinstance(hello, ClientHello)
    assert hello.sni == "zoomam104zc.zoom.us"
    # nDPI calls the zone-controller channel "TLS not carrying HTTPS": no ALPN at all.
    assert hello.alpn == ()
    assert hello.legacy_version == 0x0303
    assert hello.cipher_count > 0
    assert 0 in hello.extension_types


def test_zoom_mmr_client_hello():
    segs = _segments("zoom.pcap", ("192.168.1.117", 54871), ("109.94.160.99", 443), limit=5)
    hello = parse_client_hello(reassemble(segs))
    assert hello is not None and hello.sni == "zoomfrn99mmr.zoom.us"


def test_webex_client_hello():
    segs = _segments("webex.pcap", ("10.8.0.1", 41346), ("64.68.105.103", 443), limit=5)
    hello = parse_client_hello(reassemble(segs))
    assert hello is not None and hello.sni == "radcom.webex.com"


def test_zoom_certificate_needs_reassembly(zoom_zc_server):
    stream = reassemble(zoom_zc_server)
    facts = parse_server_handshake(stream)
    assert facts is not None
    assert facts.version == 0x0303 and facts.selected_version is None
    assert facts.alpn is None and not facts.hello_retry
    cert = facts.certificate
    assert cert is not None
    assert cert.subject_cn == "*.zoom.us"
    assert cert.issuer_cn == "Go Daddy Secure Certificate Authority - G2"
    assert set(cert.sans) == {"*.zoom.us", "zoom.us"}
    assert not cert.self_signed
    # The certificate chain does not fit in the first segment: only reassembly exposes it.
    first = parse_server_handshake(zoom_zc_server[0][1])
    assert first is not None and first.certificate is None


def test_tls13_server_hello_selected_version():
    # signal.pcap: Apple's server answers with TLS 1.3 (supported_versions), certificate encrypted.
    segs = _segments("signal.pcap", ("23.57.24.16", 443), ("192.168.2.17", 57018), limit=5)
    facts = parse_server_handshake(reassemble(segs))
    assert facts is not None
    assert facts.legacy_version == 0x0303 and facts.selected_version == 0x0304
    assert facts.version == 0x0304
    assert facts.certificate is None


def test_reassembly_survives_reordering_duplicates_and_wrap(zoom_zc_server):
    expected = reassemble(zoom_zc_server)
    rng = random.Random(7)
    base = zoom_zc_server[0][0]
    shift = (2**32 - 100) - base  # move the stream so that it wraps past 2**32 mid-way
    moved = [((seq + shift) % 2**32, data) for seq, data in zoom_zc_server]
    noisy = [*moved, moved[1], (moved[2][0] + 10, moved[2][1][10:30])]
    rng.shuffle(noisy)
    # The first element decides the reference point; any segment of the stream must do.
    assert reassemble(noisy) == expected
    assert parse_server_handshake(reassemble(noisy)).certificate.subject_cn == "*.zoom.us"


def test_reassemble_units():
    assert reassemble([]) == b""
    assert reassemble([(10, b"abc"), (13, b"def")]) == b"abcdef"
    assert reassemble([(13, b"def"), (10, b"abc")]) == b"abcdef"
    assert reassemble([(10, b"abc"), (11, b"bcdXY")]) == b"abcdXY"  # overlap trimmed
    assert reassemble([(10, b"abc"), (20, b"zzz")]) == b"abc"  # gap stops
    assert reassemble([(2**32 - 2, b"ab"), (0, b"cd")]) == b"abcd"  # wrap
    assert reassemble([(0, b"abcdef")], limit=4) == b"abcd"
    assert reassemble([(0, b"")]) == b""
    assert reassemble([("x", b"a"), (1, "str"), (5,)]) == b""  # type: ignore[list-item]


def test_bare_handshake_message_matches_record_parse(zoom_zc_client):
    stream = reassemble(zoom_zc_client)
    record_body_len = int.from_bytes(stream[3:5], "big")
    bare = stream[5 : 5 + record_body_len]
    assert parse_client_hello_message(bare) == parse_client_hello(stream)
    assert parse_client_hello_message(stream) is None  # a record header is not a handshake header


def test_every_truncation_is_safe(zoom_zc_client, zoom_zc_server):
    hello = reassemble(zoom_zc_client)
    end = 5 + int.from_bytes(hello[3:5], "big")
    for cut in range(end):
        assert parse_client_hello(hello[:cut]) is None
    assert parse_client_hello(hello[:end]) is not None
    server = reassemble(zoom_zc_server)[:6000]
    for cut in range(0, len(server), 7):
        parse_server_handshake(server[:cut])


def test_corrupt_certificate_gives_none_not_exception(zoom_zc_server):
    stream = bytearray(reassemble(zoom_zc_server))
    pos = stream.find(bytes.fromhex("3082"), 100)  # first DER SEQUENCE: the leaf certificate
    assert pos > 0
    stream[pos + 4 : pos + 40] = b"\xff" * 36
    facts = parse_server_handshake(bytes(stream))
    assert facts is not None and facts.certificate is None
    assert parse_certificate_der(b"\x30\x03\x02\x01\x01") is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data):
    parse_client_hello(data)
    parse_client_hello_message(data)
    parse_server_handshake(data)
    parse_certificate_der(data)
    # With a plausible record/handshake header the parsers go deeper into the junk.
    framed = b"\x16\x03\x01" + len(data).to_bytes(2, "big") + data
    parse_client_hello(framed)
    parse_server_handshake(framed)


def test_client_hello_split_into_many_segments(zoom_zc_client):
    stream = reassemble(zoom_zc_client)
    seq0 = 2**32 - 150  # wraps inside the ClientHello
    chunks = [((seq0 + i) % 2**32, stream[i : i + 37]) for i in range(0, len(stream), 37)]
    assert parse_client_hello(chunks[0][1]) is None  # one segment is not enough
    rng = random.Random(3)
    shuffled = chunks + chunks[2:5]  # retransmissions
    rng.shuffle(shuffled)
    hello = parse_client_hello(reassemble([chunks[0], *shuffled]))
    assert hello is not None and hello.sni == "zoomam104zc.zoom.us"
    # A lost segment in the middle leaves an incomplete, unparseable prefix.
    assert parse_client_hello(reassemble(chunks[:3] + chunks[4:])) is None
