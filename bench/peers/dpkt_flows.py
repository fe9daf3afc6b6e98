"""Peer baseline: a plain dpkt loop building a bidirectional 5-tuple flow table (CSV to stdout).

This is the "what a careful Python script does" bar: one Python iteration per packet, Ethernet
(with VLAN tags, as dpkt parses them) -> IPv4/IPv6 -> TCP/UDP ports, a dict keyed on the sorted
endpoint pair. It is deliberately simple: no tunnels, no fragments.
"""

from __future__ import annotations

import socket
import sys

import dpkt


def _open(fh):
    magic = fh.read(4)
    fh.seek(0)
    if magic == b"\x0a\x0d\x0d\x0a":
        return dpkt.pcapng.Reader(fh)
    return dpkt.pcap.Reader(fh)


def flow_table(path: str) -> dict[tuple, list]:
    """Key (proto, a_ip, a_port, b_ip, b_port), a < b -> [packets, bytes, first_ts, last_ts]."""
    flows: dict[tuple, list] = {}
    with open(path, "rb") as fh:
        for ts, buf in _open(fh):
            try:
                eth = dpkt.ethernet.Ethernet(buf)
            except (dpkt.UnpackError, IndexError):
                continue
            ip = eth.data
            if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)):
                continue
            src, dst = ip.src, ip.dst
            l4 = ip.data
            if isinstance(l4, (dpkt.tcp.TCP, dpkt.udp.UDP)):
                sport, dport = l4.sport, l4.dport
            else:
                sport = dport = 0
            a, b = (src, sport), (dst, dport)
            key = (ip.p, *a, *b) if a <= b else (ip.p, *b, *a)
            entry = flows.get(key)
            if entry is None:
                flows[key] = [1, len(buf), ts, ts]
            else:
                entry[0] += 1
                entry[1] += len(buf)
                entry[3] = ts
    return flows


def _ip_text(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def main() -> int:
    flows = flow_table(sys.argv[1])
    out = sys.stdout
    out.write("proto,a_ip,a_port,b_ip,b_port,packets,bytes,first_ts,last_ts\n")
    for (proto, a_ip, a_port, b_ip, b_port), (pkts, nbytes, first, last) in flows.items():
        out.write(f"{proto},{_ip_text(a_ip)},{a_port},{_ip_text(b_ip)},{b_port},{pkts},{nbytes},{first},{last}\n")
    print(f"{len(flows)} flows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
