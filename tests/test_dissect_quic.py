"""QUIC Initial decryption and ClientHello recovery (v1, v2, draft-29), on real captures and on
Initials built here (split and reordered ClientHellos, coalesced packets)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.dissect.quic import (
    V1,
    V2,
    client_hello_from_initials,
    crypto_stream,
    initial_keys,
    initial_salt,
    parse_initial,
)
from tests.conftest import real_capture


def _udp_payloads(capture: str, count: int) -> list[bytes]:
    from scapy.layers.inet import UDP
    from scapy.utils import PcapNgReader, PcapReader

    reader_cls = PcapNgReader if capture.endswith(".pcapng") else PcapReader
    out: list[bytes] = []
    with reader_cls(str(real_capture(capture))) as reader:
        for pkt in reader:
            out.append(bytes(pkt[UDP].payload) if UDP in pkt else b"")
            if len(out) >= count:
                break
    return out


@pytest.fixture(scope="module")
def meet_frame7() -> bytes:
    return _udp_payloads("google_meet.pcapng", 7)[6]


def test_rfc9001_appendix_a_client_keys():
    # RFC 9001 A.1: DCID 0x8394c8f03e515708 gives these client Initial keys.
    keys = initial_keys(V1, bytes.fromhex("8394c8f03e515708"))
    assert keys is not None
    assert keys.key.hex() == "1f369613dd76d5467730efcbe3b1a22d"
    assert keys.iv.hex() == "fa044b2f42a3fd3b46fb255c"
    assert keys.hp.hex() == "9f50449e04a0e810283a1e9933adedd2"


def test_google_meet_v1(meet_frame7):
    initial = parse_initial(meet_frame7)
    assert initial is not None
    assert initial.version == V1
    assert initial.dcid.hex() == "831827c60d07ee3b"
    assert initial.packet_numbers == (1,)
    # Chrome reorders its CRYPTO frames: the tail comes first in the packet.
    assert initial.crypto[0][0] > 0
    assert initial.client_hello is not None
    assert initial.client_hello.sni == "meet.google.com"
    assert initial.client_hello.alpn == ("h3",)
    assert 0x0304 in initial.client_hello.supported_versions


def test_quic_v2():
    initial = parse_initial(_udp_payloads("quic-v2.pcapng", 1)[0])
    assert initial is not None and initial.version == V2
    assert initial.client_hello is not None and initial.client_hello.sni == "test"


def test_draft29_client_and_server_after_retry():
    frames = _udp_payloads("quic-29.pcap", 4)
    first = parse_initial(frames[0])
    assert first is not None and first.version == 0xFF00001D
    assert first.client_hello is not None and first.client_hello.sni == "localhost"
    assert first.client_hello.alpn == ("h3-29",)
    assert parse_initial(frames[1]) is None  # a Retry packet carries no Initial payload
    retried = parse_initial(frames[2])
    assert retried is not None and retried.token_length > 0 and retried.dcid != first.dcid
    # The server protects its Initial with keys from the client's DCID and "server in".
    server = parse_initial(frames[3], dcid=retried.dcid, server=True)
    assert server is not None and server.crypto[0][0] == 0
    assert server.crypto[0][1][0] == 2  # ServerHello
    assert parse_initial(frames[3]) is None  # wrong keys: authentication fails, no exception


def _varint(v: int) -> bytes:
    if v < 0x40:
        return bytes([v])
    if v < 0x4000:
        return (v | 0x4000).to_bytes(2, "big")
    return (v | 0x80000000).to_bytes(4, "big")


def _crypto_frame(offset: int, data: bytes) -> bytes:
    return b"\x06" + _varint(offset) + _varint(len(data)) + data


def _protect(version: int, dcid: bytes, pn: int, payload: bytes, pad_to: int = 0) -> bytes:
    """Build one client Initial (2-byte PN) the way RFC 9001 5.3/5.4 describes."""
    keys = initial_keys(version, dcid)
    assert keys is not None
    ptype = 1 if version == V2 else 0
    if pad_to:
        payload = payload + b"\x00" * max(0, pad_to - len(payload))
    first = 0xC0 | (ptype << 4) | 0x01  # PN length 2
    pn_bytes = pn.to_bytes(2, "big")
    length = len(pn_bytes) + len(payload) + 16
    header = (
        bytes([first])
        + version.to_bytes(4, "big")
        + bytes([len(dcid)])
        + dcid
        + b"\x00"  # empty SCID
        + b"\x00"  # no token
        + (length | 0x4000).to_bytes(2, "big")
        + pn_bytes
    )
    nonce = bytes(a ^ b for a, b in zip(keys.iv, pn.to_bytes(12, "big"), strict=True))
    sealed = AESGCM(keys.key).encrypt(nonce, payload, header)
    pn_off = len(header) - 2
    packet = bytearray(header + sealed)
    sample = bytes(packet[pn_off + 4 : pn_off + 20])
    enc = Cipher(algorithms.AES(keys.hp), modes.ECB()).encryptor()
    mask = enc.update(sample) + enc.finalize()
    packet[0] ^= mask[0] & 0x0F
    for i in range(2):
        packet[pn_off + i] ^= mask[1 + i]
    return bytes(packet)


@pytest.fixture(scope="module")
def meet_hello_stream(meet_frame7) -> bytes:
    initial = parse_initial(meet_frame7)
    assert initial is not None
    return crypto_stream(list(initial.crypto))


@pytest.mark.parametrize("version", [V1, V2, 0xFF00001D, 0xFF00001B])
def test_client_hello_split_over_datagrams(meet_hello_stream, version):
    dcid = bytes.fromhex("0011223344556677")
    hello = meet_hello_stream
    cut = len(hello) // 3
    # Second half first, and the first datagram's frames in reverse order.
    d2 = _protect(version, dcid, 1, _crypto_frame(2 * cut, hello[2 * cut :]), pad_to=1100)
    d1 = _protect(
        version,
        dcid,
        0,
        _crypto_frame(cut, hello[cut : 2 * cut]) + b"\x01" + _crypto_frame(0, hello[:cut]),
        pad_to=1100,
    )
    single = parse_initial(d2)
    assert single is not None and single.client_hello is None  # incomplete alone
    got = client_hello_from_initials([d2, d1])
    assert got is not None and got.sni == "meet.google.com"
    # A datagram of another connection (other DCID) is ignored, not mixed in.
    other = _protect(version, b"\x99" * 8, 0, _crypto_frame(0, b"\x01\x00\x00\x05junk!"), pad_to=1100)
    assert client_hello_from_initials([d2, other, d1]).sni == "meet.google.com"
    assert client_hello_from_initials([d2]) is None


def test_coalesced_packets_in_one_datagram(meet_hello_stream):
    dcid = bytes.fromhex("a1a2a3a4a5a6a7a8")
    hello = meet_hello_stream
    half = len(hello) // 2
    p1 = _protect(V1, dcid, 0, _crypto_frame(half, hello[half:]))
    p2 = _protect(V1, dcid, 1, _crypto_frame(0, hello[:half]))
    initial = parse_initial(p1 + p2 + b"\x00" * 50)
    assert initial is not None
    assert initial.packet_numbers == (0, 1)
    assert initial.client_hello is not None and initial.client_hello.sni == "meet.google.com"


def test_salts_and_unknown_versions():
    assert initial_salt(V1) != initial_salt(V2)
    assert initial_salt(0xFF00001D) == initial_salt(0xFF000020) != initial_salt(V1)
    assert initial_salt(0xFF000022) == initial_salt(V1)
    assert initial_salt(0x1A2A3A4A) is None  # greased version
    assert initial_keys(0x1A2A3A4A, b"\x01" * 8) is None


def test_every_truncation_is_safe(meet_frame7):
    for cut in range(0, len(meet_frame7), 3):
        got = parse_initial(meet_frame7[:cut])
        assert got is None or got.client_hello is not None
    flipped = bytearray(meet_frame7)
    flipped[-20] ^= 0x01  # one bit of the AEAD tag region: authentication must fail quietly
    assert parse_initial(bytes(flipped)) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1400), st.sampled_from([V1, V2, 0xFF00001D, 0x51303530]))
def test_random_bytes_never_raise(data, version):
    parse_initial(data)
    client_hello_from_initials([data, data[:10]])
    # Force a plausible long header so the parser reaches decryption with junk.
    framed = b"\xc3" + version.to_bytes(4, "big") + b"\x08" + b"\x01" * 8 + b"\x00\x00" + data
    parse_initial(framed)
    parse_initial(framed, server=True)
