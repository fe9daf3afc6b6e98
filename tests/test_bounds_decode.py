"""The decoder's and the sampler's documented bounds (SECURITY.md), each hit on purpose."""

from __future__ import annotations

import struct

import pytest

from analyzer.capture import writer as W
from analyzer.decode import link, network, tunnels
from analyzer.scan.chunks import SAMPLE_CONTROL, SAMPLE_FIRST
from analyzer.scan.scanner import scan_capture

scapy_all = pytest.importorskip("scapy.all")
from scapy.layers.inet import IP, UDP  # noqa: E402
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt  # noqa: E402
from scapy.layers.l2 import Dot1Q, Ether  # noqa: E402

T0 = 1_700_000_000 * 10**9
UDP4 = IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1000, dport=2000) / (b"x" * 20)


def _scan(frames: list[bytes], **kwargs):
    return scan_capture(W.pcap_bytes([(T0 + i * 1000, f) for i, f in enumerate(frames)]), **kwargs)


def _vlan_frame(tags: int) -> bytes:
    pkt = Ether(src="00:00:00:00:00:01", dst="00:00:00:00:00:02")
    for i in range(tags):
        pkt = pkt / Dot1Q(vlan=i + 1)
    return bytes(pkt / UDP4)


def test_vlan_stack_is_followed_up_to_the_bound_and_no_further() -> None:
    ok = _scan([_vlan_frame(link.MAX_VLAN_TAGS)])
    assert len(ok.flows) == 1 and ok.flows["encap"][0] == "vlan"
    deep = _scan([_vlan_frame(link.MAX_VLAN_TAGS + 1)])
    assert len(deep.flows) == 0
    assert deep.info.skipped["non_ip"] == 1


def _mpls_frame(labels: int) -> bytes:
    stack = b"".join(struct.pack("!I", (16 + i) << 12 | (1 if i == labels - 1 else 0) << 8 | 64) for i in range(labels))
    return b"\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x01\x88\x47" + stack + bytes(UDP4)


def test_mpls_labels_are_followed_up_to_the_bound_and_no_further() -> None:
    ok = _scan([_mpls_frame(link.MAX_MPLS_LABELS)])
    assert len(ok.flows) == 1 and ok.flows["encap"][0] == "mpls"
    deep = _scan([_mpls_frame(link.MAX_MPLS_LABELS + 1)])
    assert len(deep.flows) == 0 and deep.info.skipped["non_ip"] == 1


def _ipv6_ext_frame(headers: int) -> bytes:
    pkt = IPv6(src="2001:db8::1", dst="2001:db8::2")
    for _ in range(headers):
        pkt = pkt / IPv6ExtHdrDestOpt()
    return bytes(Ether() / pkt / UDP(sport=1000, dport=2000) / b"y")


def test_ipv6_extension_chain_is_bounded() -> None:
    ok = _scan([_ipv6_ext_frame(network.MAX_IPV6_EXT)])
    assert ok.flows["transport"].tolist() == ["udp"]
    assert ok.flows["server_port"].tolist() == [2000]
    # One header more than the bound: the walk stops at a destination-options header, so the
    # flow is keyed on that protocol number (60) instead of UDP, and nothing raises.
    deep = _scan([_ipv6_ext_frame(network.MAX_IPV6_EXT + 1)])
    assert deep.flows["transport"].tolist() == ["ip-60"]


def _gtp_frame(extensions: int) -> bytes:
    inner = bytes(UDP4)
    exts = b""
    for i in range(extensions):
        nxt = 0x85 if i < extensions - 1 else 0
        exts += bytes([1, 0, 0, nxt])  # one 4-byte extension header each
    flags = 0x30 | (0x04 if extensions else 0)
    header = struct.pack("!BBHI", flags, 0xFF, len(inner) + 4 + len(exts), 1)
    header += struct.pack("!HBB", 0, 0, 0x85 if extensions else 0) + exts
    outer = IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=2152, dport=2152) / (header + inner)
    return bytes(Ether() / outer)


def test_gtp_extension_chain_is_bounded() -> None:
    ok = _scan([_gtp_frame(tunnels.MAX_GTP_EXTENSIONS)])
    assert ok.flows["client_ip"].tolist() == ["10.0.0.1"] and ok.flows["encap"][0] == "gtp-u"
    deep = _scan([_gtp_frame(tunnels.MAX_GTP_EXTENSIONS + 2)])
    # Past the bound the inner packet is not found: the outer GTP-U flow is kept, nothing raises.
    assert deep.flows["server_port"].tolist() == [2152]


def test_pending_fragment_table_forgets_the_oldest(monkeypatch: pytest.MonkeyPatch) -> None:
    import analyzer.decode as decode

    monkeypatch.setattr(decode, "MAX_PENDING_FRAGMENTS", 4)
    frames = []
    # Frames of ~1 KiB and 4 KiB chunks: the six first fragments span two chunks and their tails
    # come in later chunks, so attribution must go through the (bounded) table.
    for ident in range(6):
        head = IP(src="10.0.0.1", dst="10.0.0.2", id=ident, flags="MF") / UDP(sport=3000 + ident, dport=53)
        frames.append(bytes(Ether() / head / (b"h" * 1000)))
    for ident in range(6):
        tail = IP(src="10.0.0.1", dst="10.0.0.2", id=ident, frag=126, proto=17) / (b"t" * 1000)
        frames.append(bytes(Ether() / tail))
    r = _scan(frames, chunk_bytes=4096)
    # The table keeps the 4 newest heads: the tails of datagrams 0 and 1 become orphans.
    assert r.info.skipped["ip_fragment_without_first"] == 2
    assert r.flows["packets"].sum() == 12 - 2
    assert sorted(r.flows["client_port"]) == [3000, 3001, 3002, 3003, 3004, 3005]


def test_samples_keep_the_first_packets_and_a_bounded_number_of_control_packets() -> None:
    data = [
        bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=4000, dport=9000) / (bytes([i % 256]) * 30))
        for i in range(SAMPLE_FIRST + 40)
    ]
    dns = [
        bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.3") / UDP(sport=5000, dport=53) / (b"\x12\x34" + bytes(20)))
        for _ in range(SAMPLE_FIRST + SAMPLE_CONTROL + 50)
    ]
    r = _scan(data + dns)
    per_flow = r.samples.groupby("flow_id").size()
    sizes = sorted(per_flow.tolist())
    assert sizes == [SAMPLE_FIRST, SAMPLE_FIRST + SAMPLE_CONTROL]
    assert r.flows["packets"].sum() == len(data) + len(dns)  # counted even when not kept


def test_ecb_statistics_sample_at_most_the_documented_packets_per_stream() -> None:
    from analyzer.scan.media import ECB_MAX_PACKETS as limit
    frames = []
    for seq in range(limit + 60):
        rtp = struct.pack("!BBHII", 0x80, 96, seq, seq * 160, 0x1234ABCD) + bytes(
            (seq * 7 + k) % 256 for k in range(160)
        )
        frames.append(bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=40000, dport=40002) / rtp))
    r = _scan(frames)
    stream = r.streams[r.streams["ssrc"] == 0x1234ABCD].iloc[0]
    assert stream["packets"] == limit + 60
    assert stream["ecb_packets"] == limit
