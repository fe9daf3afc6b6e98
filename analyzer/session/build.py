"""The analysis of one captured session: flows with apps, roles, names and places; the tables of
the report contract (schema confscope.session/1); the geofence policy; the findings."""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analyzer import __version__
from analyzer.capture.source import CaptureSource, source_name
from analyzer.common.hashing import file_sha256
from analyzer.errors import OptionError
from analyzer.scan.defaults import analyze_scan_options
from analyzer.scan.scanner import ProgressFn, ScanResult, scan_capture
from analyzer.session.findings import (
    capture_findings,
    cleartext_key_findings,
    ecb_findings,
    geo_findings,
    policy_findings,
    sort_findings,
)
from analyzer.session.policy import ROLES, Policy, build_policy, violations

SCHEMA = "confscope.session/1"
FLOW_REPORT_COLUMNS = (
    "flow_id",
    "transport",
    "client_ip",
    "client_port",
    "server_ip",
    "server_port",
    "first_ts",
    "last_ts",
    "packets_c2s",
    "packets_s2c",
    "bytes_c2s",
    "bytes_s2c",
    "app",
    "app_confidence",
    "protocol",
    "roles",
    "bytes_by_role",
    "hostname",
    "server_country",
    "server_asn",
    "server_org",
    "remote_ip",
    "remote_country",
    "remote_scope",
    "registered_country",
    "community_id",
    "tcp_rtt_ms",
    "min_rtt_ms",
    "app_evidence",
)
REPORT_FORMATS = ("json", "md", "html", "csv", "parquet")


@dataclass
class Session:
    """One analysed capture: pandas tables plus the report dict of the contract."""

    report: dict[str, Any]
    flows: pd.DataFrame
    streams: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def countries(self) -> pd.DataFrame:
        return pd.DataFrame(self.report["countries"])

    @property
    def apps(self) -> pd.DataFrame:
        return pd.DataFrame(self.report["apps"])

    @property
    def key_exchange(self) -> pd.DataFrame:
        return pd.DataFrame(self.report["key_exchange"])

    @property
    def media(self) -> pd.DataFrame:
        return pd.DataFrame(self.report["media"])

    @property
    def findings(self) -> pd.DataFrame:
        return pd.DataFrame(self.report["findings"], columns=["code", "severity", "title", "detail", "flow_ids"])

    @property
    def violations(self) -> pd.DataFrame:
        return pd.DataFrame(self.report["policy"]["violations"])

    @property
    def exit_code(self) -> int:
        """1 when the policy is violated or a critical finding exists (for pipelines), else 0."""
        critical = any(f["severity"] == "critical" for f in self.report["findings"])
        return 1 if self.report["policy"]["violations"] or critical else 0

    def to_json(self) -> str:
        from analyzer.report import to_json

        return to_json(self.report)

    def to_markdown(self) -> str:
        from analyzer.report import to_markdown

        return to_markdown(self.report)

    def to_html(self) -> str:
        from analyzer.report import to_html

        return to_html(self.report, self.flows)

    def write(self, out_dir: str | Path, formats: Iterable[str] = REPORT_FORMATS) -> dict[str, Path]:
        from analyzer.report import write_reports

        return write_reports(self.report, self.flows, out_dir, formats)


SESSION_OPTIONS = ("geoip", "allow", "region", "policy", "vantage", "anonymize", "anonymize_servers")


@dataclass(frozen=True)
class SessionOptions:
    """Validated analysis options (validated before any capture is read)."""

    policy: Policy | None
    vantage: Any
    geoip: tuple[str, ...]
    anonymize: str | bytes | None
    anonymize_servers: bool
    recorded: dict[str, Any]  # what the report's `options` shows (never the anonymisation key)

    def as_options(self, given: dict[str, Any]) -> dict[str, Any]:
        """The options normalised (geoip as a list, key resolved), to ship to other processes."""
        return {
            **given,
            "geoip": list(self.geoip),
            "anonymize": self.anonymize,
            "anonymize_servers": self.anonymize_servers,
        }


def prepare_options(
    geoip: Iterable[str] | str | None = (),
    allow: str | list[str] | None = None,
    region: str | None = None,
    policy: str | Path | None = None,
    vantage: str | None = None,
    anonymize: str | bytes | None = None,
    anonymize_servers: bool = False,
) -> SessionOptions:
    """Check every option up front; raise OptionError with a one-line reason."""
    from analyzer.geo.vantage import parse_vantage

    pol = build_policy(allow, region, policy)
    stated = parse_vantage(vantage) if vantage else None
    if isinstance(anonymize, str) and anonymize:
        from analyzer.session.anonymize import resolve_key

        try:  # `env:NAME` and `file:PATH` keep the key out of process listings and shell history
            anonymize = resolve_key(anonymize)
        except ValueError as exc:
            raise OptionError(str(exc)) from None
    paths = [os.fspath(geoip)] if isinstance(geoip, str | os.PathLike) else [os.fspath(g) for g in geoip or ()]
    for p in paths:
        if not Path(p).is_file():
            raise OptionError(f"--geoip {p}: no such file")
    recorded = {
        "geoip": [os.path.basename(p) for p in paths],
        "allow": allow,
        "region": region,
        "policy": os.path.basename(str(policy)) if policy else None,
        "vantage": vantage,
        "anonymized": bool(anonymize),
    }
    return SessionOptions(pol, stated, tuple(paths), anonymize, bool(anonymize_servers), recorded)


def analyze(
    source: CaptureSource,
    *,
    progress: ProgressFn | None = None,
    name: str | None = None,
    resolver: Any = None,
    **options: Any,
) -> Session:
    """Analyse one capture (path, bytes or binary file object).

    Options: geoip (paths of MaxMind-format databases), allow ("CC,CC" or a list), region (a name
    from analyzer/data/regions.toml), policy (a TOML file), vantage ("CC" or "LAT,LON"),
    anonymize (a key: pseudonymise local addresses) and anonymize_servers.

    >>> from analyzer.capture.demo import write_demo_capture
    >>> s = analyze(write_demo_capture("/tmp/confscope-doctest.pcap"), region="north-america")
    >>> sorted(s.key_exchange["country"])
    ['CN', 'US']
    >>> s.exit_code
    1
    """
    opts = _options(options)
    hasher = _HashInBackground(source)
    scan = scan_capture(source, progress=progress, **analyze_scan_options(name))
    return session_from_scan(scan, source, opts, sha256=hasher.result(), resolver=resolver)


def _options(options: dict[str, Any]) -> SessionOptions:
    unknown = sorted(set(options) - set(SESSION_OPTIONS))
    if unknown:
        raise OptionError(f"unknown option(s): {', '.join(unknown)}; expected {', '.join(SESSION_OPTIONS)}")
    return prepare_options(**options)


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

    opts = opts or _options(options)
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
    flows = _remote_endpoint(flows, resolver)
    vantage = _vantage(flows, resolver, stated_vantage)
    flows = _plausibility(flows, vantage)
    streams = _judge_streams(scan.streams)
    capture = scan.info.as_dict()
    capture["sha256"] = sha256
    capture["name"] = Path(source_name(source)).name
    viol = violations(flows, pol)
    findings = policy_findings(viol, pol.source if pol else "")
    findings += cleartext_key_findings(flows)
    findings += ecb_findings(streams)
    findings += geo_findings(flows)
    findings += capture_findings(capture)
    report = {
        "schema": SCHEMA,
        "tool": {"name": "confscope", "version": __version__},
        "options": options,
        "capture": capture,
        "geo": {"databases": resolver.provenance(), "warnings": list(getattr(resolver, "warnings", []))},
        "vantage": vantage,
        "apps": _apps(flows),
        "countries": _countries(flows),
        "local": _local(flows),
        "key_exchange": _key_exchange(flows),
        "media": _media(flows, streams),
        "meetings": _meetings(flows),
        "flows": _flow_records(flows),
        "policy": {**(pol.describe() if pol else {"source": None, "allowed_countries": None}), "violations": viol},
        "findings": sort_findings(findings),
        "attributions": _attributions(resolver),
    }
    return Session(report=report, flows=flows, streams=streams)


def _empty_classified(flows: pd.DataFrame) -> pd.DataFrame:
    out = flows.copy()
    for col in ("app", "app_confidence", "protocol", "hostname"):
        out[col] = pd.Series(dtype=object)
    out["roles"] = pd.Series(dtype=object)
    out["bytes_by_role"] = pd.Series(dtype=object)
    return out


class _HashInBackground:
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


def _remote_endpoint(flows: pd.DataFrame, resolver: Any) -> pd.DataFrame:
    """The remote side of each flow: the server, unless only the client is public (inbound)."""
    out = flows.copy()
    inbound = (out["server_scope"] != "public").to_numpy() & np.array(
        [resolver.lookup(ip).scope == "public" for ip in out["client_ip"]], dtype=bool
    )
    out["remote_ip"] = np.where(inbound, out["client_ip"], out["server_ip"])
    remote = [resolver.lookup(ip) for ip in out["remote_ip"]]
    out["remote_country"] = pd.Series([r.country for r in remote], index=out.index, dtype=object)
    out["remote_scope"] = [r.scope for r in remote]
    out["remote_asn"] = pd.Series([r.asn for r in remote], index=out.index, dtype="Int64")
    out["remote_org"] = pd.Series([r.org for r in remote], index=out.index, dtype=object)
    return out


def _vantage(flows: pd.DataFrame, resolver: Any, stated: Any) -> dict[str, Any]:
    from analyzer.geo.vantage import vantage_from_ips

    local = sorted(
        {
            c if r == srv else srv
            for c, srv, r in zip(flows["client_ip"], flows["server_ip"], flows["remote_ip"], strict=True)
        }
    )
    mapped = sorted({ip for v in flows.get("stun_mapped", pd.Series(dtype=object)).dropna() for ip in _ips(v)})
    public_local = [ip for ip in local if resolver.lookup(ip).scope == "public"]
    public = sorted(set(mapped) | set(public_local))
    if stated is not None:
        v = stated
    else:
        v = vantage_from_ips(public, resolver)
    return {
        "local_ips": local[:50],
        "public_ips": public[:50],
        "country": v.country,
        "latitude": v.latitude,
        "longitude": v.longitude,
        "source": v.source,
    }


def _ips(value: Any) -> list[str]:
    if isinstance(value, str):
        return [p.rsplit(":", 1)[0] if p.count(":") == 1 else p for p in value.split(",") if p]
    try:
        return [str(x[0]) if isinstance(x, tuple | list) else str(x) for x in value]
    except TypeError:
        return []


def _plausibility(flows: pd.DataFrame, vantage: dict[str, Any]) -> pd.DataFrame:
    """Speed-of-light check per flow. The distance depends only on (vantage, country), so it is
    computed once per country (a border distance costs tens of milliseconds)."""
    from analyzer.geo.plausibility import check_plausible

    out = flows.copy()
    rtt = out["tcp_rtt_ms"].astype(float)
    if "stun_rtt_ms" in out:
        rtt = np.fmin(rtt, out["stun_rtt_ms"].astype(float))
    out["min_rtt_ms"] = rtt
    latlon = (vantage["latitude"], vantage["longitude"]) if vantage.get("latitude") is not None else None
    countries = [
        c if sc == "public" and c and c != "ZZ" else None
        for c, sc in zip(out["remote_country"], out["remote_scope"], strict=True)
    ]
    distance = {c: check_plausible(latlon, c, 0.0)[1] for c in set(countries) if c}
    dist = np.array([distance.get(c, math.nan) if c else math.nan for c in countries], dtype=float)
    bound = rtt.to_numpy() * 100.0  # light in fibre: ~100 km per ms of round trip
    out["geo_distance_km"] = dist
    out["geo_bound_km"] = bound
    out["geo_implausible"] = np.isfinite(dist) & np.isfinite(bound) & (dist > bound)
    return out


def _sum_roles(values: Iterable[Any]) -> dict[str, int]:
    total: dict[str, int] = dict.fromkeys(ROLES, 0)
    for d in values:
        if isinstance(d, dict):
            for k, v in d.items():
                total[k] = total.get(k, 0) + int(v)
    return {k: v for k, v in total.items() if v}


def _apps(flows: pd.DataFrame) -> list[dict[str, Any]]:
    if flows.empty:
        return []
    g = flows.groupby(flows["app"].fillna("unknown"))
    out = [
        {
            "app": app,
            "flows": len(df),
            "packets": int(df["packets"].sum()),
            "bytes": int(df["bytes"].sum()),
            "bytes_by_role": _sum_roles(df["bytes_by_role"]),
        }
        for app, df in g
    ]
    return sorted(out, key=lambda r: -r["bytes"])


def _countries(flows: pd.DataFrame) -> list[dict[str, Any]]:
    pub = flows[flows["remote_scope"] == "public"]
    if pub.empty:
        return []
    out = []
    for cc, df in pub.groupby(pub["remote_country"].fillna("ZZ")):
        out.append(
            {
                "country": cc,
                "flows": len(df),
                "packets": int(df["packets"].sum()),
                "bytes": int(df["bytes"].sum()),
                "bytes_by_role": _sum_roles(df["bytes_by_role"]),
                "apps": sorted(set(df["app"].fillna("unknown"))),
                "asns": sorted({int(a) for a in df["remote_asn"].dropna()}),
            }
        )
    return sorted(out, key=lambda r: -r["bytes"])


def _local(flows: pd.DataFrame) -> dict[str, Any]:
    loc = flows[flows["remote_scope"] != "public"]
    return {
        "flows": len(loc),
        "packets": int(loc["packets"].sum()) if len(loc) else 0,
        "bytes": int(loc["bytes"].sum()) if len(loc) else 0,
        "by_scope": {str(k): int(v) for k, v in loc["remote_scope"].value_counts().items()},
        "bytes_by_role": _sum_roles(loc["bytes_by_role"]),
    }


def _has_role(roles: Any, role: str) -> bool:
    return isinstance(roles, list | tuple | set | frozenset | np.ndarray) and role in list(roles)


def _key_exchange(flows: pd.DataFrame) -> list[dict[str, Any]]:
    kx = flows[[_has_role(r, "key_exchange") for r in flows["roles"]]] if len(flows) else flows
    return [
        {
            "flow_id": int(r["flow_id"]),
            "app": r["app"],
            "protocol": r["protocol"],
            "server_ip": r["remote_ip"],
            "server_port": int(r["server_port"] if r["remote_ip"] == r["server_ip"] else r["client_port"]),
            "hostname": _opt(r.get("hostname")),
            "country": _opt(r["remote_country"]),
            "asn": _opt_int(r["remote_asn"]),
            "org": _opt(r["remote_org"]),
            "scope": r["remote_scope"],
            "bytes": int(r["bytes"]),
            "first_ts": float(r["first_ts"]),
        }
        for _, r in kx.iterrows()
    ]


def _media(flows: pd.DataFrame, streams: pd.DataFrame) -> list[dict[str, Any]]:
    med = flows[[_has_role(r, "media") for r in flows["roles"]]] if len(flows) else flows
    by_flow: dict[int, list[dict[str, Any]]] = {}
    if not streams.empty and "flow_id" in streams:
        for fid, df in streams.groupby("flow_id"):
            by_flow[int(fid)] = [_stream_record(s) for _, s in df.iterrows()]
    return [
        {
            "flow_id": int(r["flow_id"]),
            "app": r["app"],
            "protocol": r["protocol"],
            "server_ip": r["remote_ip"],
            "server_port": int(r["server_port"]),
            "country": _opt(r["remote_country"]),
            "asn": _opt_int(r["remote_asn"]),
            "org": _opt(r["remote_org"]),
            "packets": int(r["packets"]),
            "bytes": int(r["bytes"]),
            "media_bytes": int((r["bytes_by_role"] or {}).get("media", 0))
            if isinstance(r["bytes_by_role"], dict)
            else 0,
            "streams": by_flow.get(int(r["flow_id"]), []),
        }
        for _, r in med.iterrows()
    ]


def _stream_record(s: pd.Series) -> dict[str, Any]:
    keep = (
        "verdict",
        "verdict_reason",
        "ssrc",
        "media_type",
        "dir",
        "payload_type",
        "packets",
        "bytes",
        "duration_s",
        "bitrate_bps",
        "lost",
        "expected",
        "reordered",
        "jitter_ms",
        "ecb_blocks",
        "ecb_repeats",
        "ecb_like",
        "unencrypted_like",
    )
    return {k: _plain(s[k]) for k in keep if k in s.index}


def _judge_streams(streams: pd.DataFrame) -> pd.DataFrame:
    """Add the media verdict (ecb_like / unencrypted_like / ciphertext_like / insufficient) per stream."""
    if streams.empty:
        return streams
    from analyzer.scan.media import media_verdict

    out = streams.copy()
    verdicts = [media_verdict(row) for _, row in out.iterrows()]
    out["verdict"] = [v for v, _r in verdicts]
    out["verdict_reason"] = [r for _v, r in verdicts]
    out["ecb_like"] = out["verdict"] == "ecb_like"
    out["unencrypted_like"] = out["verdict"] == "unencrypted_like"
    out["ecb_random_expected"] = out.get("ecb_repeats_expected_random", 0.0)
    out["ecb_reason"] = out["verdict_reason"]
    return out


def _meetings(flows: pd.DataFrame) -> list[dict[str, Any]]:
    """Flows of one app whose activity overlaps in time form one meeting (unknown/DNS excluded)."""
    out = []
    apps = flows[~flows["app"].fillna("unknown").isin(["unknown", "webrtc"])] if len(flows) else flows
    for app, df in apps.groupby("app"):
        spans = sorted(zip(df["first_ts"], df["last_ts"], df["flow_id"], strict=True))
        start, end, ids = spans[0][0], spans[0][1], [spans[0][2]]
        for s, e, fid in spans[1:]:
            if s <= end + 30.0:  # a 30 s gap still belongs to the same meeting
                end, ids = max(end, e), [*ids, fid]
            else:
                out.append(_meeting(app, start, end, ids))
                start, end, ids = s, e, [fid]
        out.append(_meeting(app, start, end, ids))
    return out


def _meeting(app: str, start: float, end: float, ids: list[int]) -> dict[str, Any]:
    return {
        "app": app,
        "start_ts": float(start),
        "end_ts": float(end),
        "duration_s": float(end - start),
        "flow_ids": sorted(int(i) for i in ids),
    }


def _flow_records(flows: pd.DataFrame) -> list[dict[str, Any]]:
    cols = [c for c in FLOW_REPORT_COLUMNS if c in flows]
    return [{k: _plain(v) for k, v in zip(cols, row, strict=True)} for row in flows[cols].itertuples(index=False)]


def _attributions(resolver: Any) -> list[dict[str, str]]:
    out = [
        {"text": "IP Geolocation by DB-IP", "url": "https://db-ip.com"},
        {"text": "ASN data: RouteViews, NRO and DB-IP via ip-location-db (CC BY 4.0)", "url": ""},
        {"text": "Country and RIR data: NRO / RIR delegated statistics (iptocc)", "url": ""},
        {"text": "Map: Natural Earth (public domain) via world-atlas", "url": ""},
    ]
    if any("GeoLite" in str(d.get("type", "")) for d in resolver.provenance()):
        out.append({"text": "This product includes GeoLite2 data created by MaxMind", "url": "https://www.maxmind.com"})
    return out


def _opt(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return None
    return v


def _opt_int(v: Any) -> int | None:
    v = _opt(v)
    return None if v is None else int(v)


def _plain(v: Any) -> Any:
    """numpy/pandas scalars and containers -> JSON-able Python values."""
    if v is None or v is pd.NA:
        return None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating | float):
        return None if math.isnan(float(v)) else float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.ndarray | tuple | set | frozenset):
        return [_plain(x) for x in (sorted(v) if isinstance(v, set | frozenset) else v)]
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return v
