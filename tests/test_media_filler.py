"""Probes, keep-alives and padding-only RTP are not media (issue 13): own payload kinds, role
`other` with the kind as detail, out of the media totals, the country table and media findings."""

from __future__ import annotations

import numpy as np
import pytest

from analyzer.api import analyze
from analyzer.dissect import kinds as K
from tests.conftest import real_capture


@pytest.fixture(scope="module")
def zoom_session():
    return analyze(real_capture("zoom.pcap"), allow="US")


def _flow(session, fid: int) -> dict:
    return next(f for f in session.report["flows"] if f["flow_id"] == fid)


def test_zoom_probe_flow_is_other_not_media(zoom_session) -> None:
    f30 = _flow(zoom_session, 30)
    # 179 probes of inner type 0x15 (payload of 0x01 bytes) on the SFU flow to 8801.
    assert f30["other_by_kind"] == {"zoom_probe": 191709}
    assert f30["bytes_by_role"]["other"] == 191709
    assert f30["bytes_by_role"].get("media", 0) < 1000  # what is left is the RTCP sender report
    media30 = next(m for m in zoom_session.report["media"] if m["flow_id"] == 30)
    assert media30["media_bytes"] == f30["bytes_by_role"]["media"]
    # The country of that server carries the probe bytes as `other`, not as media.
    nl = next(c for c in zoom_session.report["countries"] if c["country"] == "NL")
    assert nl["bytes_by_role"]["media"] < 5000
    assert nl["bytes_by_role"]["other"] >= 191709


def test_media_violation_counts_media_bytes_only(zoom_session) -> None:
    v = [x for x in zoom_session.report["policy"]["violations"] if x["flow_id"] == 30]
    by_role = {x["role"]: x for x in v}
    assert by_role["media"]["bytes"] == _flow(zoom_session, 30)["bytes_by_role"]["media"]
    assert by_role["other"]["bytes"] >= 191709
    assert by_role["other"]["severity"] == "low" and by_role["media"]["severity"] == "high"


def _kind(payload: bytes, sport: int = 40000, dport: int = 40002) -> str:
    buf = np.frombuffer(payload, np.uint8)
    args = (buf, np.array([0]), np.array([len(payload)]), np.array([17], np.uint8), np.array([sport]),
            np.array([dport]))
    a, b = K.payload_kinds(*args), K.payload_kinds_numpy(*args)
    assert a.tolist() == b.tolist()
    return K.KIND_NAMES[int(a[0])]


def test_padding_only_rtp_has_its_own_kind() -> None:
    header = bytes([0xA0, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 7])  # V=2, P=1, PT 111
    assert _kind(header + bytes(99) + bytes([100])) == "rtp_padding"
    # Padding that leaves payload bytes: real media, still rtp.
    assert _kind(header + b"\x55" * 40 + bytes(9) + bytes([10])) == "rtp"
    # Without the P bit the same bytes are media.
    assert _kind(bytes([0x80]) + header[1:] + bytes(99) + bytes([100])) == "rtp"


def test_zoom_keepalive_kind() -> None:
    # Generation B SFU header (+7 = 0x04, down) and inner type 0x0a, as on zoom.pcap.
    pkt = bytes([0x05, 0, 1, 0, 0, 0, 0, 0x04, 0x0A]) + bytes(18)
    assert _kind(pkt, 8801, 50000) == "zoom_keepalive"
