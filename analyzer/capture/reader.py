"""Read pcap and pcapng containers into FrameChunks of bounded size.

Memory stays bounded: the file is read in buffers of `chunk_bytes`, records are indexed by the
(compiled) walk, and each chunk is handed on before the next buffer is filled.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from analyzer.capture import walk
from analyzer.capture.model import CaptureInfo, FrameChunk, Interface
from analyzer.capture.sniff import sniff
from analyzer.capture.source import (
    MAX_GUNZIP_BYTES,
    MAX_GUNZIP_RATIO,
    BoundedGunzip,
    CaptureSource,
    GzipBombError,
    open_binary,
    source_name,
)
from analyzer.errors import CaptureFormatError

DEFAULT_CHUNK_BYTES = 8 * 1024 * 1024
MAX_CAPLEN = 16 * 1024 * 1024  # no link layer carries frames this large; beyond it a header is corrupt
DEFAULT_MAX_CAPLEN = 262144  # libpcap's MAXIMUM_SNAPLEN
MAX_RESYNC_EVENTS = 10000
RESYNC_WARNINGS = 20  # corrupt records described one by one; later ones are only counted
RECORDS_PER_WALK = 65536


class CaptureReader:
    """Iterate a capture as FrameChunks; `info` fills in as chunks are read."""

    def __init__(
        self,
        source: CaptureSource,
        *,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        name: str | None = None,
        max_gunzip_bytes: int = MAX_GUNZIP_BYTES,
        max_gunzip_ratio: int = MAX_GUNZIP_RATIO,
    ):
        """`max_gunzip_bytes` / `max_gunzip_ratio`: bounds of a gzip-compressed capture's
        expansion (analyzer/capture/source.py); reading stops there with a warning."""
        self.name = name or source_name(source)
        self.chunk_bytes = max(int(chunk_bytes), 4096)
        self._raw, size = open_binary(source)
        # Standard input (`-`) is the process's, not ours to close.
        self._owns = not hasattr(source, "read") and source_name(source) != "stdin"
        self.info = CaptureInfo(path=self.name, file_bytes=max(size, 0))
        try:
            head = self._peek(24)
            kind = sniff(head, self.name)
            if kind.format == "gzip":
                self.info.compressed = "gzip"
                # The sniffed bytes were consumed from the raw stream: hand them back to gzip.
                self._stream: BinaryIO = BoundedGunzip(  # type: ignore[assignment]
                    _Prefixed(head, self._raw), max_gunzip_bytes, max_gunzip_ratio
                )
                try:
                    head = self._stream_peek(24)
                except (OSError, EOFError) as exc:
                    raise CaptureFormatError(f"{self.name}: gzip stream unreadable ({exc})") from None
                kind = sniff(head, self.name)
                if kind.format == "gzip":
                    raise CaptureFormatError(f"{self.name}: nested gzip is not supported")
            else:
                self._stream = self._raw
                self._pending = head
        except BaseException:
            self.close()
            raise
        self.format = kind.format
        self.info.format = kind.format
        self.info.byte_order = kind.byte_order
        self._big = kind.byte_order == "big"
        self._ts_exp = kind.ts_exp
        self._bytes_read = 0
        self._frame_no = 1

    # -- low-level reading -------------------------------------------------------------------
    def _peek(self, n: int) -> bytes:
        try:
            data = self._raw.read(n)
        except OSError as exc:  # a device error, /proc file, dead network mount: the user's input
            raise CaptureFormatError(f"{self.name}: cannot read ({exc.strerror or exc})") from None
        return data or b""

    def _stream_peek(self, n: int) -> bytes:
        data = self._stream.read(n) or b""
        self._pending = data
        return data

    def _read_into(self, view: memoryview) -> int:
        """Fill `view` from the pending bytes and the stream; 0 means end of file."""
        filled = 0
        if self._pending:
            k = min(len(self._pending), len(view))
            view[:k] = self._pending[:k]
            self._pending = self._pending[k:]
            filled = k
        while filled < len(view):
            try:
                n = self._stream.readinto(view[filled:])
            except GzipBombError as exc:
                self.info.warn(f"stopped reading: {exc}")
                self.info.truncated = True
                return filled
            except (OSError, EOFError) as exc:
                self.info.warn(f"stopped reading: compressed stream damaged ({exc})")
                self.info.truncated = True
                return filled
            if not n:
                break
            filled += n
        self._bytes_read += filled
        return filled

    def close(self) -> None:
        if getattr(self, "_stream", None) is not None and self._stream is not self._raw:
            self._stream.close()
        if self._owns:
            self._raw.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- buffered record loop ----------------------------------------------------------------
    def chunks(self) -> Iterator[FrameChunk]:
        """Yield chunks of frames in file order."""
        if self.format == "pcap":
            yield from self._pcap_chunks()
        else:
            yield from self._pcapng_chunks()

    def _buffers(self, carry: np.ndarray) -> tuple[np.ndarray, bool]:
        """A new buffer that starts with `carry` and is topped up from the stream; True at the end."""
        size = max(self.chunk_bytes, len(carry) * 2)
        buf = np.empty(size, dtype=np.uint8)
        buf[: len(carry)] = carry
        room = size - len(carry)
        got = self._read_into(memoryview(buf)[len(carry) :])
        have = len(carry) + got
        # _read_into only returns short at the end of the stream (or when reading had to stop).
        return buf[:have], got < room

    # -- classic pcap --------------------------------------------------------------------------
    def _pcap_chunks(self) -> Iterator[FrameChunk]:
        header = bytearray(24)
        if self._read_into(memoryview(header)) < 24:
            raise CaptureFormatError(f"{self.name}: pcap file header truncated")
        order = ">" if self._big else "<"
        _magic, vmaj, vmin, _tz, _sig, snaplen, network = struct.unpack(order + "IHHiIII", bytes(header))
        linktype = network & 0x0FFFFFFF
        # FCS bits (28-31) say frames end with a checksum; their length is part of caplen anyway.
        self.info.ts_resolution = "ns" if self._ts_exp == 9 else "us"
        self.info.interfaces.append(Interface(linktype=linktype, snaplen=snaplen, tsresol_exp=self._ts_exp))
        if (vmaj, vmin) != (2, 4):
            self.info.warn(f"pcap version {vmaj}.{vmin} (expected 2.4); reading anyway")
        max_caplen = max(DEFAULT_MAX_CAPLEN, snaplen) if 0 < snaplen <= MAX_CAPLEN else DEFAULT_MAX_CAPLEN
        frac_scale = 1 if self._ts_exp == 9 else 1000
        out = WalkOut(RECORDS_PER_WALK)
        carry = np.empty(0, dtype=np.uint8)
        file_off = 24
        resyncs = 0
        last_sec: int | None = None
        eof = False
        while True:
            buf, eof = self._buffers(carry)
            pos = 0
            while True:
                n, pos, status = walk.pcap_walker(
                    buf, pos, len(buf), self._big, max_caplen, out.off, out.cap, out.wire, out.a, out.b
                )
                if n:
                    sec = out.a[:n].astype(np.int64)
                    last_sec = int(sec[-1])
                    ts = sec * 1_000_000_000 + out.b[:n].astype(np.int64) * frac_scale
                    chunk = self._make_chunk(buf, out, n, ts, np.full(n, linktype, dtype=np.int32))
                    yield chunk
                if status == walk.WALK_CORRUPT:
                    resyncs += 1
                    if resyncs > MAX_RESYNC_EVENTS:
                        self._give_up(file_off + pos)
                        return
                    nxt = _pcap_resync(buf, pos + 1, self._big, max_caplen, self._ts_exp, last_sec, eof)
                    skipped = (nxt if nxt is not None else len(buf)) - pos
                    self._note_resync("pcap record header", file_off + pos, skipped)
                    if nxt is None:
                        pos = len(buf)
                        break
                    pos = nxt
                    continue
                if n == 0 or pos >= len(buf):
                    break
            carry = buf[pos:].copy()
            file_off += pos
            if eof:
                if len(carry):
                    self._note_truncated(file_off, len(carry))
                return
            if len(carry) >= self.chunk_bytes:
                # A single record bigger than the buffer: let the next buffer grow to fit it.
                self.chunk_bytes = len(carry) * 2

    # -- pcapng -----------------------------------------------------------------------------
    def _pcapng_chunks(self) -> Iterator[FrameChunk]:
        out = WalkOut(RECORDS_PER_WALK)
        carry = np.empty(0, dtype=np.uint8)
        file_off = 0
        section_base = 0
        resyncs = 0
        eof = False
        last_ts = 0
        self.info.ts_resolution = "per-interface"
        while True:
            buf, eof = self._buffers(carry)
            pos = 0
            need_more = False
            while pos < len(buf):
                n, pos, status = walk.pcapng_walker(
                    buf, pos, len(buf), self._big, out.off, out.cap, out.wire, out.a, out.b, out.iface
                )
                if n:
                    chunk, last_ts = self._pcapng_chunk(buf, out, n, section_base, last_ts)
                    if chunk is not None:
                        yield chunk
                if status == walk.WALK_SECTION:
                    parsed = self._parse_shb(buf, pos)
                    if parsed is None:
                        need_more = True
                        break
                    if parsed < 0:
                        status = walk.WALK_CORRUPT
                    else:
                        section_base = len(self.info.interfaces)
                        pos = parsed
                        continue
                elif status == walk.WALK_INTERFACE:
                    pos = self._parse_idb(buf, pos)
                    continue
                if status == walk.WALK_CORRUPT:
                    resyncs += 1
                    if resyncs > MAX_RESYNC_EVENTS:
                        self._give_up(file_off + pos)
                        return
                    nxt = _pcapng_resync(buf, pos + 4, self._big)
                    skipped = (nxt if nxt is not None else len(buf)) - pos
                    self._note_resync("pcapng block", file_off + pos, skipped)
                    pos = nxt if nxt is not None else len(buf)
                    continue
                if n == 0:
                    need_more = True
                    break
            carry = buf[pos:].copy()
            file_off += pos
            if eof:
                if len(carry):
                    self._note_truncated(file_off, len(carry))
                return
            if need_more and len(carry) >= self.chunk_bytes:
                self.chunk_bytes = len(carry) * 2

    def _parse_shb(self, buf: np.ndarray, pos: int) -> int | None:
        """Parse a Section Header Block; returns the next position, None if incomplete, -1 if bad."""
        if pos + 12 > len(buf):
            return None
        bom = bytes(buf[pos + 8 : pos + 12])
        if bom == b"\x4d\x3c\x2b\x1a":
            big = False
        elif bom == b"\x1a\x2b\x3c\x4d":
            big = True
        else:
            return -1
        blen = struct.unpack_from(">I" if big else "<I", buf, pos + 4)[0]
        if blen < 28 or blen % 4 or blen > walk.PCAPNG_MAX_BLOCK:
            return -1
        if pos + blen > len(buf):
            return None
        if self.info.byte_order and self.info.byte_order != ("big" if big else "little"):
            self.info.warn("pcapng sections use both byte orders")
        self._big = big
        self.info.byte_order = self.info.byte_order or ("big" if big else "little")
        return pos + blen

    def _parse_idb(self, buf: np.ndarray, pos: int) -> int:
        order = ">" if self._big else "<"
        _btype, blen = struct.unpack_from(order + "II", buf, pos)
        iface = Interface(linktype=0, snaplen=0, tsresol_exp=6)
        if blen >= 20:
            linktype, _res, snaplen = struct.unpack_from(order + "HHI", buf, pos + 8)
            iface.linktype, iface.snaplen = linktype, snaplen
            for code, value in _options(bytes(buf[pos + 16 : pos + blen - 4]), order):
                if code == 9 and value:
                    resol = value[0]
                    iface.tsresol_base = 2 if resol & 0x80 else 10
                    iface.tsresol_exp = resol & 0x7F
                elif code == 14 and len(value) >= 8:
                    offset = struct.unpack(order + "q", value[:8])[0]
                    # Beyond ~270 years the nanosecond timestamps would overflow: a damaged option.
                    if abs(offset) < 1 << 33:
                        iface.tsoffset_s = offset
                    else:
                        self.info.warn(f"interface {len(self.info.interfaces)}: absurd if_tsoffset ignored")
                elif code == 2:
                    iface.name = value.decode("utf-8", "replace")[:64]
        else:
            self.info.warn(f"interface description block too short ({blen} bytes)")
        absurd = iface.tsresol_exp > (18 if iface.tsresol_base == 10 else 62)
        if absurd:
            self.info.warn(f"interface {len(self.info.interfaces)}: absurd if_tsresol; assuming microseconds")
            iface.tsresol_base, iface.tsresol_exp = 10, 6
        self.info.interfaces.append(iface)
        return pos + blen

    def _pcapng_chunk(
        self, buf: np.ndarray, out: WalkOut, n: int, section_base: int, last_ts: int
    ) -> tuple[FrameChunk | None, int]:
        local = out.iface[:n].astype(np.int64)
        spb = local == walk.SPB_IFACE
        local[spb] = 0
        gidx = local + section_base
        n_ifaces = len(self.info.interfaces)
        bad_iface = gidx >= n_ifaces
        bad_rec = out.cap[:n] == walk.BAD_RECORD
        keep = ~(bad_iface | bad_rec)
        if bad_iface.any():
            self.info.skipped["bad_interface_id"] += int(bad_iface.sum())
            self.info.warn("packet blocks name interfaces that were never described; they are skipped")
        if bad_rec.any():
            self.info.skipped["bad_record_length"] += int(bad_rec.sum())
            self.info.warn("packet blocks whose captured length exceeds the block; they are skipped")
        raw = (out.a[:n].astype(np.uint64) << np.uint64(32)) | out.b[:n].astype(np.uint64)
        ts = np.zeros(n, dtype=np.int64)
        linktype = np.zeros(n, dtype=np.int32)
        gidx_c = np.where(keep, gidx, 0)
        for g in np.unique(gidx_c[keep]):
            iface = self.info.interfaces[int(g)]
            sel = keep & (gidx_c == g)
            ts[sel] = _to_ns(raw[sel], iface)
            linktype[sel] = iface.linktype
            if iface.snaplen and iface.snaplen < MAX_CAPLEN:
                over = sel & spb & (out.cap[:n] > iface.snaplen)
                out.cap[:n][over] = iface.snaplen
        if spb.any():
            # Simple Packet Blocks carry no timestamp: give them the previous packet's time.
            ts[spb] = 0
            filled = np.maximum.accumulate(np.where(spb, 0, ts))
            ts[spb] = np.where(filled[spb] > 0, filled[spb], last_ts)
            self.info.warn("simple packet blocks carry no timestamps; the previous packet's time is used")
        if not keep.any():
            return None, last_ts
        idx = np.flatnonzero(keep)
        chunk = self._make_chunk(buf, out, n, ts, linktype, idx)
        return chunk, int(ts[idx[-1]])

    def _make_chunk(
        self,
        buf: np.ndarray,
        out: WalkOut,
        n: int,
        ts: np.ndarray,
        linktype: np.ndarray,
        idx: np.ndarray | None = None,
    ) -> FrameChunk:
        sel = slice(0, n) if idx is None else idx
        cap = out.cap[:n][sel].astype(np.int32)
        wire = out.wire[:n][sel].astype(np.int64)
        absurd = wire > MAX_CAPLEN
        if absurd.any():
            # No link carries frames this long: a damaged header, not traffic. Count what we hold.
            wire = np.where(absurd, cap, wire)
            self.info.warn("records claim wire lengths above 16 MiB; their captured length is used instead")
        small = wire < cap
        if small.any():
            # A wire length below the captured length is impossible; trust the bytes we hold.
            wire = np.where(small, cap, wire)
            self.info.warn("records whose wire length is below their captured length; the captured length is used")
        count = int(cap.shape[0])
        chunk = FrameChunk(
            buf=buf,
            data_off=out.off[:n][sel].astype(np.int64),
            caplen=cap,
            wirelen=np.minimum(wire, 2**31 - 1).astype(np.int32),
            ts_ns=np.asarray(ts[sel], dtype=np.int64),
            linktype=np.asarray(linktype[sel], dtype=np.int32),
            frame_no=np.arange(self._frame_no, self._frame_no + count, dtype=np.int64),
            bytes_read=self._bytes_read,
        )
        self._frame_no += count
        self.info.note_frames(chunk)
        return chunk

    def _note_truncated(self, file_off: int, nbytes: int) -> None:
        self.info.truncated = True
        self.info.skipped["truncated_record"] += 1
        self.info.warn(f"capture truncated: the last record at byte {file_off} is incomplete ({nbytes} bytes ignored)")

    def _note_resync(self, what: str, file_off: int, skipped: int) -> None:
        self.info.skipped["corrupt_record"] += 1
        events = self.info.skipped["corrupt_record"]
        if events <= RESYNC_WARNINGS:
            self.info.warn(f"corrupt {what} at byte {file_off}: skipped {skipped} bytes to resynchronise")
        elif events == RESYNC_WARNINGS + 1:
            self.info.warn(f"more corrupt records after byte {file_off}; further ones are only counted")

    def _give_up(self, file_off: int) -> None:
        self.info.truncated = True
        self.info.warn(
            f"too many corrupt records (cap of {MAX_RESYNC_EVENTS} resynchronisations); stopped reading at byte "
            f"{file_off}",
            force=True,
        )


class _Prefixed(io.RawIOBase):
    """`head` followed by the rest of `raw`, for streams that cannot seek back (pipes)."""

    def __init__(self, head: bytes, raw: BinaryIO):
        self._head = head
        self._raw = raw
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        if self._head:
            k = min(len(self._head), len(b))
            b[:k] = self._head[:k]
            self._head = self._head[k:]
        else:
            data = self._raw.read(len(b)) or b""
            k = len(data)
            b[:k] = data
        self._pos += k
        return k

    def tell(self) -> int:
        return self._pos


class WalkOut:
    """Reusable output arrays for one walker call."""

    def __init__(self, size: int):
        self.off = np.empty(size, dtype=np.int64)
        self.cap = np.empty(size, dtype=np.int64)
        self.wire = np.empty(size, dtype=np.int64)
        self.a = np.empty(size, dtype=np.uint32)
        self.b = np.empty(size, dtype=np.uint32)
        self.iface = np.empty(size, dtype=np.uint32)


def _to_ns(raw: np.ndarray, iface: Interface) -> np.ndarray:
    """Convert pcapng timestamps in interface units to integer nanoseconds since the epoch."""
    exp = iface.tsresol_exp
    if iface.tsresol_base == 10:
        if exp <= 9:
            ns = raw.astype(np.int64) * np.int64(10 ** (9 - exp))
        else:
            ns = (raw // np.uint64(10 ** (exp - 9))).astype(np.int64)
    else:
        sec = (raw >> np.uint64(exp)).astype(np.int64)
        frac = (raw & np.uint64((1 << exp) - 1)).astype(np.float64)
        ns = sec * 1_000_000_000 + np.round(frac * 1e9 / float(1 << exp)).astype(np.int64)
    return ns + np.int64(iface.tsoffset_s) * 1_000_000_000


def _options(data: bytes, order: str) -> Iterator[tuple[int, bytes]]:
    pos = 0
    while pos + 4 <= len(data):
        code, length = struct.unpack_from(order + "HH", data, pos)
        if code == 0:
            return
        value = data[pos + 4 : pos + 4 + length]
        yield code, value
        pos += 4 + length + (-length % 4)


def _u32_at(buf: np.ndarray, start: int, count: int, big: bool) -> np.ndarray:
    """32-bit fields at every byte offset start..start+count-1 (for resynchronisation scans)."""
    b = [buf[start + k : start + k + count].astype(np.uint32) for k in range(4)]
    if big:
        return (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]
    return (b[3] << 24) | (b[2] << 16) | (b[1] << 8) | b[0]


RESYNC_FIRST_WINDOW = 256
RESYNC_MAX_WINDOW = 1 << 20


def _windows(start: int, end: int):
    """Growing scan windows from `start`: a resynchronisation usually lands close by, so the work
    per event is proportional to the distance skipped, not to the rest of the buffer."""
    pos, size = start, RESYNC_FIRST_WINDOW
    while pos < end:
        stop = min(pos + size, end)
        yield pos, stop - pos
        pos = stop
        size = min(size * 2, RESYNC_MAX_WINDOW)


def _pcap_resync(
    buf: np.ndarray, start: int, big: bool, max_caplen: int, ts_exp: int, last_sec: int | None, eof: bool
) -> int | None:
    """Offset of the next plausible record header at or after `start`, or None.

    A candidate is confirmed by a plausible header right after its record (or the end of file);
    one whose successor lies beyond the buffer is taken tentatively and re-checked by the walk.
    """
    header = struct.Struct(">IIII" if big else "<IIII")
    limit = 10**ts_exp

    def plausible(sec: int, frac: int, cap: int, wire: int) -> bool:
        # Zero-length records are padding, not frames: accepting them would also anchor the
        # timestamp window at second 0 and reject every real record after them.
        near = last_sec is None or abs(sec - last_sec) <= 7 * 86400
        return 0 < cap <= max_caplen and cap <= wire <= MAX_CAPLEN and frac < limit and near

    last = len(buf) - 16
    for pos, count in _windows(start, last + 1):
        sec = _u32_at(buf, pos, count, big).astype(np.int64)
        frac = _u32_at(buf, pos + 4, count, big)
        cap = _u32_at(buf, pos + 8, count, big).astype(np.int64)
        wire = _u32_at(buf, pos + 12, count, big).astype(np.int64)
        ok = (cap > 0) & (cap <= max_caplen) & (wire >= cap) & (wire <= MAX_CAPLEN) & (frac < limit)
        if last_sec is not None:
            ok &= np.abs(sec - last_sec) <= 7 * 86400
        for cand in np.flatnonzero(ok):
            p = pos + int(cand)
            nxt = p + 16 + int(cap[cand])
            if nxt == len(buf) and eof:
                return p
            if nxt + 16 > len(buf):
                if not eof:
                    return p
                continue
            if plausible(*header.unpack_from(buf, nxt)):
                return p
    return None


def _pcapng_resync(buf: np.ndarray, start: int, big: bool) -> int | None:
    """Offset of the next block whose type is known and whose two length fields agree."""
    start += (-start) % 4
    u32 = struct.Struct(">I" if big else "<I").unpack_from
    known_types = np.array([1, 2, 3, 4, 5, 6, 0x0A0D0D0A], dtype=np.uint32)
    for pos, count in _windows(start, len(buf) - 12 + 1):
        btype = _u32_at(buf, pos, count, big)
        blen = _u32_at(buf, pos + 4, count, big).astype(np.int64)
        ok = np.isin(btype, known_types) & (blen >= 12) & (blen % 4 == 0) & (blen <= walk.PCAPNG_MAX_BLOCK)
        ok &= (np.arange(count) + pos) % 4 == 0  # blocks are 32-bit aligned
        for cand in np.flatnonzero(ok):
            p = pos + int(cand)
            end = p + int(blen[cand])
            if end > len(buf):
                return p  # cannot check the trailer yet; the walk will re-check it
            if u32(buf, end - 4)[0] == blen[cand]:
                return p
    return None
