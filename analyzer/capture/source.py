"""Open whatever the caller passed (path, bytes, file object) as a binary stream, gunzipping
transparently within documented bounds."""

from __future__ import annotations

import gzip
import io
import os
import select
import stat
import sys
from pathlib import Path
from typing import BinaryIO

from analyzer.errors import CaptureFormatError

# Bounds against gzip bombs: a capture may expand at most this much in total and, past the
# first 64 MiB, at most this ratio (pcap rarely compresses beyond 20:1; zeros reach 1000:1).
# Defaults of CaptureReader(max_gunzip_bytes=, max_gunzip_ratio=).
MAX_GUNZIP_BYTES = 32 * 1024**3
MAX_GUNZIP_RATIO = 200
RATIO_GRACE_BYTES = 64 * 1024 * 1024

CaptureSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO

STDIN = "-"  # the capture path that means standard input (`tcpdump -w - | confscope analyze -`)
# How long to wait for a FIFO's writer (or its first bytes) before giving up with a message;
# opening a FIFO that nobody writes would otherwise block forever.
FIFO_WAIT_SECONDS = 30.0


def is_stream_path(source: object) -> bool:
    """True for `-` and for paths that are not regular files (FIFOs, /dev/stdin, character
    devices, sockets): they can be read only once, so nothing may open them a second time."""
    if not isinstance(source, str | os.PathLike):
        return False
    if os.fspath(source) == STDIN:
        return True
    try:
        mode = os.stat(source).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def open_stream(source: str | os.PathLike, wait: float = FIFO_WAIT_SECONDS) -> BinaryIO:
    """Open a non-seekable input once. `-` is standard input (refused when it is a terminal); a
    FIFO is opened without blocking and must get a writer with data (or an end) within `wait`
    seconds, else CaptureFormatError names the bound."""
    path = os.fspath(source)
    if path == STDIN:
        stdin = sys.stdin.buffer if sys.stdin is not None else None
        if stdin is None:
            raise CaptureFormatError("-: standard input is closed")
        if stdin.isatty():
            raise CaptureFormatError("-: standard input is a terminal; pipe a capture in (tcpdump -w - | ...)")
        return stdin
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise CaptureFormatError(f"{path}: cannot open ({exc.strerror})") from None
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            poller = select.poll()
            poller.register(fd, select.POLLIN | select.POLLHUP)
            if not poller.poll(max(wait, 0.0) * 1000):
                raise CaptureFormatError(
                    f"{path}: FIFO has no writer (waited {wait:g} s); start the writer first or pipe into `-`"
                )
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


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
        path = os.fspath(source)
        return "stdin" if path == STDIN else path
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else "<memory>"


def open_binary(source: CaptureSource) -> tuple[BinaryIO, int]:
    """Return (stream, size in bytes or -1); the caller closes the stream."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        return io.BytesIO(data), len(data)
    if is_stream_path(source):
        return open_stream(source), -1  # type: ignore[arg-type]
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
