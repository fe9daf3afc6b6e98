"""When the capture's traffic happened: periods of activity separated by long gaps, and timestamps
no real capture can have.

A capture file can join recordings made years apart (nDPI's zoom.pcap holds 2019 and 2023
traffic) or carry a packet stamped 1970 (a clock that was never set). First-to-last-packet
duration is then meaningless, so the report states the periods and their active time, and a
finding says why.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd

from analyzer.common.words import human_duration, plural
from analyzer.session.findings import finding

# Silence longer than this splits the capture into periods: a call's keep-alives and STUN checks
# arrive every few seconds to minutes, so an hour without any packet is another recording.
GAP_S = 3600.0
# Before this no conferencing capture can have been made (1995-01-01 UTC): earlier timestamps
# come from an unset clock.
EARLIEST_PLAUSIBLE_TS = 788_918_400.0


def time_segments(flows: pd.DataFrame, gap_s: float = GAP_S) -> list[dict[str, Any]]:
    """Periods of activity: flows whose [first_ts, last_ts] lie within `gap_s` of each other
    (vectorised: a period starts where a flow begins more than `gap_s` after every earlier flow
    has ended)."""
    if flows.empty or "first_ts" not in flows:
        return []
    df = flows[["flow_id", "first_ts", "last_ts", "packets"]].sort_values("first_ts", kind="stable")
    first = df["first_ts"].to_numpy(float)
    last = np.fmax(df["last_ts"].to_numpy(float), first)
    ended = np.maximum.accumulate(last)
    starts = np.r_[True, first[1:] > ended[:-1] + gap_s]
    seg = np.cumsum(starts) - 1
    out: list[dict[str, Any]] = []
    ids = df["flow_id"].to_numpy()
    packets = df["packets"].to_numpy()
    for k in range(int(seg[-1]) + 1):
        mask = seg == k
        start, end = float(first[mask].min()), float(last[mask].max())
        out.append(
            {
                "start_ts": start,
                "end_ts": end,
                "duration_s": end - start,
                "flows": int(mask.sum()),
                "packets": int(packets[mask].sum()),
                "implausible": end < EARLIEST_PLAUSIBLE_TS,
                "flow_ids": [int(x) for x in ids[mask]],
            }
        )
    return out


def _when(ts: float) -> str:
    return pd.Timestamp(ts, unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M:%S UTC")


def timing_findings(segments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """TIMESTAMP_OUTLIERS for periods stamped before 1995; TIME_GAPS when the plausible
    traffic falls into several periods. Both say how durations are reported instead."""
    out = []
    bad = [s for s in segments if s["implausible"]]
    good = [s for s in segments if not s["implausible"]]
    if bad:
        packets = sum(s["packets"] for s in bad)
        out.append(
            finding(
                "TIMESTAMP_OUTLIERS",
                "low",
                "Packets with impossible timestamps",
                f"{plural(packets, 'packet')} in {plural(sum(s['flows'] for s in bad), 'flow')} are stamped "
                f"{_when(bad[0]['start_ts'])}, before any conferencing capture could be made (the "
                "capturing clock was not set). They are left out of the active time; the first-to-last "
                "duration of the capture is meaningless.",
                [f for s in bad for f in s["flow_ids"]],
                confidence="high",
                evidence="flow first/last timestamps (first_ts, last_ts)",
            )
        )
    if len(good) > 1:
        gaps = [b["start_ts"] - a["end_ts"] for a, b in itertools.pairwise(good)]
        periods = "; ".join(
            f"{_when(s['start_ts'])} for {human_duration(s['duration_s'])} ({plural(s['flows'], 'flow')})"
            for s in good[:5]
        ) + (f"; and {plural(len(good) - 5, 'more period')}" if len(good) > 5 else "")
        gap_text = (
            f"a gap of {human_duration(gaps[0])}" if len(gaps) == 1 else f"gaps of up to {human_duration(max(gaps))}"
        )
        out.append(
            finding(
                "TIME_GAPS",
                "low",
                "The capture joins traffic from separate periods",
                f"Traffic falls into {len(good)} periods separated by {gap_text}: {periods}. "
                "The capture likely joins several recordings; "
                "durations are given per period (active time), not first to last packet.",
                [f for s in good[1:] for f in s["flow_ids"]],
                confidence="high",
                evidence=f"flow first/last timestamps; silences longer than {human_duration(GAP_S)}",
            )
        )
    return out


def active_seconds(segments: list[dict[str, Any]]) -> float:
    """Time with traffic: the plausible periods' durations added up."""
    return float(sum(s["duration_s"] for s in segments if not s["implausible"]))


def capture_timing(segments: list[dict[str, Any]]) -> dict[str, Any]:
    """What the report's `capture` gains: the active time and the periods (without flow lists)."""
    return {
        "active_s": active_seconds(segments),
        "time_segments": [{k: v for k, v in s.items() if k != "flow_ids"} for s in segments],
    }
