"""Tunnels whose inner IP packet becomes the flow key: IP-in-IP, GRE, GTP-U, VXLAN."""

from __future__ import annotations

import numpy as np

from analyzer.decode import reasons as R
from analyzer.decode.fields import member, u8, u16
from analyzer.decode.link import ETH_IPV4, ETH_IPV6, PPP_IPV4, PPP_IPV6, version_to_ethertype
from analyzer.decode.transport import UDP

IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_GRE = 4, 41, 47
GTPU_PORT, VXLAN_PORT = 2152, 4789
GRE_ETH_BRIDGE, GRE_ERSPAN2, GRE_PPP = 0x6558, 0x88BE, 0x880B
INNER_ETHERNET = -2  # marker: the tunnel carries an Ethernet frame, not bare IP
MAX_GTP_EXTENSIONS = 4


def find_tunnels(
    buf: np.ndarray,
    proto: np.ndarray,
    l4pos: np.ndarray,
    ipend: np.ndarray,
    sport: np.ndarray,
    dport: np.ndarray,
    pay_off: np.ndarray,
    first_fragment: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per packet: (inner ethertype or -1, inner position, encap bit); -1 = not a tunnel."""
    n = proto.shape[0]
    inner_et = np.full(n, -1, np.int64)
    inner_pos = np.zeros(n, np.int64)
    bit = np.zeros(n, np.int64)

    ipip = first_fragment & member(proto, (IPPROTO_IPIP, IPPROTO_IPV6)) & (l4pos < ipend)
    inner_et[ipip] = np.where(proto[ipip] == IPPROTO_IPIP, ETH_IPV4, ETH_IPV6)
    inner_pos[ipip] = l4pos[ipip]
    bit[ipip] = R.ENCAP_IPIP

    gre = np.flatnonzero(first_fragment & (proto == IPPROTO_GRE) & (l4pos + 4 <= ipend))
    if gre.size:
        p = l4pos[gre]
        flags = u16(buf, p)
        ptype = u16(buf, p + 2)
        version = flags & 7
        c_or_r = (flags & 0xC000) != 0
        key = (flags & 0x2000) != 0
        seqf = (flags & 0x1000) != 0
        ack = (flags & 0x0080) != 0
        hlen = np.where(
            version == 0,
            4 + 4 * c_or_r + 4 * key + 4 * seqf,
            8 + 4 * seqf + 4 * ack,  # enhanced GRE (PPTP) always has the key field
        )
        q = p + hlen
        et = np.where(ptype == ETH_IPV4, ETH_IPV4, np.where(ptype == ETH_IPV6, ETH_IPV6, -1))
        et = np.where(ptype == GRE_ETH_BRIDGE, INNER_ETHERNET, et)
        erspan = ptype == GRE_ERSPAN2
        et = np.where(erspan, INNER_ETHERNET, et)
        q = np.where(erspan, q + 8, q)
        ppp = (ptype == GRE_PPP) & (version == 1)
        if ppp.any():
            hdlc = u16(buf, q) == 0xFF03
            qp = np.where(hdlc, q + 2, q)
            pproto = u16(buf, qp)
            et = np.where(ppp & (pproto == PPP_IPV4), ETH_IPV4, et)
            et = np.where(ppp & (pproto == PPP_IPV6), ETH_IPV6, et)
            q = np.where(ppp, qp + 2, q)
        valid = (et != -1) & (q < ipend[gre]) & (version <= 1)
        inner_et[gre] = np.where(valid, et, -1)
        inner_pos[gre] = q
        bit[gre] = np.where(valid, R.ENCAP_GRE, 0)

    udp = first_fragment & (proto == UDP)
    gtp = np.flatnonzero(udp & ((dport == GTPU_PORT) | (sport == GTPU_PORT)) & (pay_off + 8 <= ipend))
    if gtp.size:
        p = pay_off[gtp]
        flags = u8(buf, p)
        is_gpdu = ((flags >> 5) == 1) & ((flags & 0x10) != 0) & (u8(buf, p + 1) == 0xFF)
        opt = (flags & 0x07) != 0
        q = np.where(opt, p + 12, p + 8)
        next_ext = np.where((flags & 0x04) != 0, u8(buf, p + 11), 0)
        for _ in range(MAX_GTP_EXTENSIONS):
            more = next_ext != 0
            if not more.any():
                break
            ext_len = u8(buf, q) * 4
            more &= ext_len > 0
            next_ext = np.where(more, u8(buf, q + ext_len - 1), 0)
            q = np.where(more, q + ext_len, q)
        et = version_to_ethertype(buf, q)
        valid = is_gpdu & (et != -1) & (q < ipend[gtp])
        inner_et[gtp] = np.where(valid, et, -1)
        inner_pos[gtp] = q
        bit[gtp] = np.where(valid, R.ENCAP_GTP, 0)

    vx = np.flatnonzero(udp & (dport == VXLAN_PORT) & (pay_off + 8 + 14 <= ipend))
    if vx.size:
        p = pay_off[vx]
        valid = (u8(buf, p) & 0x08) != 0
        inner_et[vx] = np.where(valid, INNER_ETHERNET, -1)
        inner_pos[vx] = p + 8
        bit[vx] = np.where(valid, R.ENCAP_VXLAN, 0)
    return inner_et, inner_pos, bit
