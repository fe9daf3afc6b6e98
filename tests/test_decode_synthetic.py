"""Every supported link type, IPv6 extension headers, IPv4/IPv6 fragments and tunnels, in
synthetic captures built with analyzer.capture.writer; cross-checked against tshark when present."""

from __future__ import annotations

import shutil
import struct

import pytest

from analyzer.capture import writer as W
from analyzer.engines.compare import compare_flows
from analyzer.scan.scanner import scan_capture

S = pytest.importorskip("scapy.all")
from scapy.contrib.gtp import GTP_U_Header  # noqa: E402
from scapy.contrib.mpls import MPLS  # noqa: E402
from scapy.layers.vxlan import VXLAN  # noqa: E402

T0 = 1_700_000_000_000_000_000
IP4 = S.raw(S.IP(src="192.0.2.1", dst="198.51.100.2") / S.UDP(sport=5004, dport=8801) / (b"m" * 40))
IP6 = S.raw(S.IPv6(src="2001:db8::1", dst="2001:db8::2") / S.UDP(sport=5004, dport=8801) / (b"m" * 40))
MAC = {"src": "00:00:00:00:00:01", "dst": "00:00:00:00:00:02"}


def eth(*layers, ip: bytes = IP4) -> bytes:
    etype = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    if not layers:
        return S.raw(S.Ether(**MAC, type=etype)) + ip
    pkt = S.Ether(**MAC)
    for layer in layers:
        pkt = pkt / layer
    pkt.lastlayer().type = etype
    return S.raw(pkt) + ip


def sll2(ip: bytes) -> bytes:
    etype = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    # protocol, reserved, ifindex, ARPHRD_ETHER, packet type, address length, address (8)
    return struct.pack(">HHIHBB8s", etype, 0, 2, 1, 0, 6, b"\x00\x01\x02\x03\x04\x05\0\0") + ip


def null(ip: bytes, big: bool) -> bytes:
    family = 2 if ip[0] >> 4 == 4 else 30
    return struct.pack(">I" if big else "<I", family) + ip


def ppp_proto(ip: bytes) -> int:
    return 0x21 if ip[0] >> 4 == 4 else 0x57


# name -> (linktype, frame builder from IP bytes, expected encap label)
LINKS = {
    "ethernet": (1, lambda ip: eth(ip=ip), ""),
    "802.1q": (1, lambda ip: eth(S.Dot1Q(vlan=5), ip=ip), "vlan"),
    "qinq": (1, lambda ip: eth(S.Dot1AD(vlan=10), S.Dot1Q(vlan=20), ip=ip), "vlan"),
    "mpls": (1, lambda ip: S.raw(S.Ether(**MAC, type=0x8847) / MPLS(label=16, s=0) / MPLS(label=17, s=1)) + ip, "mpls"),
    "pppoe": (
        1,
        lambda ip: (
            S.raw(
                S.Ether(**MAC) / S.PPPoE(sessionid=7, len=2 + len(ip)) / S.PPP(proto=0x21 if ip[0] >> 4 == 4 else 0x57)
            )
            + ip
        ),
        "pppoe",
    ),
    "sll": (113, lambda ip: S.raw(S.CookedLinux(proto=0x86DD if ip[0] >> 4 == 6 else 0x800)) + ip, ""),
    "sll2": (276, sll2, ""),
    "raw101": (101, lambda ip: ip, ""),
    "ipv4-228": (228, lambda ip: ip, ""),
    "ipv6-229": (229, lambda ip: ip, ""),
    "raw12": (12, lambda ip: ip, ""),
    "raw14": (14, lambda ip: ip, ""),
    "null-le": (0, lambda ip: null(ip, False), ""),
    "loop": (108, lambda ip: null(ip, True), ""),
    "ppp-hdlc": (9, lambda ip: b"\xff\x03" + (b"\x00\x21" if ip[0] >> 4 == 4 else b"\x00\x57") + ip, "ppp"),
    "ppp-bare": (9, lambda ip: (b"\x00\x21" if ip[0] >> 4 == 4 else b"\x00\x57") + ip, "ppp"),
    "c-hdlc": (104, lambda ip: (b"\x0f\x00\x08\x00" if ip[0] >> 4 == 4 else b"\x0f\x00\x86\xdd") + ip, ""),
}


@pytest.mark.parametrize("big", [False, True], ids=["le", "be"])
@pytest.mark.parametrize("name", sorted(LINKS))
def test_every_link_type(name: str, big: bool) -> None:
    linktype, build, encap = LINKS[name]
    ips = [IP6] if name == "ipv6-229" else [IP4] if name == "ipv4-228" else [IP4, IP6]
    frames = [(T0 + i * 1000, build(ip)) for i, ip in enumerate(ips)]
    res = scan_capture(W.pcap_bytes(frames, linktype=linktype, big_endian=big))
    f = res.flows
    assert sum(res.info.skipped.values()) == 0
    assert len(f) == len(ips)
    assert set(f["server_port"]) == {8801} and set(f["client_port"]) == {5004}
    assert set(f["client_ip"]) <= {"192.0.2.1", "2001:db8::1"}
    assert set(f["encap"]) == {encap}
    assert list(f["bytes"]) == [len(fr) for _, fr in frames]


def _pcapng_all_links(tmp_path):
    """One pcapng, one interface per link type, big-endian, both IP versions."""
    parts = [W.shb(big_endian=True)]
    frames = []
    for i, name in enumerate(sorted(LINKS)):
        linktype, build, _ = LINKS[name]
        parts.append(W.idb(linktype, tsresol=9, big_endian=True))
        for j, ip in enumerate([IP4, IP6]):
            if (name, ip) in (("ipv6-229", IP4), ("ipv4-228", IP6)):
                continue
            # Distinct ports per link type so every frame is its own flow.
            p = S.IP(ip) if ip is IP4 else S.IPv6(ip)
            p[S.UDP].sport = 6000 + i
            del p[S.UDP].chksum
            frames.append((i, T0 + (i * 2 + j) * 1000, build(S.raw(p))))
    parts += [W.epb(i, W.ts_units(ts, 9), fr, big_endian=True) for i, ts, fr in frames]
    path = tmp_path / "links.pcapng"
    path.write_bytes(b"".join(parts))
    return path, len(frames)


def test_all_link_types_agree_with_tshark(tmp_path) -> None:
    if not shutil.which("tshark"):
        pytest.skip("tshark is not installed")
    from analyzer.engines import build_flows

    path, n = _pcapng_all_links(tmp_path)
    ours = build_flows(path)
    assert len(ours) == n
    diff = compare_flows(ours, build_flows(path, engine="tshark"))
    assert diff.identical, diff.summary()
    assert diff.equal_flows == n


def _ip4_udp(payload: int, src="10.0.0.1", dst="10.0.0.2", sport=1111, dport=53, ident=77):
    return S.IP(src=src, dst=dst, id=ident) / S.UDP(sport=sport, dport=dport) / (b"F" * payload)


def test_ipv4_fragments_follow_first_fragment_also_across_chunks() -> None:
    frags = S.fragment(_ip4_udp(3000), fragsize=1000)
    assert len(frags) == 4
    filler = [eth(ip=S.raw(_ip4_udp(1200, "10.9.9.9", "10.8.8.8", 9, 9, ident=i))) for i in range(10)]
    # First fragment, then fillers so later fragments land in other 4 KiB chunks, tail order mixed.
    seq = [eth(ip=S.raw(frags[0])), *filler[:5], eth(ip=S.raw(frags[2])), *filler[5:]]
    seq += [eth(ip=S.raw(frags[3])), eth(ip=S.raw(frags[1]))]
    data = W.pcap_bytes([(T0 + i * 1000, fr) for i, fr in enumerate(seq)])
    for chunk_bytes in (None, 4096):
        res = scan_capture(data, chunk_bytes=chunk_bytes)
        flow = res.flows[res.flows["server_port"] == 53]
        assert len(flow) == 1 and int(flow["packets"].iloc[0]) == 4
        assert int(flow["bytes"].iloc[0]) == sum(len(eth(ip=S.raw(f))) for f in frags)
        assert sum(res.info.skipped.values()) == 0


def test_tail_before_head_and_orphans() -> None:
    frags = S.fragment(_ip4_udp(2000), fragsize=1000)
    orphan = S.fragment(_ip4_udp(2000, ident=99), fragsize=1000)[1]
    v6 = S.fragment6(
        S.IPv6(src="2001:db8::1", dst="2001:db8::2")
        / S.IPv6ExtHdrFragment(id=5)
        / S.UDP(sport=7, dport=53)
        / (b"6" * 2000),
        1000,
    )
    seq = [frags[2], frags[0], frags[1], orphan, *list(reversed(v6))]
    res = scan_capture(W.pcap_bytes([(T0 + i, S.raw(p)) for i, p in enumerate(seq)], linktype=101))
    f = res.flows.set_index("client_port")
    assert int(f.loc[1111, "packets"]) == 3 and int(f.loc[7, "packets"]) == len(v6)
    assert res.info.skipped["ip_fragment_without_first"] == 1


def test_ipv6_extension_headers() -> None:
    pkts = [
        S.IPv6(src="2001:db8::1", dst="2001:db8::2")
        / S.IPv6ExtHdrHopByHop()
        / S.IPv6ExtHdrRouting()
        / S.IPv6ExtHdrDestOpt()
        / S.TCP(sport=40000, dport=443, flags="S"),
        S.IPv6(src="2001:db8::2", dst="2001:db8::1")
        / S.IPv6ExtHdrDestOpt()
        / S.TCP(sport=443, dport=40000, flags="SA"),
    ]
    res = scan_capture(W.pcap_bytes([(T0 + i * 5_000_000, S.raw(p)) for i, p in enumerate(pkts)], linktype=229))
    f = res.flows
    assert len(f) == 1 and f.loc[0, "transport"] == "tcp" and f.loc[0, "client_port"] == 40000
    assert f.loc[0, "tcp_rtt_ms"] == 5.0


INNER = S.IP(src="172.16.0.1", dst="172.16.0.2") / S.UDP(sport=3478, dport=3479) / b"inner"
INNER6 = S.IPv6(src="fd00::1", dst="fd00::2") / S.UDP(sport=3478, dport=3479) / b"inner"
OUT4 = S.IP(src="203.0.113.1", dst="203.0.113.2")
OUT6 = S.IPv6(src="2001:db8:ffff::1", dst="2001:db8:ffff::2")
TUNNELS = {
    "gre": (OUT4 / S.GRE() / INNER, "gre"),
    "gre-key-seq": (OUT4 / S.GRE(key_present=1, key=5, seqnum_present=1, seqence_number=9) / INNER, "gre"),
    "4in4": (OUT4 / INNER, "ip-in-ip"),
    "6in4": (OUT4 / INNER6, "ip-in-ip"),
    "4in6": (OUT6 / INNER, "ip-in-ip"),
    "6in6": (OUT6 / INNER6, "ip-in-ip"),
    "gtp-u": (OUT4 / S.UDP(sport=2152, dport=2152) / GTP_U_Header(teid=42) / INNER, "gtp-u"),
    "vxlan": (OUT4 / S.UDP(sport=51000, dport=4789) / VXLAN(vni=9) / S.Ether(**MAC) / INNER, "vxlan"),
    "gre-in-vlan": (S.Dot1Q(vlan=3) / OUT4 / S.GRE() / INNER6, "vlan,gre"),
}


@pytest.mark.parametrize("name", sorted(TUNNELS))
def test_tunnels_key_on_innermost_tuple(name: str) -> None:
    pkt, encap = TUNNELS[name]
    first = S.Ether(**MAC) / pkt
    frames = [(T0, S.raw(first)), (T0 + 1000, S.raw(first))]
    res = scan_capture(W.pcap_bytes(frames))
    f = res.flows
    assert len(f) == 1, f
    assert f.loc[0, "client_ip"] in ("172.16.0.1", "fd00::1") and f.loc[0, "server_port"] == 3479
    assert f.loc[0, "encap"] == encap and f.loc[0, "packets"] == 2
    assert f.loc[0, "bytes"] == 2 * len(S.raw(first))


def test_tunnels_agree_with_tshark(tmp_path) -> None:
    if not shutil.which("tshark"):
        pytest.skip("tshark is not installed")
    from analyzer.engines import build_flows

    frames = []
    for i, name in enumerate(sorted(TUNNELS)):
        pkt = (S.Ether(**MAC) / TUNNELS[name][0]).copy()
        inner_udp = pkt.getlayer(S.UDP, nb=2 if name in ("gtp-u", "vxlan") else 1)
        inner_udp.sport = 7000 + i
        frames.append((T0 + i * 1000, S.raw(pkt)))
    path = tmp_path / "tunnels.pcap"
    path.write_bytes(W.pcap_bytes(frames))
    ours, theirs = build_flows(path), build_flows(path, engine="tshark")
    diff = compare_flows(ours, theirs)
    assert diff.identical and diff.equal_flows == len(TUNNELS), diff.summary()
    assert sorted(ours["encap"]) == sorted(theirs["encap"])
