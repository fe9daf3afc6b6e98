"""IPv4 and IPv6 headers (with IPv6 extension headers) for many packets at once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analyzer.decode.fields import member, u8, u16, u32, u64_be
from analyzer.decode.link import ETH_IPV4, ETH_IPV6

IPV4_MAPPED_PREFIX = np.uint64(0xFFFF00000000)
IPV6_EXT_LENGTH8 = (0, 43, 60, 135, 139, 140)  # length in 8-octet units, not counting the first 8
IPV6_FRAGMENT = 44
IPV6_AH = 51
MAX_IPV6_EXT = 8


@dataclass
class IpFields:
    ok: np.ndarray
    ver: np.ndarray
    proto: np.ndarray
    src_hi: np.ndarray
    src_lo: np.ndarray
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    l4pos: np.ndarray
    ipend: np.ndarray
    frag_off: np.ndarray  # byte offset of this fragment (0 = first or unfragmented)
    more_frags: np.ndarray
    frag_id: np.ndarray


def decode_ip(buf: np.ndarray, et: np.ndarray, pos: np.ndarray, end: np.ndarray) -> IpFields:
    n = pos.shape[0]
    f = IpFields(
        ok=np.zeros(n, bool),
        ver=np.zeros(n, np.uint8),
        proto=np.zeros(n, np.int64),
        src_hi=np.zeros(n, np.uint64),
        src_lo=np.zeros(n, np.uint64),
        dst_hi=np.zeros(n, np.uint64),
        dst_lo=np.zeros(n, np.uint64),
        l4pos=pos.copy(),
        ipend=end.copy(),
        frag_off=np.zeros(n, np.int64),
        more_frags=np.zeros(n, bool),
        frag_id=np.zeros(n, np.int64),
    )
    v4 = np.flatnonzero(et == ETH_IPV4)
    if v4.size:
        _ipv4(buf, pos[v4], end[v4], f, v4)
    v6 = np.flatnonzero(et == ETH_IPV6)
    if v6.size:
        _ipv6(buf, pos[v6], end[v6], f, v6)
    return f


def _ipv4(buf: np.ndarray, p: np.ndarray, e: np.ndarray, f: IpFields, idx: np.ndarray) -> None:
    vihl = u8(buf, p)
    ihl = (vihl & 0x0F) * 4
    ok = ((vihl >> 4) == 4) & (ihl >= 20) & (p + ihl <= e)
    total = u16(buf, p + 2)
    # total length 0 appears with TCP segmentation offload: trust the captured frame then.
    ipend = np.where(total >= ihl, np.minimum(p + total, e), e)
    ipend = np.where(total == 0, e, ipend)
    fragw = u16(buf, p + 6)
    f.ok[idx] = ok
    f.ver[idx] = 4
    f.proto[idx] = u8(buf, p + 9)
    f.src_lo[idx] = IPV4_MAPPED_PREFIX | u32(buf, p + 12).astype(np.uint64)
    f.dst_lo[idx] = IPV4_MAPPED_PREFIX | u32(buf, p + 16).astype(np.uint64)
    f.l4pos[idx] = p + ihl
    f.ipend[idx] = ipend
    f.frag_off[idx] = (fragw & 0x1FFF) * 8
    f.more_frags[idx] = (fragw & 0x2000) != 0
    f.frag_id[idx] = u16(buf, p + 4)


def _ipv6(buf: np.ndarray, p: np.ndarray, e: np.ndarray, f: IpFields, idx: np.ndarray) -> None:
    ok = ((u8(buf, p) >> 4) == 6) & (p + 40 <= e)
    plen = u16(buf, p + 4)
    ipend = np.where(plen > 0, np.minimum(p + 40 + plen, e), e)  # 0 = jumbogram
    nh = u8(buf, p + 6)
    l4 = p + 40
    frag_off = np.zeros(p.shape[0], np.int64)
    more = np.zeros(p.shape[0], bool)
    fid = np.zeros(p.shape[0], np.int64)
    for _ in range(MAX_IPV6_EXT):
        ext = member(nh, IPV6_EXT_LENGTH8) & (l4 + 8 <= ipend)
        frag = (nh == IPV6_FRAGMENT) & (l4 + 8 <= ipend)
        ah = (nh == IPV6_AH) & (l4 + 8 <= ipend)
        if not (ext.any() or frag.any() or ah.any()):
            break
        nxt = u8(buf, l4)
        hdr_len = np.where(ext, (u8(buf, l4 + 1) + 1) * 8, np.where(ah, (u8(buf, l4 + 1) + 2) * 4, 8))
        if frag.any():
            fo = u16(buf, l4 + 2)
            frag_off = np.where(frag, (fo >> 3) * 8, frag_off)
            more = np.where(frag, (fo & 1) != 0, more)
            fid = np.where(frag, u32(buf, l4 + 4), fid)
        step = ext | frag | ah
        nh = np.where(step, nxt, nh)
        l4 = np.where(step, l4 + hdr_len, l4)
    f.ok[idx] = ok & (l4 <= ipend)
    f.ver[idx] = 6
    f.proto[idx] = nh
    f.src_hi[idx] = u64_be(buf, p + 8)
    f.src_lo[idx] = u64_be(buf, p + 16)
    f.dst_hi[idx] = u64_be(buf, p + 24)
    f.dst_lo[idx] = u64_be(buf, p + 32)
    f.l4pos[idx] = l4
    f.ipend[idx] = ipend
    f.frag_off[idx] = frag_off
    f.more_frags[idx] = more
    f.frag_id[idx] = fid
