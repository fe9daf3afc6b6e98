"""Link layers -> position of the network header, for all frames of a chunk at once."""

from __future__ import annotations

import numpy as np

from analyzer.decode import reasons as R
from analyzer.decode.fields import member, u8, u16

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100, 0x9200)
MPLS_TYPES = (0x8847, 0x8848)
PPPOE_SESSION = 0x8864
PPP_IPV4 = 0x0021
PPP_IPV6 = 0x0057
MAX_VLAN_TAGS = 4
MAX_MPLS_LABELS = 8

LINKTYPE_ETHERNET = 1
LINKTYPE_PPP = 9
LINKTYPE_RAW_BSD12 = 12
LINKTYPE_RAW_BSD14 = 14
LINKTYPE_NULL = 0
LINKTYPE_PPP_HDLC = 50
LINKTYPE_PPP_ETHER = 51
LINKTYPE_RAW = 101
LINKTYPE_C_HDLC = 104
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

RAW_IP_TYPES = (LINKTYPE_RAW, LINKTYPE_RAW_BSD12, LINKTYPE_RAW_BSD14, LINKTYPE_IPV4, LINKTYPE_IPV6)
SUPPORTED_LINKTYPES = frozenset(
    (
        LINKTYPE_ETHERNET,
        LINKTYPE_PPP,
        LINKTYPE_NULL,
        LINKTYPE_PPP_HDLC,
        LINKTYPE_PPP_ETHER,
        LINKTYPE_C_HDLC,
        LINKTYPE_LOOP,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_LINUX_SLL2,
        *RAW_IP_TYPES,
    )
)


def version_to_ethertype(buf: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """For headerless IP: the first nibble says IPv4 or IPv6."""
    nib = u8(buf, pos) >> 4
    return np.where(nib == 4, ETH_IPV4, np.where(nib == 6, ETH_IPV6, -1))


def ppp_to_ethertype(proto: np.ndarray) -> np.ndarray:
    return np.where(proto == PPP_IPV4, ETH_IPV4, np.where(proto == PPP_IPV6, ETH_IPV6, -1))


def ethertype_chain(
    buf: np.ndarray, et: np.ndarray, pos: np.ndarray, end: np.ndarray, encap: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Follow VLAN tags, MPLS labels and PPPoE sessions from an EtherType at each frame.

    `et` is the EtherType and `pos` the byte after it; returns the final (ethertype, pos).
    Arrays are updated in place for the frames concerned (they are index subsets' copies).
    """
    for _ in range(MAX_VLAN_TAGS):
        vlan = member(et, VLAN_TPIDS) & (pos + 4 <= end)
        if not vlan.any():
            break
        et[vlan] = u16(buf, pos[vlan] + 2)
        pos[vlan] += 4
        encap[vlan] |= R.ENCAP_VLAN
    mpls = member(et, MPLS_TYPES)
    if mpls.any():
        idx = np.flatnonzero(mpls)
        p = pos[idx]
        done = np.zeros(idx.shape[0], dtype=bool)
        for _ in range(MAX_MPLS_LABELS):
            live = ~done & (p + 4 <= end[idx])
            if not live.any():
                break
            bos = (u8(buf, p + 2) & 1).astype(bool)
            p = np.where(live, p + 4, p)
            done |= live & bos
        pos[idx] = p
        # After the bottom label there is no type field: guess IP from the version nibble.
        et[idx] = np.where(done & (p < end[idx]), version_to_ethertype(buf, p), -1)
        encap[idx] |= R.ENCAP_MPLS
    pppoe = (et == PPPOE_SESSION) & (pos + 8 <= end)
    if pppoe.any():
        et[pppoe] = ppp_to_ethertype(u16(buf, pos[pppoe] + 6))
        pos[pppoe] += 8
        encap[pppoe] |= R.ENCAP_PPPOE
    return et, pos


def link_layer(
    buf: np.ndarray, start: np.ndarray, end: np.ndarray, linktype: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Returns (ethertype, l3pos, encap bits, status) per frame; ethertype -1 = not IP."""
    n = start.shape[0]
    et = np.full(n, -1, dtype=np.int64)
    pos = start.copy()
    encap = np.zeros(n, dtype=np.int64)
    status = np.zeros(n, dtype=np.uint8)
    for lt in np.unique(linktype):
        sel = np.flatnonzero(linktype == lt)
        s, e = start[sel], end[sel]
        lt = int(lt)
        if lt == LINKTYPE_ETHERNET:
            short = s + 14 > e
            t, p = ethertype_chain(buf, u16(buf, s + 12), s + 14, e, enc := np.zeros(sel.shape[0], np.int64))
        elif lt == LINKTYPE_LINUX_SLL:
            short = s + 16 > e
            t, p = ethertype_chain(buf, u16(buf, s + 14), s + 16, e, enc := np.zeros(sel.shape[0], np.int64))
        elif lt == LINKTYPE_LINUX_SLL2:
            short = s + 20 > e
            t, p = ethertype_chain(buf, u16(buf, s), s + 20, e, enc := np.zeros(sel.shape[0], np.int64))
        elif lt in RAW_IP_TYPES:
            short = s + 1 > e
            p, enc = s, np.zeros(sel.shape[0], np.int64)
            t = version_to_ethertype(buf, p)
        elif lt in (LINKTYPE_NULL, LINKTYPE_LOOP):
            # The 4-byte address family is in the writer's byte order for NULL; the IP
            # version nibble that follows is unambiguous, so read that instead.
            short = s + 5 > e
            p, enc = s + 4, np.zeros(sel.shape[0], np.int64)
            t = version_to_ethertype(buf, p)
        elif lt in (LINKTYPE_PPP, LINKTYPE_PPP_HDLC):
            hdlc = u16(buf, s) == 0xFF03
            proto_at = np.where(hdlc, s + 2, s)
            short = proto_at + 2 > e
            p, enc = proto_at + 2, np.full(sel.shape[0], R.ENCAP_PPP, np.int64)
            t = ppp_to_ethertype(u16(buf, proto_at))
        elif lt == LINKTYPE_PPP_ETHER:
            short = s + 8 > e
            p, enc = s + 8, np.full(sel.shape[0], R.ENCAP_PPPOE, np.int64)
            t = ppp_to_ethertype(u16(buf, s + 6))
        elif lt == LINKTYPE_C_HDLC:
            short = s + 4 > e
            t, p = ethertype_chain(buf, u16(buf, s + 2), s + 4, e, enc := np.zeros(sel.shape[0], np.int64))
        else:
            status[sel] = R.UNKNOWN_LINKTYPE
            continue
        t = np.where(short, -1, t)
        et[sel], pos[sel], encap[sel] = t, p, enc
        is_ip = (t == ETH_IPV4) | (t == ETH_IPV6)
        st = np.where(short, R.TRUNCATED_LINK, np.where(is_ip, R.OK, R.NON_IP))
        status[sel] = st
    status[(end <= start) & (status == R.OK)] = R.EMPTY_FRAME
    return et, pos, encap, status
