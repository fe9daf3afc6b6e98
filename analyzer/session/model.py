"""The analysed session: the report dict of the contract plus pandas tables. Rendering it is the
report stage's job; `analyzer.Session` (analyzer/api.py) adds the renderers for API users."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

# The dtype pandas gives a column of text (pandas 3: `str`; pandas 2: object).
_TEXT_DTYPE = pd.Series(["x"]).dtype


def _shown(v: Any) -> str:
    return ", ".join(map(str, v)) if isinstance(v, list) else "" if v is None else str(v)


def one_text_dtype(flows: pd.DataFrame) -> pd.DataFrame:
    """Columns that hold only text (or nothing) get the same dtype as the scan's text columns, so
    `app` and `transport` compare, concatenate and save alike."""
    out = flows
    for col in flows.columns:
        series = flows[col]
        if series.dtype != object or series.dtype == _TEXT_DTYPE:
            continue
        # infer_dtype runs in C: no per-flow Python on large tables.
        if pd.api.types.infer_dtype(series, skipna=True) == "string":
            if out is flows:
                out = flows.copy()
            out[col] = series.astype(_TEXT_DTYPE)
    return out


def with_datetimes(flows: pd.DataFrame) -> pd.DataFrame:
    """`first_time` and `last_time` (UTC, timezone-aware) beside the epoch columns they come from."""
    if "first_ts_ns" not in flows or "first_time" in flows:
        return flows
    out = flows.copy()
    for name in ("first", "last"):
        ns = out[f"{name}_ts_ns"]
        at = out.columns.get_loc(f"{name}_ts_ns") + 1
        out.insert(at, f"{name}_time", pd.to_datetime(ns, unit="ns", utc=True))
    return out


@dataclass
class Session:
    """One analysed capture: pandas tables plus the report dict of the contract."""

    report: dict[str, Any]
    flows: pd.DataFrame
    streams: pd.DataFrame = field(default_factory=pd.DataFrame)
    # One row per (media stream, second): packets, bytes, bitrate, frames, frame rate, loss and
    # jitter (analyzer/session/streams.py); `stream_id` joins it to `streams`.
    stream_seconds: pd.DataFrame = field(default_factory=pd.DataFrame)

    def __post_init__(self) -> None:
        self.flows = with_datetimes(one_text_dtype(self.flows))

    def __repr__(self) -> str:
        # The dataclass default would print every table (tens of KB in a notebook).
        facts = self._facts()
        return "Session(" + ", ".join(f"{k}={v!r}" for k, v in facts.items()) + ")"

    def _repr_html_(self) -> str:
        """Jupyter: the key facts and the findings as a small table."""
        from html import escape

        rows = "".join(
            f"<tr><th style='text-align:left'>{escape(str(k))}</th>"
            f"<td style='text-align:left'>{escape(_shown(v))}</td></tr>"
            for k, v in self._facts().items()
        )
        findings = "".join(
            f"<li><b>{escape(str(f.get('severity', '')).upper())}</b> {escape(str(f.get('code', '')))}: "
            f"{escape(str(f.get('title', '')))}</li>"
            for f in self.report.get("findings") or []
        )
        return (
            f"<div><b>confscope Session</b><table>{rows}</table>"
            + (f"<ul>{findings}</ul>" if findings else "<p>No findings.</p>")
            + "</div>"
        )

    def _facts(self) -> dict[str, Any]:
        cap = self.report.get("capture") or {}
        policy = self.report.get("policy") or {}
        return {
            "capture": cap.get("name") or cap.get("path"),
            "packets": cap.get("packets"),
            "flows": len(self.flows),
            "countries": [c.get("country") for c in self.report.get("countries") or []],
            "vantage": (self.report.get("vantage") or {}).get("country"),
            "findings": len(self.report.get("findings") or []),
            "violations": len(policy.get("violations") or []),
        }

    @property
    def vantage(self) -> dict[str, Any]:
        """Where the capture was taken: country, latitude, longitude, source (how it was learnt),
        the capture's local and public addresses."""
        return dict(self.report.get("vantage") or {})

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

