"""The SHA-256 of a capture, computed beside the scan."""

from __future__ import annotations

import hashlib
import os
import threading

from analyzer.capture.source import CaptureSource
from analyzer.common.hashing import file_sha256


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
        if isinstance(src, bytes | bytearray | memoryview):
            return hashlib.sha256(bytes(src)).hexdigest()
        try:  # a seekable file object: hash it again from the start
            src.seek(0)  # type: ignore[union-attr]
            return hashlib.file_digest(src, "sha256").hexdigest()  # type: ignore[arg-type]
        except (AttributeError, OSError, ValueError):
            return None
