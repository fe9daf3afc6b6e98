"""The scapy engine: scapy's own readers and dissectors, one Python loop per packet (slow; for
cross-checks). The innermost IP header is the last IP/IPv6 layer reached through IP-in-IP, GRE,
GTP-U and VXLAN; headers quoted inside ICMP errors (scapy's IPerror classes) are not followed."""

from __future__ import annotations

import os
from decimal import Decimal

import pandas as pd

from analyzer.engines.table import PACKET_COLUMNS, packets_to_flows
from analyzer.errors import CaptureFormatError, EngineUnavailable


def _scapy():
    try:
        from scapy.contrib import gtp  # noqa: F401 - binds GTP-U to UDP 2152
        from scapy.layers import inet, inet6, l2, vxlan  # noqa: F401 - registers the dissectors
        from scapy.utils import PcapReader
    except Exception as exc:  # ImportError, or scapy failing to initialise
        raise EngineUnavailable(f"scapy is not usable ({exc}); pip install scapy") from None
    return PcapReader


ENCAP_OF_CLASS = {
    "Dot1Q": "vlan",
    "Dot1AD": "vlan",
    "MPLS": "mpls",
    "PPPoE": "pppoe",
    "GRE": "gre",
    "GRE_PPTP": "gre",
    "GTP_U_Header": "gtp-u",
    "VXLAN": "vxlan",
}
PASS_THROUGH = {"UDP", "Ether", "HDLC", "PPP"}  # may sit between a tunnel header and the inner IP
PORTED_CLASSES = {"TCP": 6, "UDP": 17, "SCTP": 132}


def packet_row(pkt, frame: int) -> tuple | None:
    """One packet -> a row of analyzer.engines.table.PACKET_COLUMNS, or None if no IP header."""
    ip = None
    encap: list[str] = []
    pending: list[str] = []
    layer = pkt
    prev_ip = False
    while layer is not None and layer.__class__.__name__ not in ("NoPayload", "Raw", "Padding"):
        name = layer.__class__.__name__
        if name in ("IP", "IPv6"):
            if prev_ip:
                pending.append("ip-in-ip")
            encap += pending
            pending = []
            ip = layer
        elif name in ENCAP_OF_CLASS:
            pending.append(ENCAP_OF_CLASS[name])
        elif name == "PPP" and ip is None and "pppoe" not in pending:
            pending.append("ppp")  # a PPP link; PPP inside PPPoE or GRE is part of those
        elif ip is not None and not (name.startswith("IPv6ExtHdr") or name in PASS_THROUGH):
            break
        prev_ip = name in ("IP", "IPv6") or (prev_ip and name.startswith("IPv6ExtHdr"))
        layer = layer.payload if layer.payload else None
    if ip is None:
        return None
    is4 = ip.__class__.__name__ == "IP"
    frag_tail, frag_key, proto = False, "", 0
    if is4:
        proto = int(ip.proto)
        frag_tail = int(ip.frag) > 0
        if frag_tail or int(ip.flags) & 1:
            frag_key = f"{ip.src}|{ip.dst}|{int(ip.id)}"
    else:
        nh = int(ip.nh)
        sub = ip.payload
        while sub and sub.__class__.__name__.startswith("IPv6ExtHdr"):
            if sub.__class__.__name__ == "IPv6ExtHdrFragment":
                frag_tail = int(sub.offset) > 0
                if frag_tail or int(sub.m):
                    frag_key = f"{ip.src}|{ip.dst}|{int(sub.id)}"
            nh = int(sub.nh)
            sub = sub.payload
        proto = nh
    sport = dport = flags = itype = icode = -1
    body = ip.payload
    while body and body.__class__.__name__.startswith("IPv6ExtHdr"):
        body = body.payload
    bname = body.__class__.__name__ if body else ""
    if not frag_tail:
        if bname in PORTED_CLASSES:
            try:
                sport, dport = int(body.sport), int(body.dport)
                if bname == "TCP":
                    flags = int(body.flags)
                    if int(body.dataofs or 0) < 5:
                        return None  # bogus header length: no 5-tuple, as in the other engines
            except (TypeError, ValueError):
                return None
        elif bname in ("ICMP",) or bname.startswith("ICMPv6"):
            itype, icode = int(body.type), int(body.code)
        elif proto in PORTED_CLASSES.values():
            return None  # a ported protocol whose header scapy could not read (truncated)
    wire = getattr(pkt, "wirelen", None) or len(pkt)
    ts = int(Decimal(str(pkt.time)) * 1_000_000_000)
    return (
        frame,
        ts,
        int(wire),
        4 if is4 else 6,
        proto,
        str(ip.src),
        str(ip.dst),
        sport,
        dport,
        flags,
        itype,
        icode,
        frag_key,
        frag_tail,
        ",".join(dict.fromkeys(encap)),
    )


def scapy_packets(path: str | os.PathLike) -> pd.DataFrame:
    reader_cls = _scapy()
    rows = []
    try:
        reader = reader_cls(os.fspath(path))
    except Exception as exc:  # scapy raises Scapy_Exception and others on unknown formats
        raise CaptureFormatError(f"{path}: scapy cannot read it ({exc})") from None
    with reader:
        frame = 0
        while True:
            try:
                pkt = reader.read_packet()
            except EOFError:
                break
            except Exception as exc:  # damaged records: keep what was read, as native does
                del exc
                break
            if pkt is None:
                break
            frame += 1
            try:
                row = packet_row(pkt, frame)
            except Exception:  # a dissector failing on hostile bytes: the packet has no 5-tuple
                row = None
            if row is not None:
                rows.append(row)
    return pd.DataFrame.from_records(rows, columns=list(PACKET_COLUMNS))


def scapy_flows(path: str | os.PathLike) -> pd.DataFrame:
    """The flow table of a capture, computed from scapy's dissection."""
    return packets_to_flows(scapy_packets(path))
