"""Build pcap and pcapng files in memory (pure functions returning bytes).

Used to make synthetic captures for tests and demos: classic pcap in either byte order with
micro- or nanosecond timestamps; pcapng blocks (SHB, IDB with if_tsresol, EPB, SPB, OPB, any
other block) that callers concatenate into one or several sections; gzip.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterable, Sequence

# A frame to write: (timestamp in integer nanoseconds, captured bytes[, original length]).
Frame = tuple[int, bytes] | tuple[int, bytes, int]

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_BOM = 0x1A2B3C4D
BT_SHB, BT_IDB, BT_OPB, BT_SPB, BT_EPB = 0x0A0D0D0A, 1, 2, 3, 6


def _order(big: bool) -> str:
    return ">" if big else "<"


def pcap_bytes(
    frames: Iterable[Frame],
    linktype: int = 1,
    *,
    big_endian: bool = False,
    nanosecond: bool = False,
    snaplen: int = 262144,
    version: tuple[int, int] = (2, 4),
) -> bytes:
    """A classic pcap file; caplen is len(data), the wire length defaults to it."""
    o = _order(big_endian)
    magic = PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US
    out = [struct.pack(o + "IHHiIII", magic, version[0], version[1], 0, 0, snaplen, linktype)]
    unit = 1 if nanosecond else 1000
    for fr in frames:
        ts, data = fr[0], bytes(fr[1])
        wire = fr[2] if len(fr) > 2 else len(data)  # type: ignore[misc]
        sec, frac = divmod(ts, 1_000_000_000)
        out.append(struct.pack(o + "IIII", sec, frac // unit, len(data), wire))
        out.append(data)
    return b"".join(out)


def pcap_record(
    ts_ns: int, data: bytes, wirelen: int | None = None, *, big_endian: bool = False, caplen: int | None = None
) -> bytes:
    """One classic pcap record (header + data); `caplen` may lie, to build damaged files."""
    o = _order(big_endian)
    sec, frac = divmod(ts_ns, 1_000_000_000)
    cap = len(data) if caplen is None else caplen
    return struct.pack(o + "IIII", sec, frac // 1000, cap, len(data) if wirelen is None else wirelen) + data


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def block(btype: int, body: bytes, *, big_endian: bool = False, length: int | None = None) -> bytes:
    """Any pcapng block: type, total length, body (padded), total length again.

    `length` overrides both length fields (to build damaged files)."""
    o = _order(big_endian)
    body = _pad4(body)
    total = 12 + len(body) if length is None else length
    return struct.pack(o + "II", btype, total) + body + struct.pack(o + "I", total)


def options(opts: Sequence[tuple[int, bytes]], *, big_endian: bool = False) -> bytes:
    """An options list ending in opt_endofopt (empty input gives no options at all)."""
    if not opts:
        return b""
    o = _order(big_endian)
    out = b"".join(struct.pack(o + "HH", code, len(v)) + _pad4(v) for code, v in opts)
    return out + struct.pack(o + "HH", 0, 0)


def shb(*, big_endian: bool = False, opts: Sequence[tuple[int, bytes]] = ()) -> bytes:
    o = _order(big_endian)
    body = struct.pack(o + "IHHq", PCAPNG_BOM, 1, 0, -1) + options(opts, big_endian=big_endian)
    return block(BT_SHB, body, big_endian=big_endian)


def idb(
    linktype: int,
    *,
    snaplen: int = 0,
    tsresol: int | None = None,
    tsoffset_s: int | None = None,
    name: str | None = None,
    big_endian: bool = False,
) -> bytes:
    """Interface Description Block; `tsresol` is the raw if_tsresol byte (0x80 bit = base 2)."""
    o = _order(big_endian)
    opts: list[tuple[int, bytes]] = []
    if name is not None:
        opts.append((2, name.encode()))
    if tsresol is not None:
        opts.append((9, bytes([tsresol])))
    if tsoffset_s is not None:
        opts.append((14, struct.pack(o + "q", tsoffset_s)))
    body = struct.pack(o + "HHI", linktype, 0, snaplen) + options(opts, big_endian=big_endian)
    return block(BT_IDB, body, big_endian=big_endian)


def ts_units(ts_ns: int, tsresol: int | None = None) -> int:
    """A timestamp in an interface's units (default microseconds); exact when representable."""
    r = 6 if tsresol is None else tsresol
    if r & 0x80:
        return (ts_ns << (r & 0x7F)) // 1_000_000_000
    exp = r & 0x7F
    return ts_ns * 10**exp // 1_000_000_000 if exp >= 9 else ts_ns // 10 ** (9 - exp)


def epb(
    iface: int,
    ts: int,
    data: bytes,
    wirelen: int | None = None,
    *,
    big_endian: bool = False,
    caplen: int | None = None,
    opts: Sequence[tuple[int, bytes]] = (),
) -> bytes:
    """Enhanced Packet Block; `ts` is already in the interface's units (see ts_units)."""
    o = _order(big_endian)
    cap = len(data) if caplen is None else caplen
    wire = len(data) if wirelen is None else wirelen
    head = struct.pack(o + "IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, cap, wire)
    return block(BT_EPB, head + _pad4(data) + options(opts, big_endian=big_endian), big_endian=big_endian)


def spb(data: bytes, wirelen: int | None = None, *, big_endian: bool = False) -> bytes:
    """Simple Packet Block (no interface id, no timestamp; interface 0 is implied)."""
    o = _order(big_endian)
    return block(BT_SPB, struct.pack(o + "I", len(data) if wirelen is None else wirelen) + data, big_endian=big_endian)


def opb(iface: int, ts: int, data: bytes, wirelen: int | None = None, *, big_endian: bool = False) -> bytes:
    """Obsolete Packet Block (16-bit interface id and drops count)."""
    o = _order(big_endian)
    wire = len(data) if wirelen is None else wirelen
    head = struct.pack(o + "HHIIII", iface, 0, ts >> 32, ts & 0xFFFFFFFF, len(data), wire)
    return block(BT_OPB, head + data, big_endian=big_endian)


def pcapng_bytes(
    frames: Iterable[Frame], linktype: int = 1, *, big_endian: bool = False, tsresol: int | None = None
) -> bytes:
    """A one-section, one-interface pcapng file of Enhanced Packet Blocks."""
    parts = [shb(big_endian=big_endian), idb(linktype, tsresol=tsresol, big_endian=big_endian)]
    for fr in frames:
        wire = fr[2] if len(fr) > 2 else None  # type: ignore[misc]
        parts.append(epb(0, ts_units(fr[0], tsresol), bytes(fr[1]), wire, big_endian=big_endian))
    return b"".join(parts)


def gzip_bytes(data: bytes) -> bytes:
    """gzip-compress a capture (mtime fixed so the output is reproducible)."""
    return gzip.compress(data, mtime=0)
