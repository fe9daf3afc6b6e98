"""Flow tables by three engines: native (numpy, the fast path), tshark and scapy (independent
code, slower, for cross-checks: `confscope verify`)."""

from __future__ import annotations

import pandas as pd

from analyzer.capture.source import CaptureSource
from analyzer.errors import OptionError

ENGINES = ("native", "tshark", "scapy")


def build_flows(source: CaptureSource, engine: str = "native") -> pd.DataFrame:
    """The flow table (docs/internals.md columns) of one capture by the chosen engine."""
    if engine == "native":
        from analyzer.scan.scanner import scan_capture

        return scan_capture(source, keep_samples=False).flows
    if engine == "tshark":
        from analyzer.engines.tshark import tshark_flows

        return tshark_flows(_need_path(source, engine))
    if engine == "scapy":
        from analyzer.engines.scapy_engine import scapy_flows

        return scapy_flows(_need_path(source, engine))
    raise OptionError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")


def _need_path(source: CaptureSource, engine: str):
    if isinstance(source, bytes | bytearray | memoryview) or hasattr(source, "read"):
        raise OptionError(f"the {engine} engine reads capture files only, not in-memory data")
    return source
