"""The public API: `analyze` returns a Session that also renders itself.

It sits above the report stage, so the session stage never imports its renderers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any

from analyzer import report
from analyzer.capture.source import CaptureSource
from analyzer.session import build, model


class Session(model.Session):
    """One analysed capture (see `analyzer.session.model.Session`) that writes its own reports."""

    @classmethod
    def of(cls, session: model.Session) -> Session:
        if isinstance(session, cls):
            return session
        return cls(**{f.name: getattr(session, f.name) for f in fields(session)})

    def to_json(self) -> str:
        return report.to_json(self.report)

    def to_markdown(self) -> str:
        return report.to_markdown(self.report)

    def to_html(self) -> str:
        return report.to_html(self.report, self.flows)

    def write(self, out_dir: str | Path, formats: Iterable[str] = report.FORMATS) -> dict[str, Path]:
        """Write the chosen formats (report.json/.md/.html, flows.csv/.parquet) into out_dir; with
        parquet also streams.parquet and stream_seconds.parquet (the media streams per second)."""
        return report.write_reports(self.report, self.flows, out_dir, formats, streams=self.streams,
                                    stream_seconds=self.stream_seconds)


def analyze(source: CaptureSource, **kwargs: Any) -> Session:
    """Analyse one capture (path, bytes or binary file object); see `analyzer.session.build.analyze`."""
    return Session.of(build.analyze(source, **kwargs))


analyze.__doc__ = build.analyze.__doc__
