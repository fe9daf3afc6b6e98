"""Media verdicts measure only the encrypted part of each packet and need a minimum sample."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from analyzer.scan.media import SRTP_TAG_BYTES
from analyzer.scan.scanner import scan_capture
from analyzer.session.media_verdicts import VERDICT_MIN_PACKETS, judge_streams, media_verdict

S = pytest.importorskip("scapy.all")


def _rtp(seq: int, payload: bytes, *, pad: int = 0, tag: bytes = b"", csrc: int = 0) -> bytes:
    b0 = 0x80 | (0x20 if pad else 0) | csrc
    head = struct.pack("!BBHII", b0, 0, seq, seq * 160, 0x1234ABCD) + b"\x00\x00\x00\x01" * csrc
    padding = (b"\x00" * (pad - 1) + bytes([pad])) if pad else b""
    return head + payload + padding + tag


def _capture(path: Path, n: int, rng: np.random.Generator) -> Path:
    """Two G.711-like streams (a narrow range of byte values: low entropy): plain RTP with a CSRC
    and RTP padding on port 40002, and one with a random 10-byte SRTP-style tag on port 40004 that
    would make its packets look random if the tag were measured."""
    pkts = []
    for i in range(n):
        payload = bytes(rng.integers(0x50, 0x58, 160, dtype=np.uint8))
        padded = _rtp(1000 + i, payload, pad=4, csrc=1)
        tagged = _rtp(5000 + i, payload, tag=rng.bytes(SRTP_TAG_BYTES))
        for port, raw in ((40002, padded), (40004, tagged)):
            p = S.IP(src="192.168.1.5", dst="192.168.1.9") / S.UDP(sport=port - 2, dport=port) / raw
            p.time = 1_700_000_000 + i * 0.02
            pkts.append(p)
    S.wrpcap(str(path), pkts, linktype=101)
    return path


def _streams(path: Path):
    scan = scan_capture(path)
    return judge_streams(scan.streams)


def test_verdict_measures_only_the_encrypted_region(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    st = _streams(_capture(tmp_path / "plain.pcap", 60, rng))
    assert len(st) == 2
    # 12 + 4 (CSRC) + 160 + 4 (padding) = 180 bytes per padded packet, 12 + 160 + 10 = 182 tagged.
    padded, tagged = (st[st["bytes"] == st["bytes"].min()].iloc[0], st[st["bytes"] == st["bytes"].max()].iloc[0])
    assert padded["ecb_packets"] >= 50 and tagged["ecb_packets"] >= 50
    # No header, CSRC, padding or tag bytes in the measured region: the padded stream loses its
    # 4 padding bytes and the tag allowance (the payload's last 10 bytes), the tagged one its tag.
    assert padded["ecb_sample_bytes"] == padded["ecb_packets"] * (160 - SRTP_TAG_BYTES)
    assert tagged["ecb_sample_bytes"] == tagged["ecb_packets"] * 160
    for row in (padded, tagged):
        assert row["verdict"] == "unencrypted_like"
        assert "entropy" in row["verdict_reason"] and "bytes" in row["verdict_reason"]


def test_too_few_packets_is_insufficient(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    st = _streams(_capture(tmp_path / "short.pcap", VERDICT_MIN_PACKETS - 2, rng))
    if st.empty:  # too short to be recognised as a stream at all: no verdict either way
        return
    verdict, reason = media_verdict(st.iloc[0])
    assert verdict == "insufficient" and f"needs {VERDICT_MIN_PACKETS}" in reason
