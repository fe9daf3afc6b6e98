"""Dissection: one module per protocol (pure parsers) plus the per-flow orchestration.

`dissect_flows(flows, samples)` runs the parsers over each flow's payload samples and returns a
`DissectResult` with one row of facts per flow and the DNS answer table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analyzer.dissect.flowfacts import FACT_COLUMNS, DissectResult, dissect_flows

__all__ = ["FACT_COLUMNS", "DissectResult", "dissect_flows"]


def __getattr__(name: str) -> Any:
    # Lazy: the scan imports analyzer.dissect.kinds on its hot path and must not pay for the
    # parsers (cryptography for QUIC and certificates) unless dissection is asked for.
    if name in __all__:
        from analyzer.dissect import flowfacts

        return getattr(flowfacts, name)
    raise AttributeError(f"module 'analyzer.dissect' has no attribute {name!r}")
