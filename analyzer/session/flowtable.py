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

        if dissect and is_stream_path(source):  # a pipe cannot be read a second time for the dissection
            raise OptionError(f"the {engine} engine with dissection needs a regular file; add --no-dissect")
        other = build_flows(source, engine=engine)
        other = other[[c for c in other.columns if c not in INTERNAL_COLUMNS and not c.startswith("kind_")]]
        if not dissect:
            return other, {"warnings": [], "skipped_packets": 0}
        # The engine builds the 5-tuple flows; app, protocol, roles and hostname come from
        # confscope's dissection of the same capture, matched to the engine's flows by 5-tuple
        # (either direction). A flow only the engine has gets empty classification columns.
        native, info = flow_table(source, engine="native", dissect=True, progress=progress)
        return _join_classification(other, native), info
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
    if dissect:
        if len(flows):
            from analyzer.classify import classify_scan

            flows = classify_scan(result)
        # An empty capture still gets the full header: the same columns whatever the input.
        flows = flows.reindex(columns=[*flows.columns, *(c for c in CLASSIFIED_COLUMNS if c not in flows)])
        base += list(CLASSIFIED_COLUMNS)
    return flows[base], result.info.as_dict()


def _endpoints_key(flows: pd.DataFrame) -> pd.Series:
    """transport + both endpoints, ordered so that either direction gives the same key."""
    a = flows["client_ip"].astype(str) + "|" + flows["client_port"].astype(str)
    b = flows["server_ip"].astype(str) + "|" + flows["server_port"].astype(str)
    lo = a.where(a <= b, b)
    hi = b.where(a <= b, a)
    return flows["transport"].astype(str) + "|" + lo + "|" + hi


def _join_classification(other: pd.DataFrame, native: pd.DataFrame) -> pd.DataFrame:
    cols = list(CLASSIFIED_COLUMNS)
    if native.empty or other.empty:
        return other.reindex(columns=[*other.columns, *cols])
    facts = native[cols].copy()
    facts["_key"] = _endpoints_key(native).to_numpy()
    # Several native flows can share endpoints (a port reused after FIN): keep the first.
    facts = facts.drop_duplicates("_key")
    left = other.assign(_key=_endpoints_key(other).to_numpy())
    joined = left.merge(facts, on="_key", how="left").drop(columns="_key")
    return joined[[*other.columns, *cols]]


def select_columns(flows: pd.DataFrame, columns: str) -> pd.DataFrame:
    """The named columns (comma-separated), in that order; OptionError names unknown ones."""
    wanted = [c.strip() for c in columns.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in flows.columns]
    if unknown or not wanted:
        raise OptionError(
            f"unknown column(s) {', '.join(unknown) or '(none given)'}; columns: {', '.join(map(str, flows.columns))}",
            "columns",
            columns,
        )
    return flows[wanted]

