"""Split one large capture into byte ranges at record boundaries and scan them in parallel.

Boundaries are exact, not guessed: the record (pcap) or block (pcapng) headers are walked once
with the reader's compiled walker over a memory map, which touches only the headers. Each range
is handed to a worker as a self-contained stream: the pcap file header, or for pcapng the
current Section Header Block and every Interface Description Block seen so far in that section,
followed by the range's bytes. The parts' partial results combine with `parts.combine_parts`,
so the flows and samples equal those of one sequential pass over the whole file.

Limits (the plan is None and callers scan sequentially): gzip input, fewer records than parts,
a corrupt record header (the sequential reader's resynchronisation is not reproduced). An IP
fragment whose first fragment lies in an earlier range loses its ports, as across a file
rotation: when a later range reports such fragments the capture is rescanned sequentially.
Simple Packet Blocks at a range start get no previous timestamp.
"""

from __future__ import annotations

import io
import itertools
import mmap
import os
import struct
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analyzer.capture import walk
from analyzer.capture.reader import DEFAULT_MAX_CAPLEN, MAX_CAPLEN, WalkOut
from analyzer.capture.sniff import PCAP_MAGICS as SNIFFED_PCAP_MAGICS
from analyzer.capture.sniff import PCAPNG_SHB
from analyzer.scan.chunks import ScanResult, finish_scan, one_pass
from analyzer.scan.parallel import run_ordered
from analyzer.scan.parts import PartScan, combine_parts, merge_infos, scan_part

# magic -> big-endian, from the one table that recognises containers
PCAP_MAGICS = {magic: order == "big" for magic, (order, _exp) in SNIFFED_PCAP_MAGICS.items()}
WALK_STEP = 4096  # records per walker call: the granularity of boundaries
MIN_PART_BYTES = 1 << 20


@dataclass(frozen=True)
class ByteRange:
    """One part: file bytes [start, end) preceded by `preamble` (headers the part needs)."""

    start: int
    end: int
    preamble: bytes


@dataclass(frozen=True)
class SplitPlan:
    path: str
    format: str
    size: int
    ranges: tuple[ByteRange, ...]


class RangeStream(io.RawIOBase):
    """A readable stream of `preamble` + file[start:end], for CaptureReader."""

    def __init__(self, path: str, part: ByteRange):
        self.name = path
        self._head = part.preamble
        self._fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._fh.seek(part.start)
        self._left = part.end - part.start

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        view = memoryview(b).cast("B")
        if self._head:
            k = min(len(self._head), len(view))
            view[:k] = self._head[:k]
            self._head = self._head[k:]
            return k
        if self._left <= 0:
            return 0
        n = self._fh.readinto(view[: min(len(view), self._left)]) or 0
        self._left -= n
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


def plan_split(path: str | os.PathLike, parts: int, min_part_bytes: int = MIN_PART_BYTES) -> SplitPlan | None:
    """Byte ranges at record boundaries, about equal in size; None when the file cannot be split.

    >>> from analyzer.capture.demo import write_demo_capture
    >>> plan = plan_split(write_demo_capture("/tmp/confscope-split-doctest.pcap"), 2, min_part_bytes=1)
    >>> len(plan.ranges), plan.ranges[0].start
    (2, 24)
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    if parts < 2 or size < 2 * min_part_bytes:
        return None
    with open(path, "rb") as fh:
        head = fh.read(4)
        if len(head) < 4 or size < 28:
            return None
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            buf = np.frombuffer(mm, dtype=np.uint8)
            try:
                # Fine steps for small files, so that even they split into `parts` ranges.
                step = int(min(WALK_STEP, max(16, size // (parts * 16384))))
                release = _Release(mm)
                if head in PCAP_MAGICS:
                    ranges = _pcap_ranges(buf, PCAP_MAGICS[head], parts, step, release)
                    fmt = "pcap"
                elif head == PCAPNG_SHB:
                    ranges = _pcapng_ranges(buf, parts, step, release)
                    fmt = "pcapng"
                else:
                    return None
            finally:
                del buf  # the memory map cannot close while a view of it is alive
    if ranges is None or len(ranges) < 2:
        return None
    return SplitPlan(path=path, format=fmt, size=size, ranges=tuple(ranges))


class _Release:
    """Drops the walked pages of the memory map from this process: each record header touches its
    page, and a mapped page counts in the resident set, so walking a 445 MB capture would
    otherwise raise the process's peak RSS by ~200 MB (the pages stay in the page cache)."""

    EVERY = 8 << 20

    def __init__(self, mm: mmap.mmap):
        self.mm = mm
        self.done = 0

    def __call__(self, pos: int) -> None:
        end = pos - pos % mmap.PAGESIZE
        if end - self.done >= self.EVERY and hasattr(mmap, "MADV_DONTNEED"):
            self.mm.madvise(mmap.MADV_DONTNEED, self.done, end - self.done)
            self.done = end


def _targets(start: int, size: int, parts: int) -> list[int]:
    step = (size - start) / parts
    return [int(start + step * k) for k in range(1, parts)]


def _pcap_ranges(buf: np.ndarray, big: bool, parts: int, step: int, release: _Release) -> list[ByteRange] | None:
    order = ">" if big else "<"
    snaplen = struct.unpack_from(order + "I", buf, 16)[0]
    max_caplen = max(DEFAULT_MAX_CAPLEN, snaplen) if 0 < snaplen <= MAX_CAPLEN else DEFAULT_MAX_CAPLEN
    out = WalkOut(step)
    header = bytes(buf[:24])
    cuts = [24]
    targets = _targets(24, len(buf), parts)
    pos = 24
    while targets and pos < len(buf):
        n, pos, status = walk.pcap_walker(buf, pos, len(buf), big, max_caplen, out.off, out.cap, out.wire, out.a, out.b)
        if status == walk.WALK_CORRUPT:
            return None
        if n == 0:
            break
        release(pos)
        if pos >= targets[0] and pos < len(buf):
            cuts.append(pos)
            while targets and targets[0] <= pos:
                targets.pop(0)
    bounds = [*cuts, len(buf)]
    return [ByteRange(a, b, header) for a, b in itertools.pairwise(bounds) if b > a]


def _pcapng_ranges(buf: np.ndarray, parts: int, step: int, release: _Release) -> list[ByteRange] | None:
    out = WalkOut(step)
    targets = _targets(0, len(buf), parts)
    shb = b""
    idbs: list[bytes] = []
    big = False
    pos = 0
    cuts: list[tuple[int, bytes]] = [(0, b"")]  # the first part reads the file from its start
    while pos < len(buf):
        n, nxt, status = walk.pcapng_walker(
            buf, pos, len(buf), big, out.off, out.cap, out.wire, out.a, out.b, out.iface
        )
        if status == walk.WALK_SECTION:
            if nxt + 12 > len(buf):
                return None
            bom = bytes(buf[nxt + 8 : nxt + 12])
            if bom not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
                return None
            big = bom == b"\x1a\x2b\x3c\x4d"
            blen = struct.unpack_from(">I" if big else "<I", buf, nxt + 4)[0]
            if blen < 28 or blen % 4 or nxt + blen > len(buf):
                return None
            shb, idbs = bytes(buf[nxt : nxt + blen]), []
            pos = nxt + blen
            continue
        if status == walk.WALK_INTERFACE:
            blen = struct.unpack_from(">I" if big else "<I", buf, nxt + 4)[0]
            idbs.append(bytes(buf[nxt : nxt + blen]))
            pos = nxt + blen
            continue
        if status == walk.WALK_CORRUPT or not shb:
            return None
        if n == 0:
            break
        pos = nxt
        release(pos)
        if targets and pos >= targets[0] and pos < len(buf):
            cuts.append((pos, shb + b"".join(idbs)))
            while targets and targets[0] <= pos:
                targets.pop(0)
    bounds = [c[0] for c in cuts] + [len(buf)]
    return [ByteRange(bounds[i], bounds[i + 1], cuts[i][1]) for i in range(len(cuts)) if bounds[i + 1] > bounds[i]]


def scan_range(
    path: str, part: ByteRange, chunk_bytes: int | None = None, keep_samples: bool = True, name: str | None = None
) -> PartScan:
    """Scan one byte range (a top-level function, so process pools and Dask can ship it)."""
    stream = RangeStream(path, part)
    try:
        return scan_part(stream, name=name or path, chunk_bytes=chunk_bytes, keep_samples=keep_samples)
    finally:
        stream.close()


def _sequential(path: str, chunk_bytes: int | None, keep_samples: bool, name: str | None) -> ScanResult:
    return finish_scan(one_pass(path, chunk_bytes=chunk_bytes, keep_samples=keep_samples, media=False, name=name))


def scan_split(
    path: str | os.PathLike,
    workers: int = 2,
    *,
    executor: Executor | None = None,
    chunk_bytes: int | None = None,
    min_part_bytes: int = MIN_PART_BYTES,
    keep_samples: bool = True,
    name: str | None = None,
) -> ScanResult:
    """Scan one capture as `workers` byte ranges in parallel; equal to `scan_capture(path)`.

    Falls back to the sequential scan when the file cannot be split (see the module docstring).
    An `executor` (a ProcessPoolExecutor or a Dask `distributed.Client`) is used if given;
    otherwise this process scans the first range and a process pool of `workers - 1` the others.
    No media tap (see analyzer/scan/scanner.py).

    >>> from analyzer.capture.demo import write_demo_capture
    >>> from analyzer.scan.scanner import scan_capture
    >>> p = write_demo_capture("/tmp/confscope-split-doctest.pcap")
    >>> a, b = scan_split(p, 2, min_part_bytes=1), scan_capture(p, workers=1, media=False)
    >>> a.flows.drop(columns="flow_key").equals(b.flows.drop(columns="flow_key"))
    True
    """
    path = os.fspath(path)
    plan = plan_split(path, workers, min_part_bytes)
    if plan is None:
        return _sequential(path, chunk_bytes, keep_samples, name)
    args = [(path, r, chunk_bytes, keep_samples, name) for r in plan.ranges]
    parts = run_ordered(scan_range, args, workers, executor, inline_first=True)
    if any(p.info.skipped.get("ip_fragment_without_first") for p in parts[1:]):
        # A fragment may have lost its first fragment to the previous range: stay exact.
        return _sequential(path, chunk_bytes, keep_samples, name)
    info = merge_infos([p.info for p in parts], name or path, plan.size)
    # Every range repeats the file's headers: the interfaces are those of the whole file.
    if plan.format == "pcapng":
        info.interfaces = _all_interfaces(parts)
    else:
        info.interfaces = list(parts[0].info.interfaces)
    return combine_parts(parts, info)


def _all_interfaces(parts: list[PartScan]) -> list:
    # A range's reader sees the section's earlier IDBs (in its preamble) plus its own: the last
    # part of each section knows them all; parts are in file order.
    out: list = []
    for p in parts:
        ifaces = p.info.interfaces
        if len(ifaces) >= len(out) and all(a is b or a == b for a, b in zip(out, ifaces, strict=False)):
            out = list(ifaces)
        else:
            out += [i for i in ifaces if i not in out]
    return out


def is_splittable(path: str | Path) -> bool:
    """True for an uncompressed pcap or pcapng file (gzip cannot be entered mid-stream)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return head in PCAP_MAGICS or head == PCAPNG_SHB
