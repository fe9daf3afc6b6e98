"""The flow table of one capture as `confscope flows` prints it: 5-tuple flows plus, unless
disabled, the dissection facts, app and roles."""

from __future__ import annotations

import sys
from typing import Any

import pandas as pd

from analyzer.capture.source import FIFO_WAIT_SECONDS, CaptureSource, is_stream_path, open_stream
from analyzer.errors import OptionError
from analyzer.scan.defaults import flows_scan_options
from analyzer.scan.scanner import ProgressFn, scan_capture

ENGINES = ("native", "tshark", "scapy")
CLASSIFIED_COLUMNS = ("app", "app_confidence", "protocol", "roles", "hostname", "bytes_by_role")
INTERNAL_COLUMNS = ("flow_key", "a_is_client")


def flow_table(
    source: CaptureSource,
    *,
    engine: str = "native",
    dissect: bool = True,
    progress: ProgressFn | None = None,
    fifo_wait: float = FIFO_WAIT_SECONDS,
    workers: int | None = None,
    parallel_min_bytes: int | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Return (flows, capture info dict) for one capture (`-` reads standard input; a FIFO must
    get a writer within `fifo_wait` seconds). `workers` / `parallel_min_bytes`: byte ranges of a
    file scanned in parallel (analyzer/scan/scanner.py; None = auto / the default threshold)."""
    if engine not in ENGINES:
        raise OptionError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine != "native":
        from analyzer.engines import build_flows

        return build_flows(source, engine=engine), {"warnings": [], "skipped_packets": 0}
    if is_stream_path(source):  # read once, never opened twice (the pipe race of issue 16)
        stream = open_stream(source, fifo_wait)  # type: ignore[arg-type]
        try:
            result = scan_capture(stream, progress=progress, **flows_scan_options(dissect))
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()
    else:
        size_rule = {} if parallel_min_bytes is None else {"parallel_min_bytes": parallel_min_bytes}
        result = scan_capture(source, progress=progress, workers=workers, **size_rule, **flows_scan_options(dissect))
    flows = result.flows
    base = [c for c in flows.columns if c not in INTERNAL_COLUMNS and not c.startswith("kind_")]
    if dissect and len(flows):
        from analyzer.classify import classify_scan

        flows = classify_scan(result)
        base += [c for c in CLASSIFIED_COLUMNS if c in flows]
    return flows[base], result.info.as_dict()
