"""TCP, UDP, SCTP and ICMP headers: ports, flags and where the payload lies."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analyzer.decode.fields import member, u8, u16, u32

TCP, UDP, ICMP, ICMPV6, SCTP, UDPLITE = 6, 17, 1, 58, 132, 136
PORTED = (TCP, UDP, SCTP, UDPLITE)


@dataclass
class TransportFields:
    ok: np.ndarray
    sport: np.ndarray
    dport: np.ndarray
    flags: np.ndarray
    seq: np.ndarray
    pay_off: np.ndarray
    pay_len: np.ndarray


def decode_transport(
    buf: np.ndarray, proto: np.ndarray, l4pos: np.ndarray, ipend: np.ndarray, first_fragment: np.ndarray
) -> TransportFields:
    """Only first fragments (or unfragmented packets) carry a transport header."""
    n = proto.shape[0]
    t = TransportFields(
        ok=np.ones(n, bool),
        sport=np.zeros(n, np.int64),
        dport=np.zeros(n, np.int64),
        flags=np.zeros(n, np.int64),
        seq=np.full(n, -1, np.int64),
        pay_off=l4pos.copy(),
        pay_len=np.maximum(ipend - l4pos, 0),
    )
    ported = member(proto, PORTED) & first_fragment
    idx = np.flatnonzero(ported)
    if idx.size:
        p, e = l4pos[idx], ipend[idx]
        t.ok[idx] = p + 4 <= e
        t.sport[idx] = u16(buf, p)
        t.dport[idx] = u16(buf, p + 2)
    tcp = np.flatnonzero((proto == TCP) & first_fragment)
    if tcp.size:
        p, e = l4pos[tcp], ipend[tcp]
        doff = (u8(buf, p + 12) >> 4) * 4
        full = (p + 14 <= e) & (doff >= 20)
        t.ok[tcp] &= full
        t.flags[tcp] = np.where(full, u8(buf, p + 13), 0)
        t.seq[tcp] = np.where(p + 8 <= e, u32(buf, p + 4), -1)
        start = np.minimum(p + doff, e)
        t.pay_off[tcp] = start
        t.pay_len[tcp] = np.where(full, e - start, 0)
    udp = np.flatnonzero(member(proto, (UDP, UDPLITE)) & first_fragment)
    if udp.size:
        p, e = l4pos[udp], ipend[udp]
        ulen = u16(buf, p + 4)
        # The UDP length may exceed what was captured (snaplen) or be 0 (jumbograms).
        uend = np.where(ulen >= 8, np.minimum(p + ulen, e), e)
        t.pay_off[udp] = p + 8
        t.pay_len[udp] = np.maximum(uend - (p + 8), 0)
    sctp = np.flatnonzero((proto == SCTP) & first_fragment)
    if sctp.size:
        t.pay_off[sctp] = l4pos[sctp] + 12
        t.pay_len[sctp] = np.maximum(ipend[sctp] - l4pos[sctp] - 12, 0)
    icmp = np.flatnonzero(member(proto, (ICMP, ICMPV6)) & first_fragment)
    if icmp.size:
        # ICMP type/code are kept in `flags` (low byte code, high byte type) for Community ID.
        p, e = l4pos[icmp], ipend[icmp]
        t.flags[icmp] = (np.where(p < e, u8(buf, p), 0) << 8) | np.where(p + 1 < e, u8(buf, p + 1), 0)
        t.pay_off[icmp] = p + 8
        t.pay_len[icmp] = np.maximum(ipend[icmp] - p - 8, 0)
    return t
