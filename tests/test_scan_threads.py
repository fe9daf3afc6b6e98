"""The optional decode thread (CONFSCOPE_THREADS=2) gives exactly the single-thread result."""

from __future__ import annotations

import pandas as pd
import pytest

import analyzer.scan.scanner as scan
from tests.conftest import real_capture


@pytest.mark.parametrize("name", ["teams.pcap", "zoom_p2p.pcapng", "ip_fragmented_garbage.pcap"])
def test_decode_thread_gives_the_same_flows_samples_and_streams(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    path = real_capture(name)
    monkeypatch.setattr(scan, "THREADS", 1)
    one = scan.scan_capture(path, chunk_bytes=16384)
    monkeypatch.setattr(scan, "THREADS", 2)
    two = scan.scan_capture(path, chunk_bytes=16384)
    assert len(one.flows) > 0
    pd.testing.assert_frame_equal(one.flows, two.flows)
    pd.testing.assert_frame_equal(one.samples, two.samples)
    pd.testing.assert_frame_equal(one.streams, two.streams)
    assert one.info.as_dict() == two.info.as_dict()
