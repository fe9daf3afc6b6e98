"""The analysed session as the API hands it out: the report dict of the contract plus pandas tables."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd


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

    def write(self, out_dir: str | Path, formats: Iterable[str] | None = None) -> dict[str, Path]:
        from analyzer.report import FORMATS, write_reports

        return write_reports(self.report, self.flows, out_dir, FORMATS if formats is None else formats)

