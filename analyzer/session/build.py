"""The analysis of one captured session: the scan's flows classified, located and checked against
the policy; the findings; the report dict of the contract (schema confscope.session/1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from analyzer import __version__
from analyzer.capture.digest import open_hashed
from analyzer.capture.source import FIFO_WAIT_SECONDS, CaptureSource, source_name
from analyzer.geo.endpoints import flow_vantage, locate_endpoints, remote_endpoints, rtt_plausibility
from analyzer.scan.defaults import analyze_scan_options
from analyzer.scan.scanner import PARALLEL_MIN_BYTES, ProgressFn, ScanResult, scan_capture, scan_pool, scan_workers
from analyzer.session.findings import (
    capture_findings,
    cleartext_key_findings,
    data_age_findings,
    ecb_findings,
    geo_findings,
    location_findings,
    policy_findings,
    sort_findings,
)
from analyzer.session.media_verdicts import judge_streams
from analyzer.session.model import Session
from analyzer.session.options import SESSION_OPTIONS, SessionOptions, check_options, prepare_options
from analyzer.session.policy import Policy, violations
from analyzer.session.streams import apply_sdp_clocks, media_summary, stream_seconds, with_stream_ids
from analyzer.session.tables import (
    FLOW_REPORT_COLUMNS,
    apps_table,
    attributions,
    countries_table,
    flow_records,
    key_exchange_table,
    local_table,
    media_table,
    meetings_table,
)
from analyzer.session.timing import capture_timing, time_segments, timing_findings

__all__ = ["FLOW_REPORT_COLUMNS", "SCHEMA", "SESSION_OPTIONS", "Session", "SessionOptions",
           "analyze", "build_session", "prepare_options", "session_from_scan"]


SCHEMA = "confscope.session/1"


def analyze(
    source: CaptureSource,
    *,
    progress: ProgressFn | None = None,
    name: str | None = None,
    resolver: Any = None,
    fifo_wait: float = FIFO_WAIT_SECONDS,
    workers: int | None = None,
    parallel_min_bytes: int = PARALLEL_MIN_BYTES,
    **options: Any,
) -> Session:
    """Analyse one capture (path, `-` for standard input, bytes or binary file object).

    `workers`, `parallel_min_bytes`: the scan of a large file uses two cores (None = auto: from
    `parallel_min_bytes` bytes on a multi-core machine; 1 = one process), see analyzer/scan/scanner.py.

    Options: geoip (paths of MaxMind-format databases), allow ("CC,CC" or a list), region (a name
    from analyzer/data/regions.toml), policy (a TOML file), vantage ("CC" or "LAT,LON"),
    anonymize (a key: pseudonymise local addresses) and anonymize_servers. A FIFO must get a
    writer within `fifo_wait` seconds; pipes and FIFOs are read once and hashed as read.

    >>> from analyzer.capture.demo import write_demo_capture
    >>> s = analyze(write_demo_capture("/tmp/confscope-doctest.pcap"), region="north-america")
    >>> sorted(s.key_exchange["country"])
    ['CN', 'US']
    >>> s.exit_code
    1
    """
    opts = check_options(options)
    # A pipe or FIFO is read once, hashed as read (capture/digest.py); a file is hashed beside. The
    # scan's worker pool (if any) is forked before the hashing thread starts (scanner.scan_pool).
    n = scan_workers(source, workers, media=True, parallel_min_bytes=parallel_min_bytes)
    with scan_pool(n) as pool:
        readable, hasher = open_hashed(source, fifo_wait)
        try:
            scan = scan_capture(readable, progress=progress, workers=n, executor=pool, **analyze_scan_options(name))
            sha256 = hasher.result()
        finally:
            if readable is not source:
                readable.close()  # type: ignore[union-attr]
    return session_from_scan(scan, source, opts, sha256=sha256, resolver=resolver)


def session_from_scan(
    scan: ScanResult,
    source: CaptureSource,
    opts: SessionOptions | None = None,
    *,
    sha256: str | None = None,
    resolver: Any = None,
    **options: Any,
) -> Session:
    """The Session of a ScanResult (from `scan_capture`, a split scan or several files)."""
    from analyzer.geo.resolver import GeoResolver

    opts = opts or check_options(options)
    own_resolver = resolver is None
    resolver = resolver or GeoResolver(user_paths=opts.geoip)
    try:
        session = build_session(scan, source, resolver, opts.policy, opts.vantage, opts.recorded, sha256=sha256)
    finally:
        if own_resolver:
            resolver.close()
    if opts.anonymize:
        # After geolocation, so that countries and ASNs stay those of the real addresses.
        from analyzer.session.anonymize import anonymize_session

        session = anonymize_session(session, opts.anonymize, anonymize_servers=opts.anonymize_servers)
    return session


def build_session(
    scan: ScanResult,
    source: CaptureSource,
    resolver: Any,
    pol: Policy | None,
    stated_vantage: Any,
    options: dict[str, Any],
    sha256: str | None = None,
) -> Session:
    from analyzer.classify import classify_scan
    from analyzer.geo.annotate import annotate_flows

    flows = classify_scan(scan) if len(scan.flows) else _empty_classified(scan.flows)
    flows = annotate_flows(flows, resolver)
    flows = remote_endpoints(flows, resolver)
    vantage = flow_vantage(flows, resolver, stated_vantage)
    flows, endpoints, rtt_conflicts = locate_endpoints(flows, resolver, vantage)
    flows = rtt_plausibility(flows, vantage)
    raw_streams, raw_seconds = apply_sdp_clocks(scan.streams, scan.stream_seconds, flows, scan.media)
    streams = with_stream_ids(judge_streams(raw_streams), flows)
    capture = scan.info.as_dict()
    seconds = stream_seconds(streams, raw_seconds, capture.get("first_ts"))
    capture["sha256"] = sha256
    capture["name"] = Path(source_name(source)).name
    viol = violations(flows, pol)
    findings = policy_findings(viol, pol.source if pol else "", endpoints)
    findings += cleartext_key_findings(flows)
    findings += ecb_findings(streams)
    findings += geo_findings(flows)
    findings += location_findings(endpoints, rtt_conflicts)
    findings += data_age_findings(capture, resolver.provenance())
    findings += capture_findings(capture)
    segments = time_segments(flows)
    capture.update(capture_timing(segments))
    findings += timing_findings(segments)
    report = {
        "schema": SCHEMA,
        "tool": {"name": "confscope", "version": __version__},
        "options": options,
        "capture": capture,
        "geo": {"databases": resolver.provenance(), "warnings": list(getattr(resolver, "warnings", []))},
        "vantage": vantage,
        "endpoints": endpoints,
        "apps": apps_table(flows),
        "countries": countries_table(flows),
        "local": local_table(flows),
        "key_exchange": key_exchange_table(flows),
        "media": media_table(flows, streams, seconds, getattr(scan.media, "over_cap_by_flow", None)),
        "media_streams": media_summary(scan.media, streams),
        "meetings": meetings_table(flows),
        "flows": flow_records(flows),
        "policy": {**(pol.describe() if pol else {"source": None, "allowed_countries": None}), "violations": viol},
        "findings": sort_findings(findings),
        "attributions": attributions(resolver),
    }
    return Session(report=report, flows=flows, streams=streams, stream_seconds=seconds)


def _empty_classified(flows: pd.DataFrame) -> pd.DataFrame:
    out = flows.copy()
    for col in ("app", "app_confidence", "protocol", "hostname"):
        out[col] = pd.Series(dtype=object)
    out["roles"] = pd.Series(dtype=object)
    out["bytes_by_role"] = pd.Series(dtype=object)
    out["other_by_kind"] = pd.Series(dtype=object)
    return out
