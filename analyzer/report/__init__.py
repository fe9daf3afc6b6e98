"""Report renderers: the report dict (schema confscope.session/1) plus the flows DataFrame in,
report.json / report.md / report.html / flows.csv / flows.parquet and a terminal summary out.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from analyzer.errors import OptionError

# Renderers load on first use: `confscope flows` needs only the CSV writer, and the HTML, map
# and terminal renderers (with their imports) would cost it start-up time and memory.
_LAZY = {
    "to_html": "analyzer.report.html",
    "to_json": "analyzer.report.jsonout",
    "validate_report": "analyzer.report.jsonout",
    "to_markdown": "analyzer.report.markdown",
    "write_csv": "analyzer.report.tabular",
    "write_parquet": "analyzer.report.tabular",
    "render_summary": "analyzer.report.terminal",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


# Output names are fixed here: never derived from anything inside the capture.
FILENAMES: dict[str, str] = {
    "json": "report.json",
    "md": "report.md",
    "html": "report.html",
    "csv": "flows.csv",
    "parquet": "flows.parquet",
}
FORMATS: tuple[str, ...] = tuple(FILENAMES)


def parse_formats(text: str) -> list[str]:
    wanted = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = sorted(set(wanted) - set(FORMATS))
    if unknown or not wanted:
        raise OptionError(f"--format: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(FORMATS)}")
    return wanted


# Suffixes dropped from a capture's file name to name its report folder: compression first,
# then the capture format (`teams.pcap.gz` -> `teams`).
_COMPRESSION_SUFFIXES = (".gz", ".gzip", ".bz2", ".xz", ".zst", ".lz4")
_CAPTURE_SUFFIXES = (".pcapng", ".pcap", ".cap", ".ntar", ".dmp")


def capture_stem(capture: str | Path) -> str:
    """The capture's file name without compression and capture extensions."""
    name = Path(capture).name
    for group in (_COMPRESSION_SUFFIXES, _CAPTURE_SUFFIXES):
        for suffix in group:
            if name.lower().endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                break
    return name


def report_dir(out: str | Path, capture: str | Path, used: set[str]) -> Path:
    """DIR/<capture stem>, made unique; the stem comes from the file name the user gave, cleaned."""
    given = "stdin" if str(capture) == "-" else capture_stem(capture)  # `-` reads standard input
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in given)
    stem = cleaned[:80].strip(".") or "capture"
    name, k = stem, 2
    while name in used:
        name, k = f"{stem}-{k}", k + 1
    used.add(name)
    return Path(out) / name

__all__ = [
    "FILENAMES",
    "FORMATS",
    "parse_formats",
    "render_summary",
    "report_dir",
    "to_html",
    "to_json",
    "to_markdown",
    "validate_report",
    "write_csv",
    "write_parquet",
    "write_reports",
]


def _write_text(path: Path, content: str) -> Path:
    # Write then rename, so a reader (or a crash) never sees half a report.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(content, encoding="utf-8", newline="\n")
    tmp.replace(path)
    return path


def write_reports(
    report: dict[str, Any],
    flows: pd.DataFrame | None,
    out_dir: str | Path,
    formats: Iterable[str] = FORMATS,
    *,
    streams: pd.DataFrame | None = None,
    stream_seconds: pd.DataFrame | None = None,
) -> dict[str, Path]:
    """Write the chosen formats into out_dir (created if needed); returns format -> path written.
    Report files of other formats left by an earlier run into the same folder are removed.

    With parquet, the media streams and their per-second time series (when given) are written
    beside flows.parquet as streams.parquet and stream_seconds.parquet (keys `streams_parquet`,
    `stream_seconds_parquet`).

    Raises ValueError for an unknown format name.
    """
    from analyzer.report.html import to_html
    from analyzer.report.jsonout import to_json
    from analyzer.report.markdown import to_markdown
    from analyzer.report.tabular import write_csv, write_parquet

    wanted = [f.strip().lower() for f in formats if f and f.strip()]
    unknown = sorted(set(wanted) - set(FILENAMES))
    if unknown:
        raise ValueError(f"unknown report format(s): {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    if flows is None:
        flows = pd.DataFrame(report.get("flows") or [])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # A folder holds one run: report files of formats not asked for this time, and temporaries of
    # an interrupted run, are removed first (only our own file names; nothing else is touched).
    for fmt, name in FILENAMES.items():
        stale = [out / (name + ".tmp")] + ([] if fmt in wanted else [out / name])
        for path in stale:
            if path.is_file() or path.is_symlink():
                path.unlink()
    written: dict[str, Path] = {}
    for fmt in FORMATS:
        if fmt not in wanted:
            continue
        path = out / FILENAMES[fmt]
        if fmt == "json":
            written[fmt] = _write_text(path, to_json(report))
        elif fmt == "md":
            written[fmt] = _write_text(path, to_markdown(report))
        elif fmt == "html":
            written[fmt] = _write_text(path, to_html(report, flows))
        elif fmt == "csv":
            written[fmt] = write_csv(flows, path)
        elif fmt == "parquet":
            written[fmt] = write_parquet(flows, path)
            if streams is not None:
                written["streams_parquet"] = write_parquet(streams, out / "streams.parquet")
            if stream_seconds is not None:
                written["stream_seconds_parquet"] = write_parquet(stream_seconds, out / "stream_seconds.parquet")
    return written
