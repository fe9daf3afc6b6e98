"""Record walks over a raw buffer: the one inherently sequential step of reading a capture.

Each record's position depends on the previous record's length, so this cannot be vectorised.
The walkers are written in the subset of Python that numba compiles; when numba is installed
(`confscope[fast]`) they run compiled, otherwise the same loops run as plain Python (about
1-2 us per record instead of ~5 ns). Everything after the walk is vectorised numpy.
"""

from __future__ import annotations

import os

import numpy as np

# Walk status codes returned to the reader.
WALK_OK = 0  # stopped because the buffer holds no further complete record, or `out` is full
WALK_CORRUPT = 1  # the record header at `pos` is impossible; the reader resynchronises
WALK_SECTION = 2  # pcapng: a Section Header Block starts at `pos`
WALK_INTERFACE = 3  # pcapng: an Interface Description Block starts at `pos`

SPB_IFACE = 0xFFFFFFFF  # marks Simple Packet Blocks, which carry no interface id or timestamp
BAD_RECORD = -1  # caplen marker for a record whose lengths contradict its block

PCAPNG_MAX_BLOCK = 64 * 1024 * 1024


def _u32(buf, p, big):
    if big:
        return (np.uint32(buf[p]) << 24) | (np.uint32(buf[p + 1]) << 16) | (np.uint32(buf[p + 2]) << 8) | np.uint32(
            buf[p + 3]
        )
    return (np.uint32(buf[p + 3]) << 24) | (np.uint32(buf[p + 2]) << 16) | (np.uint32(buf[p + 1]) << 8) | np.uint32(
        buf[p]
    )


def _u16(buf, p, big):
    if big:
        return (np.uint32(buf[p]) << 8) | np.uint32(buf[p + 1])
    return (np.uint32(buf[p + 1]) << 8) | np.uint32(buf[p])


def walk_pcap(buf, pos, end, big, max_caplen, out_off, out_cap, out_wire, out_sec, out_frac):
    """Walk classic pcap records from `pos`; returns (records, next_pos, status)."""
    n = 0
    limit = out_off.shape[0]
    while n < limit and pos + 16 <= end:
        caplen = _u32(buf, pos + 8, big)
        if caplen > max_caplen:
            return n, pos, WALK_CORRUPT
        if pos + 16 + caplen > end:
            break
        out_sec[n] = _u32(buf, pos, big)
        out_frac[n] = _u32(buf, pos + 4, big)
        out_cap[n] = caplen
        out_wire[n] = _u32(buf, pos + 12, big)
        out_off[n] = pos + 16
        pos += 16 + caplen
        n += 1
    return n, pos, WALK_OK


def walk_pcapng(buf, pos, end, big, out_off, out_cap, out_wire, out_tshi, out_tslo, out_iface):
    """Walk pcapng packet blocks from `pos` until a block that needs Python (SHB, IDB)."""
    n = 0
    limit = out_off.shape[0]
    while n < limit and pos + 12 <= end:
        btype = _u32(buf, pos, big)
        if btype == 0x0A0D0D0A:
            # Checked before the length: a new section may switch byte order.
            return n, pos, WALK_SECTION
        blen = _u32(buf, pos + 4, big)
        if blen < 12 or blen % 4 != 0 or blen > PCAPNG_MAX_BLOCK:
            return n, pos, WALK_CORRUPT
        if pos + blen > end:
            break
        if _u32(buf, pos + blen - 4, big) != blen:
            return n, pos, WALK_CORRUPT
        if btype == 1:
            return n, pos, WALK_INTERFACE
        if btype == 6 or btype == 2:
            if blen < 32:
                return n, pos, WALK_CORRUPT
            if btype == 6:
                iface = _u32(buf, pos + 8, big)
            else:
                iface = _u16(buf, pos + 8, big)
            caplen = _u32(buf, pos + 20, big)
            out_iface[n] = iface
            out_tshi[n] = _u32(buf, pos + 12, big)
            out_tslo[n] = _u32(buf, pos + 16, big)
            out_wire[n] = _u32(buf, pos + 24, big)
            out_off[n] = pos + 28
            if caplen > blen - 32:
                out_cap[n] = BAD_RECORD
            else:
                out_cap[n] = caplen
            n += 1
        elif btype == 3:
            if blen < 16:
                return n, pos, WALK_CORRUPT
            wire = _u32(buf, pos + 8, big)
            room = blen - 16
            out_iface[n] = SPB_IFACE
            out_tshi[n] = 0
            out_tslo[n] = 0
            out_wire[n] = wire
            out_off[n] = pos + 12
            out_cap[n] = wire if wire < room else room
            n += 1
        pos += blen
    return n, pos, WALK_OK


def _compile():
    if os.environ.get("CONFSCOPE_NO_NUMBA"):
        return walk_pcap, walk_pcapng, False
    try:
        import numba
    except Exception:
        return walk_pcap, walk_pcapng, False
    global _u32, _u16
    # The helpers must be jitted first so the walkers can inline them.
    _u32 = numba.njit(cache=True, inline="always")(_u32)
    _u16 = numba.njit(cache=True, inline="always")(_u16)
    return numba.njit(cache=True)(walk_pcap), numba.njit(cache=True)(walk_pcapng), True


pcap_walker, pcapng_walker, COMPILED = _compile()
