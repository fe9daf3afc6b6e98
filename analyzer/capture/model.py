"""Data shapes the capture stage hands to the decoder."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np


@dataclass
class FrameChunk:
    """A run of consecutive frames whose bytes all live in `buf` (see docs/internals.md)."""

    buf: np.ndarray
    data_off: np.ndarray
    caplen: np.ndarray
    wirelen: np.ndarray
    ts_ns: np.ndarray
    linktype: np.ndarray
    frame_no: np.ndarray
    bytes_read: int = 0  # file bytes consumed so far, for progress bars

    def __len__(self) -> int:
        return int(self.data_off.shape[0])


@dataclass
class Interface:
    linktype: int
    snaplen: int
    tsresol_exp: int = 6  # exponent of the timestamp unit
    tsresol_base: int = 10  # 10 or 2 (pcapng if_tsresol high bit)
    tsoffset_s: int = 0
    name: str = ""


@dataclass
class CaptureInfo:
    """What was learnt about the container while reading it; becomes the report's `capture`."""

    path: str
    format: str = ""  # "pcap", "pcapng"
    byte_order: str = ""
    ts_resolution: str = ""
    compressed: str = ""  # "gzip" when the file was decompressed
    file_bytes: int = 0
    interfaces: list[Interface] = field(default_factory=list)
    frames: int = 0
    frame_bytes: int = 0  # sum of wire lengths of all frames read
    first_ts_ns: int | None = None
    last_ts_ns: int | None = None
    truncated: bool = False
    warnings: list[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason -> frames not decoded
    sha256: str | None = None

    @property
    def linktypes(self) -> list[int]:
        return sorted({i.linktype for i in self.interfaces})

    def warn(self, message: str, force: bool = False) -> None:
        """Record a warning once; at most 200, except `force`d ones (those that end reading)."""
        if message not in self.warnings and (force or len(self.warnings) < 200):
            self.warnings.append(message)

    def note_frames(self, chunk: FrameChunk) -> None:
        n = len(chunk)
        if not n:
            return
        self.frames += n
        self.frame_bytes += int(chunk.wirelen.sum(dtype=np.int64))
        lo, hi = int(chunk.ts_ns.min()), int(chunk.ts_ns.max())
        self.first_ts_ns = lo if self.first_ts_ns is None else min(self.first_ts_ns, lo)
        self.last_ts_ns = hi if self.last_ts_ns is None else max(self.last_ts_ns, hi)

    def as_dict(self) -> dict:
        first = self.first_ts_ns / 1e9 if self.first_ts_ns is not None else None
        last = self.last_ts_ns / 1e9 if self.last_ts_ns is not None else None
        return {
            "path": self.path,
            "sha256": self.sha256,
            "format": self.format,
            "byte_order": self.byte_order,
            "ts_resolution": self.ts_resolution,
            "compressed": self.compressed or None,
            "file_bytes": self.file_bytes,
            "linktypes": self.linktypes,
            "interfaces": len(self.interfaces),
            "packets": self.frames,
            "bytes": self.frame_bytes,
            "first_ts": first,
            "last_ts": last,
            "duration_s": (last - first) if first is not None and last is not None else 0.0,
            "truncated": self.truncated,
            "skipped_packets": int(sum(self.skipped.values())),
            "skipped_by_reason": dict(sorted(self.skipped.items())),
            "warnings": list(self.warnings),
        }
