"""The SHA-256 of a capture, computed beside the scan."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from typing import BinaryIO

from analyzer.capture.source import FIFO_WAIT_SECONDS, CaptureSource, is_stream_path, open_stream, source_name
from analyzer.common.hashing import HASH_BLOCK_BYTES, file_sha256


class HashingStream(io.RawIOBase):
    """A non-seekable input (pipe, FIFO, stdin) read once: the SHA-256 is taken from the bytes
    as the reader consumes them, so no second reader races the scan for them."""

    def __init__(self, raw: BinaryIO, name: str):
        self._raw = raw
        self.name = name
        self._digest = hashlib.sha256()
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        data = self._raw.read(len(b)) or b""
        n = len(data)
        b[:n] = data
        self._digest.update(data)
        self._pos += n
        return n

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if self.name != "stdin":  # standard input belongs to the process
            self._raw.close()
        super().close()

    def hexdigest(self) -> str | None:
        """SHA-256 of the whole input: what the reader left unread (it stopped at a bound) is
        read and hashed now, so the digest always names the bytes that were given."""
        try:
            while data := self._raw.read(HASH_BLOCK_BYTES):
                self._digest.update(data)
        except (OSError, ValueError):
            return None
        return self._digest.hexdigest()


def open_hashed(source: CaptureSource, wait: float = FIFO_WAIT_SECONDS) -> tuple[CaptureSource, BackgroundDigest]:
    """What the scan should read and the digest to ask afterwards. A pipe, FIFO or `-` is opened
    once and hashed as it is read; anything else is hashed beside the scan (BackgroundDigest)."""
    if is_stream_path(source):
        stream = HashingStream(open_stream(source, wait), source_name(source))  # type: ignore[arg-type]
        return stream, BackgroundDigest(stream)
    return source, BackgroundDigest(source)


class BackgroundDigest:
    """SHA-256 of the capture file, computed on another thread while the scan runs: hashlib
    releases the GIL on large blocks, so on two cores the hash costs no wall time."""

    def __init__(self, source: CaptureSource):
        self._source = source
        self._digest: str | None = None
        self._thread: threading.Thread | None = None
        if isinstance(source, str | os.PathLike):
            self._thread = threading.Thread(target=self._run, name="confscope-sha256", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self._digest = file_sha256(self._source)  # type: ignore[arg-type]
        except OSError:
            self._digest = None

    def result(self) -> str | None:
        if self._thread is not None:
            self._thread.join()
            return self._digest
        src = self._source
        if isinstance(src, HashingStream):
            return src.hexdigest()
        if isinstance(src, bytes | bytearray | memoryview):
            return hashlib.sha256(bytes(src)).hexdigest()
        try:  # a seekable file object: hash it again from the start
            src.seek(0)  # type: ignore[union-attr]
            return hashlib.file_digest(src, "sha256").hexdigest()  # type: ignore[arg-type]
        except (AttributeError, OSError, ValueError):
            return None
