"""Property tests for the stages the per-protocol dissector tests do not reach: dissect_flows on
random flow samples (no parser may raise, even inside its own exception guard) and the media tap
on mutated captures with RTP."""

from __future__ import annotations

import random
from functools import cache

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.dissect.flowfacts import dissect_flows
from analyzer.errors import ConfscopeError
from analyzer.scan.scanner import scan_capture
from tests.conftest import REAL
from tests.fuzz.harness import fuzzer, watchdog

# Ports that route samples into the DNS, TLS, QUIC, SIP, STUN/TURN, RTP, Zoom and WebRTC paths.
PORTS = [53, 80, 443, 3478, 3479, 3480, 5060, 5061, 5004, 8801, 8802, 19302, 50000, 9000, 1234]
REAL_FOR_PAYLOADS = ["zoom.pcap", "sip.pcap", "stun.pcap", "dtls.pcap", "quic.pcap", "webex.pcap", "teams.pcap"]
MEDIA_CAPTURES = ["rtp.pcapng", "stun_dtls_rtp.pcapng", "zoom.pcap", "zoom_p2p.pcapng", "webex.pcap"]


@cache
def real_payloads() -> tuple[bytes, ...]:
    """First payloads of flows in real captures: seeds that reach deep into the parsers."""
    out: list[bytes] = []
    for name in REAL_FOR_PAYLOADS:
        path = REAL / name
        if path.exists():
            samples = scan_capture(path).samples
            out.extend(bytes(p) for p in samples["payload"].head(60).tolist() if p)
    return tuple(out)


def _payload(draw_bytes: bytes, seed: int) -> bytes:
    """A real payload, mutated by the drawn bytes (overwrite, truncate or append)."""
    pool = real_payloads()
    if not pool:
        return draw_bytes
    rng = random.Random(seed)
    data = bytearray(rng.choice(pool))
    op = rng.randrange(4)
    if op == 0 and data:
        at = rng.randrange(len(data))
        data[at : at + len(draw_bytes)] = draw_bytes
    elif op == 1:
        del data[rng.randrange(len(data) + 1) :]
    elif op == 2:
        data += draw_bytes
    else:
        return draw_bytes
    return bytes(data)


packet = st.tuples(st.integers(0, 1), st.binary(max_size=300), st.integers(0, 2**32), st.integers(-1, 2**32 - 1))
flow = st.tuples(
    st.sampled_from(["udp", "tcp", "icmp", "ip-47"]),
    st.sampled_from(PORTS),
    st.sampled_from(PORTS),
    st.lists(packet, min_size=1, max_size=12),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flows=st.lists(flow, min_size=1, max_size=6))
def test_dissect_flows_on_random_samples_never_raises(flows: list) -> None:
    frows, srows = [], []
    frame = 1
    for fid, (transport, cport, sport, packets) in enumerate(flows):
        frows.append(
            {
                "flow_id": fid,
                "transport": transport,
                "client_ip": "10.0.0.1",
                "client_port": cport,
                "server_ip": "192.0.2.7",
                "server_port": sport,
            }
        )
        for d, blob, seed, seq in packets:
            srows.append(
                {
                    "flow_id": fid,
                    "frame": frame,
                    "ts_ns": 1_600_000_000_000_000_000 + frame,
                    "dir": d,
                    "transport": transport,
                    "tcp_seq": seq if transport == "tcp" else -1,
                    "tcp_flags": 0x18,
                    "payload": _payload(blob, seed),
                }
            )
            frame += 1
    with watchdog(20, "dissect_flows on random samples"):
        result = dissect_flows(pd.DataFrame(frows), pd.DataFrame(srows))
    # dissect_flows turns a parser exception into facts["errors"]: none may have happened.
    assert result.errors == {}, result.errors
    assert list(result.facts.index) == list(range(len(flows)))


@settings(max_examples=25, deadline=None)
@given(index=st.integers(0, 2**31))
def test_media_tap_on_mutated_media_captures(index: int) -> None:
    bases = [b for b in fuzzer().load_bases(REAL, max_bytes=64 * 1024) if b.name in MEDIA_CAPTURES]
    if not bases:
        pytest.skip(f"no shared media captures under {REAL}")
    mutant = fuzzer().make_mutant(bases, "media-property", index)
    with watchdog(30, f"scan of mutant {index} of {mutant.base} ({mutant.ops})"):
        try:
            scan = scan_capture(mutant.data)
        except ConfscopeError:
            return
    assert scan.media is not None
    streams = scan.streams
    if len(streams):
        # Every stream belongs to a flow of this scan.
        ids = set(scan.flows["flow_id"].tolist())
        assert set(streams["flow_id"].dropna().astype(int).tolist()) <= ids
