"""Many analysed captures as one dataset: the session tables concatenated with a `capture`
column, one row per session, the failures, and a cross-session summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analyzer import __version__

SCHEMA = "confscope.batch/1"
TABLES = ("flows", "countries", "key_exchange", "media", "findings")
SEVERITIES = ("critical", "high", "medium", "low", "info")


def session_summary(report: dict[str, Any], flows: pd.DataFrame) -> dict[str, Any]:
    """The few facts per session that the cross-session summary needs (JSON-able)."""
    cap = report.get("capture", {})
    pub = flows[flows["remote_scope"] == "public"] if "remote_scope" in flows and len(flows) else flows.iloc[0:0]
    by_app: dict[str, list[str]] = {}
    if len(pub):
        for app, df in pub.groupby(pub["app"].fillna("unknown")):
            by_app[str(app)] = sorted({str(c) for c in df["remote_country"].fillna("ZZ")})
    viol = report.get("policy", {}).get("violations", [])
    sev = Counter(f.get("severity", "info") for f in report.get("findings", []))
    return {
        "sha256": cap.get("sha256"),
        "packets": int(cap.get("packets") or 0),
        "bytes": int(cap.get("bytes") or 0),
        "duration_s": float(cap.get("duration_s") or 0.0),
        "flows": len(report.get("flows", [])),
        "apps": [a["app"] for a in report.get("apps", [])],
        "countries": [c["country"] for c in report.get("countries", [])],
        "countries_by_app": by_app,
        "key_exchange_countries": sorted({str(k.get("country") or "ZZ") for k in report.get("key_exchange", [])
                                          if k.get("scope", "public") == "public"}),
        "violations": len(viol),
        "violation_countries": sorted({str(v.get("country")) for v in viol}),
        "findings": {s: int(sev.get(s, 0)) for s in SEVERITIES},
        "exit_code": 1 if viol or sev.get("critical") else 0,
    }


def cross_summary(sessions: list[dict[str, Any]], failures: list[dict[str, Any]],
                  options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Summary across sessions. `sessions`: {"capture", "path", **session_summary}; `failures`:
    {"capture", "path", "error"}.

    >>> s = cross_summary([{"capture": "a", "path": "a.pcap", "countries_by_app": {"zoom": ["CN", "US"]},
    ...                     "violations": 2, "findings": {"high": 1}, "exit_code": 1}], [])
    >>> s["countries_per_app"], s["sessions_with_violations"]
    ({'zoom': ['CN', 'US']}, ['a'])
    """
    per_app: dict[str, set[str]] = {}
    apps_sessions: Counter = Counter()
    for s in sessions:
        for app, ccs in (s.get("countries_by_app") or {}).items():
            per_app.setdefault(app, set()).update(ccs)
            apps_sessions[app] += 1
    return {
        "schema": SCHEMA,
        "tool": {"name": "confscope", "version": __version__},
        "options": options or {},
        "totals": {
            "captures": len(sessions) + len(failures),
            "analysed": len(sessions),
            "failed": len(failures),
            "with_violations": sum(1 for s in sessions if s.get("violations")),
            "packets": sum(int(s.get("packets") or 0) for s in sessions),
            "bytes": sum(int(s.get("bytes") or 0) for s in sessions),
        },
        "countries_per_app": {app: sorted(ccs) for app, ccs in sorted(per_app.items())},
        "sessions_per_app": dict(sorted(apps_sessions.items())),
        "sessions_with_violations": [s["capture"] for s in sessions if s.get("violations")],
        "findings_per_session": {s["capture"]: {k: int((s.get("findings") or {}).get(k, 0)) for k in SEVERITIES}
                                 for s in sessions},
        "sessions": sessions,
        "failures": failures,
    }


@dataclass
class Dataset:
    """Sessions of many captures as pandas tables; every table has a leading `capture` column.

    Built by `analyzer.analyze_many`; see its docstring for an example.
    """

    flows: pd.DataFrame = field(default_factory=pd.DataFrame)
    countries: pd.DataFrame = field(default_factory=pd.DataFrame)
    key_exchange: pd.DataFrame = field(default_factory=pd.DataFrame)
    media: pd.DataFrame = field(default_factory=pd.DataFrame)
    findings: pd.DataFrame = field(default_factory=pd.DataFrame)
    sessions: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per analysed capture
    failures: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["capture", "path", "error"]))
    summary: dict[str, Any] = field(default_factory=dict)
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)  # capture -> report dict

    @property
    def countries_per_app(self) -> pd.DataFrame:
        """One row per app: the countries its remote endpoints were in, over all sessions."""
        rows = [{"app": a, "countries": c, "sessions": self.summary.get("sessions_per_app", {}).get(a, 0)}
                for a, c in self.summary.get("countries_per_app", {}).items()]
        return pd.DataFrame(rows, columns=["app", "countries", "sessions"])

    @property
    def sessions_with_violations(self) -> list[str]:
        return list(self.summary.get("sessions_with_violations", []))

    @property
    def findings_per_session(self) -> pd.DataFrame:
        """Findings counted by severity, one row per session."""
        rows = [{"capture": k, **v} for k, v in self.summary.get("findings_per_session", {}).items()]
        df = pd.DataFrame(rows, columns=["capture", *SEVERITIES])
        df["total"] = df[list(SEVERITIES)].sum(axis=1)
        return df

    @property
    def exit_code(self) -> int:
        """1 when any session violates the policy or has a critical finding, else 0."""
        return 1 if any(s.get("exit_code") for s in self.summary.get("sessions", [])) else 0


def build_dataset(results: list[dict[str, Any]], options: dict[str, Any] | None = None) -> Dataset:
    """A Dataset from per-capture task results (see `analyzer.batch.run.capture_task`), in input order."""
    tables: dict[str, list[pd.DataFrame]] = {t: [] for t in TABLES}
    sessions, failures, reports = [], [], {}
    for r in results:
        if r.get("error"):
            failures.append({"capture": r["capture"], "path": r["path"], "error": r["error"]})
            continue
        sessions.append({"capture": r["capture"], "path": r["path"], **r["summary"]})
        reports[r["capture"]] = r.get("report") or {}
        for t in TABLES:
            df = r.get("tables", {}).get(t)
            if df is not None and len(df):
                tables[t].append(df.assign(capture=r["capture"])[["capture", *df.columns]])
    summary = cross_summary(sessions, failures, options)
    cols = ["capture", "path", "sha256", "packets", "bytes", "duration_s", "flows", "apps", "countries",
            "violations", "exit_code"]
    return Dataset(
        **{t: (pd.concat(v, ignore_index=True) if v else pd.DataFrame(columns=["capture"])) for t, v in tables.items()},
        sessions=pd.DataFrame([{k: s.get(k) for k in cols} for s in sessions], columns=cols),
        failures=pd.DataFrame(failures, columns=["capture", "path", "error"]),
        summary=summary,
        reports=reports,
    )
