"""Open whatever the caller passed (path, bytes, file object) as a binary stream, gunzipping
transparently within documented bounds."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path
from typing import BinaryIO

from analyzer.errors import CaptureFormatError

# Bounds against gzip bombs: a capture may expand at most this much in total and, past the
# first 64 MiB, at most this ratio (pcap rarely compresses beyond 20:1; zeros reach 1000:1).
MAX_GUNZIP_BYTES = int(os.environ.get("CONFSCOPE_MAX_GUNZIP_BYTES", 32 * 1024**3))
MAX_GUNZIP_RATIO = int(os.environ.get("CONFSCOPE_MAX_GUNZIP_RATIO", 200))
RATIO_GRACE_BYTES = 64 * 1024 * 1024

CaptureSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO


class GzipBombError(CaptureFormatError):
    """Decompression exceeded a documented bound; the reader keeps what it had."""


class BoundedGunzip(io.RawIOBase):
    """A gzip stream that refuses to expand past MAX_GUNZIP_BYTES or MAX_GUNZIP_RATIO."""

    def __init__(self, raw: BinaryIO, max_bytes: int = MAX_GUNZIP_BYTES, max_ratio: int = MAX_GUNZIP_RATIO):
        self._raw = raw
        self._gz = gzip.GzipFile(fileobj=raw, mode="rb")
        self._out = 0
        self._max_bytes = max_bytes
        self._max_ratio = max_ratio

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        # The bounds are checked before reading, so what was read within them is always kept.
        if self._out >= self._max_bytes:
            raise GzipBombError(f"gzip stream expands beyond {self._max_bytes} bytes (bound)")
        if self._out > RATIO_GRACE_BYTES and self._out / max(self._raw.tell(), 1) > self._max_ratio:
            raise GzipBombError(f"gzip stream expands more than {self._max_ratio}:1 (bound)")
        n = self._gz.readinto(memoryview(b)[: self._max_bytes - self._out])
        self._out += n
        return n

    def close(self) -> None:
        self._gz.close()
        super().close()


def source_name(source: CaptureSource) -> str:
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else "<memory>"


def open_binary(source: CaptureSource) -> tuple[BinaryIO, int]:
    """Return (stream, size in bytes or -1); the caller closes the stream."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        return io.BytesIO(data), len(data)
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if path.is_dir():
            raise CaptureFormatError(f"{path}: is a directory, not a capture")
        try:
            fh = open(path, "rb")  # noqa: SIM115 - the reader owns and closes it
        except FileNotFoundError:
            raise CaptureFormatError(f"{path}: no such file") from None
        except OSError as exc:
            raise CaptureFormatError(f"{path}: cannot open ({exc.strerror})") from None
        return fh, path.stat().st_size
    if hasattr(source, "read"):
        try:
            size = os.fstat(source.fileno()).st_size  # type: ignore[attr-defined]
        except (OSError, AttributeError, io.UnsupportedOperation):
            size = -1
        return source, size  # type: ignore[return-value]
    raise CaptureFormatError(f"cannot read a capture from {type(source).__name__}")
