"""The analysed session: the report dict of the contract plus pandas tables. Rendering it is the
report stage's job; `analyzer.Session` (analyzer/api.py) adds the renderers for API users."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass
class Session:
    """One analysed capture: pandas tables plus the report dict of the contract."""

    report: dict[str, Any]
    flows: pd.DataFrame
    streams: pd.DataFrame = field(default_factory=pd.DataFrame)
    # One row per (media stream, second): packets, bytes, bitrate, frames, frame rate, loss and
    # jitter (analyzer/session/streams.py); `stream_id` joins it to `streams`.
    stream_seconds: pd.DataFrame = field(default_factory=pd.DataFrame)

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

