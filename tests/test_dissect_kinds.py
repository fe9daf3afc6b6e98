"""Vectorised payload kinds against per-packet scalar parsing, on real captures and random input."""

from __future__ import annotations

from collections import Counter
from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.dissect import dns as dns_mod
from analyzer.dissect import kinds as K
from analyzer.dissect import sip as sip_mod
from analyzer.dissect import ssdp as ssdp_mod
from analyzer.dissect.dtls import parse_dtls
from analyzer.dissect.rtp import is_padding_only, parse_rtcp, parse_rtp
from analyzer.dissect.stun import parse_channel_data, parse_stun, split_stun_tcp
from analyzer.dissect.zoom import parse_zoom
from tests.conftest import real_capture

Row = tuple[bytes, int, int, int]  # payload, proto, sport, dport
_ZOOM = {
    "audio": "zoom_media",
    "video": "zoom_media",
    "screenshare": "zoom_media",
    "rtcp": "zoom_media",
    "probe": "zoom_probe",
    "keepalive": "zoom_keepalive",
}


@cache
def _rows(name: str) -> tuple[Row, ...]:
    scapy = pytest.importorskip("scapy.all")
    out = []
    for pkt in scapy.PcapReader(str(real_capture(name))):
        l4 = pkt.getlayer(scapy.UDP) or pkt.getlayer(scapy.TCP)
        if l4 is not None:
            out.append((bytes(l4.payload), 17 if isinstance(l4, scapy.UDP) else 6, l4.sport, l4.dport))
    return tuple(out)


def _arrays(rows: list[Row] | tuple[Row, ...]) -> tuple[np.ndarray, ...]:
    lens = np.array([len(r[0]) for r in rows], dtype=np.int32)
    off = np.zeros(len(rows), dtype=np.int64)
    off[1:] = np.cumsum(lens)[:-1]
    buf = np.frombuffer(b"".join(r[0] for r in rows), dtype=np.uint8)
    proto = np.array([r[1] for r in rows], dtype=np.uint8)
    sport = np.array([r[2] for r in rows], dtype=np.uint16)
    dport = np.array([r[3] for r in rows], dtype=np.uint16)
    return buf, off, lens, proto, sport, dport


def _zoom_kind(payload: bytes, server_side: bool) -> str | None:
    z = parse_zoom(payload, server_side)
    return None if z is None else _ZOOM.get(z.media_kind, "zoom_control")


def scalar_kind(payload: bytes, proto: int, sport: int, dport: int) -> str:
    """The same decision, one packet at a time, through the scalar parsers."""
    ports = {sport, dport}
    if not payload:
        return "none"
    sip = payload.startswith(sip_mod.PREFIXES) or bool(ports & set(sip_mod.PORTS))
    if proto == 17:
        if ports & set(dns_mod.UDP_PORTS):
            return "dns"
        if parse_stun(payload):
            return "stun"
        if parse_channel_data(payload):
            return "turn_channel"
        if (d := parse_dtls(payload)) is not None:
            return "dtls_appdata" if d.first_content_type in (0, 23, 25) else "dtls_handshake"
        if payload[0] == 0x10 and payload[4:8] == b"ZRTP":
            return "zrtp"
        if any(8801 <= p <= 8810 for p in ports) and (z := _zoom_kind(payload, True)):
            return z
        if z := _zoom_kind(payload, False):
            return z
        if parse_rtcp(payload):
            return "rtcp"
        if hdr := parse_rtp(payload):
            return "rtp_padding" if is_padding_only(hdr, payload) else "rtp"
        if ssdp_mod.PORT in ports and ssdp_mod.parse_ssdp(payload):
            return "ssdp"
        if sip:
            return "sip"
        if payload[0] >= 0xC0 and len(payload) >= 7 and payload[5] <= 20:
            version = int.from_bytes(payload[1:5], "big")
            if 443 in ports or version in (1, 0x6B3343CF) or version >> 8 == 0xFF0000:
                return "quic_long"
        if 0x40 <= payload[0] <= 0x7F and len(payload) >= 21 and 443 in ports:
            return "quic_short"
        return "other"
    if proto == 6:
        if 53 in ports:
            return "dns"
        if payload[0] in (20, 21, 22, 23) and len(payload) >= 3 and payload[1] == 3 and payload[2] <= 4:
            return "tls_appdata" if payload[0] == 23 else "tls_handshake"
        msgs = split_stun_tcp(payload)
        if msgs and (m := parse_stun(msgs[0])) is not None and not m.classic:
            return "stun"
        return "sip" if sip else "tcp"
    return "other"


def _compare(rows: list[Row] | tuple[Row, ...]) -> tuple[Counter[str], list[tuple[str, str, bytes]]]:
    codes = K.payload_kinds(*_arrays(rows))
    got = Counter(K.KIND_NAMES[c] for c in codes)
    bad = [(scalar_kind(*r), K.KIND_NAMES[c], r[0][:8]) for r, c in zip(rows, codes, strict=True)]
    return got, [b for b in bad if b[0] != b[1]]


@pytest.mark.parametrize(
    ("capture", "expected"),
    [
        ("zoom.pcap", {"zoom_probe": 179, "zoom_media": 1, "zoom_control": 18, "zoom_keepalive": 2,
                       "stun": 18}),
        ("zoom_p2p.pcapng", {"zoom_media": 248, "zoom_control": 300, "zoom_probe": 63, "stun": 80}),
        ("stun_dtls_rtp.pcapng", {"stun": 43, "dtls_handshake": 6, "dtls_appdata": 17, "rtp": 11, "rtcp": 1}),
        ("teams.pcap", {"stun": 63, "rtp": 18, "rtcp": 12, "tls_handshake": 179, "tls_appdata": 213}),
        ("stun.pcap", {"stun": 152, "turn_channel": 19, "dtls_handshake": 6, "dtls_appdata": 10}),
        ("sip.pcap", {"sip": 102, "rtp": 9, "rtcp": 1}),
        ("dtls.pcap", {"dtls_handshake": 6, "dtls_appdata": 14}),
        ("google_meet.pcapng", {"quic_long": 6}),
    ],
)
def test_vectorised_kinds_agree_with_scalar_parsers(capture: str, expected: dict[str, int]) -> None:
    rows = _rows(capture)
    got, bad = _compare(rows)
    assert bad == [], f"{len(bad)} of {len(rows)} packets disagree: {bad[:5]}"
    for kind, count in expected.items():
        assert got[kind] == count, (kind, got)


def test_webrtc_flow_splits_by_kind() -> None:
    rows = [r for r in _rows("stun_dtls_rtp.pcapng") if {r[2], r[3]} == {37967, 19305}]
    codes = K.payload_kinds(*_arrays(rows))
    sizes: Counter[str] = Counter()
    for r, c in zip(rows, codes, strict=True):
        sizes[K.KIND_NAMES[c]] += len(r[0])
    assert set(sizes) == {"stun", "dtls_handshake", "dtls_appdata", "rtp", "rtcp"}
    assert sum(sizes.values()) == sum(len(r[0]) for r in rows)


def test_reads_never_cross_into_the_next_payload() -> None:
    stun = bytes.fromhex("000100002112a442") + bytes(12)
    # The first packet holds only the first 10 bytes; the rest sits right after it in buf.
    rows = [(stun[:10], 17, 5000, 3478), (stun[10:], 17, 5000, 3478), (stun, 17, 5000, 3478)]
    buf, off, lens, proto, sport, dport = _arrays(rows)
    codes = K.payload_kinds(buf, off, lens, proto, sport, dport)
    assert [K.KIND_NAMES[c] for c in codes] == ["other", "other", "stun"]
    # An offset/length pointing outside the buffer is treated as no payload, not an IndexError.
    off2 = off.copy()
    off2[0] = len(buf) + 100
    assert K.KIND_NAMES[K.payload_kinds(buf, off2, lens, proto, sport, dport)[0]] == "none"
    empty = K.payload_kinds(
        np.zeros(0, np.uint8),
        np.zeros(0, np.int64),
        np.zeros(0, np.int32),
        np.zeros(0, np.uint8),
        np.zeros(0, np.uint16),
        np.zeros(0, np.uint16),
    )
    assert empty.shape == (0,) and empty.dtype == np.uint8


def test_kind_names_and_codes() -> None:
    assert len(set(K.KIND_NAMES)) == len(K.KIND_NAMES) <= 255
    assert K.KIND_CODES["zoom_media"] == K.ZOOM_MEDIA and K.KIND_NAMES[K.NONE] == "none"
    assert K.kind_name(250) == "other"


_PREFIXES = [
    b"",
    b"\x00\x01",
    b"\x16\xfe\xfd",
    b"\x05",
    b"\x80",
    b"\x81\xc8",
    b"\x40\x01",
    b"\x1f\x02\x01\x00",
    b"\x0f\x01\x00\xfb",
    b"\x15\x01\x00\x00\x00\x00",
    b"\xff\x10",
    b"\xc0\x00\x00\x00\x01",
    b"INVITE ",
]
_PORTS = [3478, 8801, 53, 5060, 443, 40000]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(_PREFIXES),
            st.binary(max_size=64),
            st.sampled_from([6, 17, 1]),
            st.sampled_from(_PORTS),
            st.sampled_from(_PORTS),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_random_payloads_agree_with_scalar(items: list[tuple[bytes, bytes, int, int, int]]) -> None:
    rows = [(prefix + body, proto, sp, dp) for prefix, body, proto, sp, dp in items]
    _, bad = _compare(rows)
    assert bad == []
