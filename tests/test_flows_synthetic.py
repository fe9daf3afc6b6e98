"""Flow table semantics: client side, handshake RTT, ICMP flows, wire bytes, Community ID v1,
exact merging of partial tables."""

from __future__ import annotations

import random
import shutil
import subprocess

import pandas as pd
import pytest

from analyzer.capture import writer as W
from analyzer.engines.table import community_id_v1
from analyzer.scan.flows import community_id, finalize, merge_partials
from analyzer.scan.scanner import scan_capture
from tests.conftest import real_capture

S = pytest.importorskip("scapy.all")
T0 = 1_700_000_000_000_000_000
C, SV = "10.0.0.1", "93.184.216.34"


def tcp(src, dst, sport, dport, flags, payload=b""):
    return S.raw(S.IP(src=src, dst=dst) / S.TCP(sport=sport, dport=dport, flags=flags) / payload)


def test_handshake_rtt_and_syn_sender_is_client_even_after_a_stray_packet() -> None:
    frames = [
        (T0, tcp(SV, C, 443, 50000, "A")),  # stray server packet captured before the SYN
        (T0 + 1_000_000, tcp(C, SV, 50000, 443, "S")),
        (T0 + 26_500_000, tcp(SV, C, 443, 50000, "SA")),
        (T0 + 27_000_000, tcp(C, SV, 50000, 443, "A", b"hello")),
    ]
    f = scan_capture(W.pcap_bytes(frames, linktype=101)).flows
    assert len(f) == 1
    row = f.iloc[0]
    assert (row.client_ip, row.client_port, row.server_ip, row.server_port) == (C, 50000, SV, 443)
    assert row.tcp_rtt_ms == pytest.approx(25.5)
    assert (row.packets_c2s, row.packets_s2c) == (2, 2)
    assert row.first_ts_ns == T0 and row.last_ts_ns == T0 + 27_000_000


def test_udp_client_is_first_sender_and_bytes_are_wire_lengths() -> None:
    q = S.raw(S.IP(src=SV, dst=C) / S.UDP(sport=8801, dport=61000) / (b"v" * 100))
    frames = [(T0, q[:60], len(q)), (T0 + 5, q[:60], 1400)]  # snaplen-truncated, wire lengths kept
    f = scan_capture(W.pcap_bytes(frames, linktype=101, snaplen=60)).flows
    assert f.loc[0, "client_ip"] == SV and f.loc[0, "client_port"] == 8801
    assert f.loc[0, "bytes_c2s"] == len(q) + 1400 and pd.isna(f.loc[0, "tcp_rtt_ms"])


def test_icmp_and_other_protocols_are_flows() -> None:
    frames = [
        (T0, S.raw(S.IP(src=C, dst=SV) / S.ICMP(type=8, id=1))),
        (T0 + 1000, S.raw(S.IP(src=SV, dst=C) / S.ICMP(type=0, id=1))),
        (T0 + 2000, S.raw(S.IP(src=C, dst=SV, proto=50) / (b"\0" * 20))),
        (T0 + 3000, S.raw(S.IPv6(src="2001:db8::1", dst="2001:db8::2") / S.ICMPv6EchoRequest())),
    ]
    f = scan_capture(W.pcap_bytes(frames, linktype=101)).flows
    assert list(f["transport"]) == ["icmp", "ip-50", "icmpv6"]
    assert list(f["packets"]) == [2, 1, 1]
    assert f.loc[0, "community_id"] == community_id_v1(C, SV, 1, 8, 0)


# Two implementations written separately must agree (and tshark's, in the next test).
CASES = [
    ("128.232.110.120", "66.35.250.204", 6, 34855, 80),
    ("66.35.250.204", "128.232.110.120", 6, 80, 34855),
    ("fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea", 58, 135, 0),
    ("192.168.0.89", "192.168.0.1", 1, 8, 0),
    ("192.168.0.1", "192.168.0.89", 1, 0, 0),
    ("10.0.0.1", "10.0.0.2", 1, 3, 1),  # destination unreachable: one-way
    ("10.0.0.1", "10.0.0.2", 47, 0, 0),
    ("2001:db8::1", "2001:db8::2", 132, 5060, 5060),
]


@pytest.mark.parametrize("case", CASES)
def test_community_id_two_implementations_agree(case) -> None:
    assert community_id(*case) == community_id_v1(*case)
    assert community_id(*case).startswith("1:") and len(community_id(*case)) == 30


def test_community_id_is_direction_free_for_request_reply() -> None:
    assert community_id(*CASES[0]) == community_id(*CASES[1])
    assert community_id(*CASES[3]) == community_id(*CASES[4])
    assert community_id("10.0.0.1", "10.0.0.2", 1, 3, 1) != community_id("10.0.0.2", "10.0.0.1", 1, 3, 1)
    assert community_id(*CASES[0], seed=1) != community_id(*CASES[0])


def test_community_id_matches_wireshark() -> None:
    if not shutil.which("tshark"):
        pytest.skip("tshark is not installed")
    path = real_capture("zoom.pcap")
    out = subprocess.run(
        ["tshark", "-n", "-r", str(path), "--enable-protocol", "communityid", "-T", "fields", "-e", "communityid"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    theirs = set(out)
    ours = set(scan_capture(path, keep_samples=False).flows["community_id"])
    assert len(ours) > 30 and ours <= theirs


def test_merging_partials_in_any_order_is_exact() -> None:
    rng = random.Random(7)
    frames = []
    for _ in range(600):
        c = f"10.0.{rng.randrange(3)}.{rng.randrange(1, 4)}"
        sp = rng.choice([1000, 1001])
        if rng.random() < 0.5:
            frames.append((T0 + rng.randrange(10**9), S.raw(S.IP(src=c, dst=SV) / S.UDP(sport=sp, dport=53))))
        else:
            frames.append((T0 + rng.randrange(10**9), S.raw(S.IP(src=SV, dst=c) / S.UDP(sport=53, dport=sp))))
    data = W.pcap_bytes(frames, linktype=101)  # timestamps deliberately out of order
    whole = scan_capture(data).flows
    parts = []
    from analyzer.capture import open_capture
    from analyzer.decode import DecodeState, decode_chunk
    from analyzer.decode import reasons as R
    from analyzer.scan.flows import aggregate_table, canonical, flow_keys, table_frame

    with open_capture(data, chunk_bytes=4096) as reader:
        state = DecodeState()
        for chunk in reader.chunks():
            cols = decode_chunk(chunk, state)
            idx = (cols.status == R.OK).nonzero()[0]
            c = canonical(cols, idx)
            codes, uniq = pd.factorize(flow_keys(c))
            parts.append(
                table_frame(
                    aggregate_table(
                        c,
                        codes,
                        uniq.astype("uint64"),
                        chunk.ts_ns[idx],
                        chunk.wirelen[idx].astype("int64"),
                        cols.tcp_flags[idx].astype("int64"),
                        cols.encap[idx],
                        None,
                        0,
                    )
                )
            )
    assert len(parts) > 3
    cols = ["client_ip", "client_port", "server_ip", "packets_c2s", "packets_s2c", "first_ts_ns", "last_ts_ns"]
    for _ in range(3):
        rng.shuffle(parts)
        merged = finalize(merge_partials(list(parts)))
        assert merged[cols].equals(whole[cols])
