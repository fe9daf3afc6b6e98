"""Record walks over a raw buffer: the one inherently sequential step of reading a capture.

Each record's position depends on the previous record's length, so this cannot be vectorised.
A small C extension (`_walk.c`, built at install when a compiler is present) walks records in a
few nanoseconds each; without it the same loops run in Python with `struct` (about 0.4 us per
record). Everything after the walk is vectorised numpy. CONFSCOPE_PURE_PYTHON=1 forces the
Python walkers (the tests check both give identical results).
"""

from __future__ import annotations

import struct

from analyzer.common.compiled import load

# Walk status codes returned to the reader.
WALK_OK = 0  # stopped because the buffer holds no further complete record, or `out` is full
WALK_CORRUPT = 1  # the record header at `pos` is impossible; the reader resynchronises
WALK_SECTION = 2  # pcapng: a Section Header Block starts at `pos`
WALK_INTERFACE = 3  # pcapng: an Interface Description Block starts at `pos`

SPB_IFACE = 0xFFFFFFFF  # marks Simple Packet Blocks, which carry no interface id or timestamp
BAD_RECORD = -1  # caplen marker for a record whose lengths contradict its block

PCAPNG_MAX_BLOCK = 64 * 1024 * 1024


def walk_pcap(buf, pos, end, big, max_caplen, out_off, out_cap, out_wire, out_sec, out_frac):
    """Walk classic pcap records from `pos`; returns (records, next_pos, status)."""
    header = struct.Struct(">IIII" if big else "<IIII").unpack_from
    n = 0
    limit = out_off.shape[0]
    while n < limit and pos + 16 <= end:
        sec, frac, caplen, wire = header(buf, pos)
        if caplen > max_caplen:
            return n, pos, WALK_CORRUPT
        if pos + 16 + caplen > end:
            break
        out_sec[n] = sec
        out_frac[n] = frac
        out_cap[n] = caplen
        out_wire[n] = wire
        out_off[n] = pos + 16
        pos += 16 + caplen
        n += 1
    return n, pos, WALK_OK


def walk_pcapng(buf, pos, end, big, out_off, out_cap, out_wire, out_tshi, out_tslo, out_iface):
    """Walk pcapng packet blocks from `pos` until a block that needs Python (SHB, IDB)."""
    order = ">" if big else "<"
    u32 = struct.Struct(order + "I").unpack_from
    epb = struct.Struct(order + "IIIII").unpack_from
    opb = struct.Struct(order + "HHIIII").unpack_from
    n = 0
    limit = out_off.shape[0]
    while n < limit and pos + 12 <= end:
        btype = u32(buf, pos)[0]
        if btype == 0x0A0D0D0A:
            # Checked before the length: a new section may switch byte order.
            return n, pos, WALK_SECTION
        blen = u32(buf, pos + 4)[0]
        if blen < 12 or blen % 4 != 0 or blen > PCAPNG_MAX_BLOCK:
            return n, pos, WALK_CORRUPT
        if pos + blen > end:
            break
        if u32(buf, pos + blen - 4)[0] != blen:
            return n, pos, WALK_CORRUPT
        if btype == 1:
            return n, pos, WALK_INTERFACE
        if btype == 6 or btype == 2:
            if blen < 32:
                return n, pos, WALK_CORRUPT
            if btype == 6:
                iface, hi, lo, caplen, wire = epb(buf, pos + 8)
            else:
                iface, _drops, hi, lo, caplen, wire = opb(buf, pos + 8)
            out_iface[n] = iface
            out_tshi[n] = hi
            out_tslo[n] = lo
            out_wire[n] = wire
            out_off[n] = pos + 28
            out_cap[n] = BAD_RECORD if caplen > blen - 32 else caplen
            n += 1
        elif btype == 3:
            if blen < 16:
                return n, pos, WALK_CORRUPT
            wire = u32(buf, pos + 8)[0]
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


def _select():
    walk = load("analyzer.capture._walk")
    if walk is None:
        return walk_pcap, walk_pcapng, False
    return walk.walk_pcap, walk.walk_pcapng, True


pcap_walker, pcapng_walker, COMPILED = _select()
