"""SIP/SDP dissection on sip.pcap and crafted key-exchange SDPs; SDES keys never leak."""

from __future__ import annotations

import base64
import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.dissect.sip import parse_sdp, parse_sip, parse_sip_stream, redact_keys
from tests.conftest import real_capture


@pytest.fixture(scope="module")
def sip_frames() -> dict[int, bytes]:
    from scapy.layers.inet import UDP
    from scapy.utils import PcapReader

    out: dict[int, bytes] = {}
    with PcapReader(str(real_capture("sip.pcap"))) as reader:
        for frame, pkt in enumerate(reader, 1):
            if UDP in pkt and 5060 in (pkt[UDP].sport, pkt[UDP].dport):
                out[frame] = bytes(pkt[UDP].payload)
            if frame > 120:
                break
    return out


def test_invite_with_sdp(sip_frames):
    msg = parse_sip(sip_frames[22])
    assert msg is not None and msg.is_request
    assert msg.method == "INVITE"
    assert msg.request_uri is not None and msg.request_uri.startswith("sip:")
    assert msg.call_id == "105090259-446faf7a@192.168.1.2"
    assert msg.user_agent == "Nero SIPPS IP Phone Version 2.0.51.16"
    assert msg.via and "192.168.1.2" in msg.via[0]
    assert msg.content_length == len(msg.body) > 0
    assert msg.sdp is not None
    (audio,) = msg.sdp.media
    assert (audio.media, audio.port, audio.proto) == ("audio", 30000, "RTP/AVP")
    assert audio.payload_types == (0, 8, 97, 2, 3)
    assert audio.connection == "192.168.1.2"
    assert msg.sdp.key_exchange == ()  # plain RTP: no key exchange at all


def test_responses(sip_frames):
    ringing = parse_sip(sip_frames[92])
    assert ringing is not None and not ringing.is_request
    assert ringing.status_code == 183 and ringing.method == "INVITE"
    assert ringing.sdp is not None
    assert (ringing.sdp.media[0].connection, ringing.sdp.media[0].port) == ("212.242.33.36", 40392)
    unauthorized = parse_sip(sip_frames[2])
    assert unauthorized.status_code == 401 and unauthorized.method == "REGISTER"
    assert unauthorized.sdp is None


def test_tcp_stream_with_several_messages(sip_frames):
    stream = sip_frames[22] + b"\r\n" + sip_frames[92] + sip_frames[92][:60]
    msgs = parse_sip_stream(stream)
    assert [(m.method, m.status_code) for m in msgs] == [("INVITE", None), ("INVITE", 183)]
    assert msgs[0].sdp.media[0].port == 30000


def test_compact_headers_and_folding():
    raw = (
        b"OPTIONS sip:bob@example.org SIP/2.0\r\n"
        b"v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1, SIP/2.0/UDP 10.0.0.2\r\n"
        b"f: <sip:alice@example.org>;tag=1\r\n"
        b"t: <sip:bob@example.org>\r\n"
        b"i: abc@10.0.0.1\r\n"
        b"m: <sip:alice@10.0.0.1>\r\n"
        b"User-Agent: Soft\r\n phone 1.0\r\n"
        b"l: 0\r\n\r\n"
    )
    msg = parse_sip(raw)
    assert msg is not None
    assert msg.call_id == "abc@10.0.0.1"
    assert msg.from_ == "<sip:alice@example.org>;tag=1"
    assert msg.contact == "<sip:alice@10.0.0.1>"
    assert len(msg.via) == 2
    assert msg.user_agent == "Soft phone 1.0"
    assert msg.content_length == 0 and msg.body == b""


KEY = base64.b64encode(bytes(range(30))).decode()  # 16-byte key + 14-byte salt
KEY2 = base64.b64encode(bytes(range(100, 130))).decode()
MIKEY = base64.b64encode(bytes([1, 4, 0, 0]) + b"\x55" * 40).decode()

SDES_SDP = (
    "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"
    "m=audio 40000 RTP/SAVP 0 101\r\n"
    f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4\r\n"
    f"a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{KEY2}\r\n"
    "a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:\r\n"
    f"a=crypto:4 inline:{KEY2}\r\n"
    "a=rtcp-mux\r\n"
)


def _flatten(obj) -> str:
    return repr(obj) + str(obj) + repr(dataclasses.asdict(obj))


def test_sdes_facts_without_the_key():
    sdp = parse_sdp(SDES_SDP)
    (audio,) = sdp.media
    assert audio.proto == "RTP/SAVP" and audio.rtcp_mux
    c1, c2, c3, c4 = audio.crypto
    assert (c1.tag, c1.suite, c1.key_present, c1.key_length_bytes) == (1, "AES_CM_128_HMAC_SHA1_80", True, 30)
    assert (c2.tag, c2.suite, c2.key_present) == (2, "AES_CM_128_HMAC_SHA1_32", True)
    assert not c3.key_present and c3.key_length_bytes is None
    assert c4.suite == "invalid"  # malformed line: the key must not travel in the suite field
    assert sdp.key_exchange == ("sdes",)
    text = _flatten(sdp)
    for secret in (KEY, KEY2, KEY[:20], KEY2[-20:]):
        assert secret not in text


def test_sip_message_carrying_sdes_never_keeps_the_key():
    body = SDES_SDP.encode()
    raw = (
        b"INVITE sip:bob@example.org SIP/2.0\r\nCall-ID: k1\r\nContent-Type: application/sdp\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    for msg in (parse_sip(raw), parse_sip_stream(raw)[0]):
        assert msg is not None and msg.sdp is not None
        assert msg.sdp.key_exchange == ("sdes",)
        assert b"inline:REDACTED" in msg.body
        text = _flatten(msg) + msg.body.decode()
        assert KEY not in text and KEY2 not in text
    assert KEY.encode() not in redact_keys(body) and b"|2^20|1:4" in redact_keys(body)


def test_dtls_srtp_mikey_and_zrtp_attributes():
    sdp = parse_sdp(
        "v=0\r\nc=IN IP6 2001:db8::5\r\n"
        "a=fingerprint:SHA-256 4A:AD:B9:B1:3F:82:18:3B\r\n"
        f"a=key-mgmt:mikey {MIKEY}\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=setup:actpass\r\na=rtcp-mux\r\n"
        "a=zrtp-hash:1.10 fe30efd02423cb054e50efd0248742ac7a52c8f91bc2df881ae642c371ba46df\r\n"
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    )
    assert sdp.fingerprints[0].hash == "sha-256"
    assert sdp.fingerprints[0].value == "4A:AD:B9:B1:3F:82:18:3B"
    assert sdp.key_mgmt[0].protocol == "mikey" and sdp.key_mgmt[0].data_type == 4
    assert sdp.key_mgmt[0].data_type_name == "dh_init"
    audio, data = sdp.media
    assert audio.setup == "actpass" and audio.rtcp_mux and audio.zrtp_hash
    assert audio.connection == "0.0.0.0" and data.connection == "2001:db8::5"
    assert data.formats == ("webrtc-datachannel",) and data.payload_types == ()
    assert sdp.connections == ("2001:db8::5", "0.0.0.0")
    assert sdp.key_exchange == ("dtls-srtp", "mikey", "zrtp")
    assert MIKEY not in _flatten(sdp)
    assert MIKEY.encode() not in redact_keys(f"a=key-mgmt:mikey {MIKEY}\r\n".encode())


def test_not_sip():
    assert parse_sip(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") is None
    assert parse_sip(b"hello") is None
    assert parse_sip(b"FROB sip:x SIP/2.0\r\n\r\n") is None
    assert parse_sip_stream(b"INVITE sip:x SIP/2.0\r\nContent-Length: 50\r\n\r\nshort") == []


def test_every_truncation_is_safe(sip_frames):
    invite = sip_frames[22]
    for cut in range(len(invite)):
        msg = parse_sip(invite[:cut])
        assert msg is None or msg.method == "INVITE"
        parse_sip_stream(invite[:cut])
        parse_sdp(invite[:cut])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=500))
def test_random_bytes_never_raise(data):
    parse_sip(data)
    parse_sip_stream(data)
    parse_sdp(data)
    parse_sip(b"INVITE sip:a SIP/2.0\r\nContent-Type: application/sdp\r\n\r\n" + data)
    parse_sdp(b"m=audio 1 RTP/SAVP 0\r\na=crypto:" + data)


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="|;"), min_size=8)
)
def test_any_inline_key_is_absent_from_output(key):
    key = "KEYMAT" + key  # a marker that appears nowhere else, so a hit can only be a leak
    sdp_text = f"m=audio 1 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\r\n"
    raw = b"INVITE sip:a SIP/2.0\r\nContent-Type: application/sdp\r\n\r\n" + sdp_text.encode()
    msg = parse_sip(raw)
    assert msg is not None
    assert key not in _flatten(msg) + msg.body.decode()
