"""The scan options of `confscope flows` and of a session, defined once."""

from __future__ import annotations

from typing import Any

# A session keeps media state and samples per flow anyway (its memory budget is 250 MiB, against
# 150 MiB for `confscope flows`), so it reads in larger chunks: fewer chunks, less per-chunk cost.
# `scan_capture(chunk_bytes=...)` is the parameter for anyone who wants another size.
ANALYZE_CHUNK_BYTES = 16 * 1024 * 1024


def flows_scan_options(dissect: bool) -> dict[str, Any]:
    """The scan_capture options of `confscope flows` (the table, and samples when dissecting)."""
    return {"chunk_bytes": None, "keep_samples": dissect, "media": False, "name": None}


def analyze_scan_options(name: str | None = None) -> dict[str, Any]:
    """The scan_capture options of a session: samples, media streams, larger chunks."""
    return {"chunk_bytes": ANALYZE_CHUNK_BYTES, "keep_samples": True, "media": True, "name": name}
