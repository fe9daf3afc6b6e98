"""DTLS dissector: DTLS-SRTP handshakes from the shared captures, synthetic flights, hostile input."""

from __future__ import annotations

import datetime
import struct
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.dissect.dtls import certificate_names, parse_dtls, parse_dtls_flight
from tests.conftest import real_capture


@cache
def _udp(name: str) -> tuple[tuple[tuple[str, int, str, int], bytes], ...]:
    scapy = pytest.importorskip("scapy.all")
    out = []
    for pkt in scapy.PcapReader(str(real_capture(name))):
        udp = pkt.getlayer(scapy.UDP)
        ip = pkt.getlayer(scapy.IP) or pkt.getlayer(scapy.IPv6)
        if udp is not None and ip is not None:
            out.append(((ip.src, udp.sport, ip.dst, udp.dport), bytes(udp.payload)))
    return tuple(out)


def _record(ctype: int, body: bytes, version: int = 0xFEFD, epoch: int = 0, seq: int = 0) -> bytes:
    return struct.pack(">BHHHIH", ctype, version, epoch, seq >> 32, seq & 0xFFFFFFFF, len(body)) + body


def _hs(msg_type: int, msg: bytes, seq: int = 0, frag: tuple[int, int] | None = None) -> bytes:
    off, n = frag if frag else (0, len(msg))
    return (
        bytes([msg_type])
        + len(msg).to_bytes(3, "big")
        + struct.pack(">H", seq)
        + off.to_bytes(3, "big")
        + n.to_bytes(3, "big")
        + msg[off : off + n]
    )


def _ext(etype: int, value: bytes) -> bytes:
    return struct.pack(">HH", etype, len(value)) + value


def _client_hello() -> bytes:
    alpn = b"".join(bytes([len(n)]) + n for n in (b"webrtc", b"c-webrtc"))
    exts = (
        _ext(0, struct.pack(">HBH", 3 + 13, 0, 13) + b"media.example")
        + _ext(14, struct.pack(">H", 4) + struct.pack(">HH", 0x0007, 0x0001) + b"\x00")
        + _ext(16, struct.pack(">H", len(alpn)) + alpn)
    )
    return (
        b"\xfe\xfd"
        + bytes(32)
        + b"\x00"
        + b"\x00"
        + struct.pack(">H", 2)
        + b"\xc0\x2b"
        + b"\x01\x00"
        + struct.pack(">H", len(exts))
        + exts
    )


def _server_hello() -> bytes:
    exts = _ext(14, struct.pack(">H", 2) + struct.pack(">H", 0x0007) + b"\x00")
    return b"\xfe\xfd" + bytes(32) + b"\x00" + b"\xc0\x2b" + b"\x00" + struct.pack(">H", len(exts)) + exts


def _self_signed(cn: str) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def test_dtls_srtp_google_handshake() -> None:
    flow = [p for k, p in _udp("stun_dtls_rtp.pcapng") if {k[1], k[3]} == {37967, 19305}]
    facts = [parse_dtls(p) for p in flow]
    hello = next(f for f in facts if f is not None and f.client_hello)
    assert hello.srtp_profiles_offered == (0x0001, 0x0008, 0x0007)
    assert hello.versions == (0xFEFF,)  # ClientHello record version is DTLS 1.0
    server = next(f for f in facts if f is not None and f.server_hello)
    assert server.srtp_profile_chosen == 0x0008  # AEAD_AES_256_GCM
    assert server.certificate_cn == "hangouts" and server.versions == (0xFEFD,)
    assert set(server.handshake_types) == {2, 11, 12, 13, 14}
    flight = parse_dtls_flight(flow)
    assert flight is not None and flight.use_srtp
    # 1 + 5 + 5 + 3 (client flight and its retransmission: 5 + 3) handshake/CCS records.
    assert flight.handshake_records == 22 and flight.appdata_records == 17
    # SRTP after the handshake carries no DTLS header, so it is not a DTLS datagram.
    assert sum(f is None for f in facts) > 0


def test_dtls13_unified_header_records() -> None:
    facts = [parse_dtls(p) for _, p in _udp("dtls.pcap")]
    facts = [f for f in facts if f is not None]
    assert len(facts) == 20
    unified = [f for f in facts if f.unified_records]
    assert len(unified) == 14 and all(f.appdata_records == f.unified_records for f in unified)
    assert sum(f.client_hello for f in facts) == 4


def test_synthetic_flight_with_fragmented_certificate() -> None:
    der = _self_signed("media.example.net")
    cert_msg = (len(der) + 3).to_bytes(3, "big") + len(der).to_bytes(3, "big") + der
    half = len(cert_msg) // 2
    dg1 = _record(22, _hs(1, _client_hello()))
    dg2 = _record(22, _hs(2, _server_hello(), seq=1)) + _record(
        22, _hs(11, cert_msg, seq=2, frag=(0, half)), seq=1
    )
    dg3 = (
        _record(22, _hs(11, cert_msg, seq=2, frag=(half, len(cert_msg) - half)), seq=2)
        + _record(20, b"\x01", seq=3)
        + _record(22, bytes(48), epoch=1)
        + _record(23, bytes(40), epoch=1, seq=1)
    )
    first = parse_dtls(dg1)
    assert first is not None and first.client_hello and first.sni == "media.example"
    assert first.alpn_offered == ("webrtc", "c-webrtc") and first.srtp_profiles_offered == (7, 1)
    assert parse_dtls(dg2).certificate_cn is None  # only half of the certificate is in dg2
    flight = parse_dtls_flight([dg1, dg2, dg3])
    assert flight is not None
    assert (
        flight.certificate_cn == "media.example.net" and flight.certificate_issuer_cn == "media.example.net"
    )
    assert flight.srtp_profile_chosen == 7 and flight.cipher_suite == 0xC02B
    assert flight.handshake_records == 6 and flight.appdata_records == 1
    hvr = parse_dtls(_record(22, _hs(3, b"\xfe\xff\x04abcd")))
    assert hvr is not None and hvr.hello_verify_request


def test_rejects_non_dtls_and_short_first_record() -> None:
    assert parse_dtls(b"") is None
    assert parse_dtls(b"\x16\x03\x03\x00\x05hello") is None  # TLS, not DTLS
    assert parse_dtls(_record(23, bytes(10))[:-1]) is None  # first record must fit
    zoom_probe = b"\x15\x01\x00\x00\x00\x00\x02\x03\x00\x33\x01\x0d\x04" + bytes(1015)
    assert parse_dtls(zoom_probe) is None
    assert parse_dtls(b"\x2c" + bytes(40)) is None  # unified header whose length does not cover it
    assert certificate_names(b"\x30\x03\x02\x01\x00") == (None, None)


def test_truncation_at_every_offset_never_raises() -> None:
    flow = [p for k, p in _udp("stun_dtls_rtp.pcapng") if {k[1], k[3]} == {37967, 19305}]
    server = next(p for p in flow if (f := parse_dtls(p)) is not None and f.server_hello)
    for cut in range(0, len(server) + 1, 3):
        facts = parse_dtls(server[:cut])
        assert facts is None or facts.records[0].content_type == 22
    # Flip bytes inside the certificate: still no exception, and the CN may or may not survive.
    for i in range(100, len(server), 17):
        broken = server[:i] + bytes([server[i] ^ 0xFF]) + server[i + 1 :]
        parse_dtls(broken)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(data: bytes) -> None:
    for blob in (data, _record(22, data), _record(22, _hs(11, data)), _record(22, _hs(1, data))):
        facts = parse_dtls(blob)
        if blob is not data:
            assert facts is not None and facts.records[0].content_type == 22
    parse_dtls_flight([data, data[::-1]])
