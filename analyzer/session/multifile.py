"""Captures that are more than one file, or one file worth splitting: rotated sets analysed as one
session (tcpdump -C/-W, editcap -c/-i splits) and one large capture scanned as parallel ranges.

Both produce one ScanResult through `partscan.combine_parts`, then the same session assembly
as `analyzer.session.build.analyze`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from analyzer.common.hashing import file_sha256
from analyzer.errors import OptionError
from analyzer.scan.parallel import run_ordered
from analyzer.scan.parts import PartScan, combine_parts, merge_infos, scan_part
from analyzer.scan.scanner import ScanResult
from analyzer.session.build import session_from_scan as build
from analyzer.session.model import Session
from analyzer.session.options import check_options


def scan_file(path: str) -> PartScan:
    """One file of a set (top-level, so process pools and Dask can ship it)."""
    return scan_part(path, name=path)


def scan_files(paths: Iterable[str | os.PathLike], workers: int = 1, executor: Any = None) -> ScanResult:
    """Scan files as one capture: flows continue across files, which are ordered by their first
    timestamp (so the order given does not matter); frame numbers run on across files.

    >>> from analyzer.capture.demo import write_demo_capture
    >>> from analyzer.scan.scanner import scan_capture
    >>> p = write_demo_capture("/tmp/confscope-multi-doctest.pcap")
    >>> len(scan_files([p]).flows) == len(scan_capture(p).flows)
    True
    """
    return _scan_ordered([os.fspath(p) for p in paths], workers, executor)[0]


def _scan_ordered(names: list[str], workers: int, executor: Any) -> tuple[ScanResult, list[str]]:
    if not names:
        raise OptionError("no capture files to merge")
    parts = run_ordered(scan_file, [(p,) for p in names], workers, executor)
    order = sorted(
        range(len(parts)), key=lambda i: (parts[i].info.first_ts_ns is None, parts[i].info.first_ts_ns or 0, i)
    )
    parts = [parts[i] for i in order]
    size = sum(p.info.file_bytes for p in parts)
    info = merge_infos([p.info for p in parts], names[order[0]], size)
    if len(parts) > 1:
        info.warn(f"{len(parts)} files analysed as one capture")
    return combine_parts(parts, info), [names[i] for i in order]


def analyze_files(
    paths: Iterable[str | os.PathLike], *, workers: int = 1, executor: Any = None, **options: Any
) -> Session:
    """Analyse a rotated or split capture (several files) as one session.

    The report's capture gains `files` (name, sha256 per file, in time order) and its `sha256` is
    the hash of those per-file hashes.
    """
    opts = check_options(options)
    names = [os.fspath(p) for p in paths]
    scan, files = _scan_ordered(names, workers, executor)
    session = build(scan, files[0], opts)
    hashes = [file_sha256(p) for p in files]
    cap = session.report["capture"]
    cap["files"] = [{"name": Path(p).name, "sha256": h} for p, h in zip(files, hashes, strict=True)]
    cap["sha256"] = hashlib.sha256("".join(hashes).encode()).hexdigest()
    cap["name"] = Path(files[0]).name
    return session


def analyze_split(path: str | os.PathLike, *, workers: int = 2, executor: Any = None, **options: Any) -> Session:
    """Analyse one large capture with its byte ranges scanned in parallel (same report as
    `analyzer.session.build.analyze`)."""
    from analyzer.scan.split import scan_split

    opts = check_options(options)
    scan = scan_split(path, workers, executor=executor)
    return build(scan, os.fspath(path), opts)

