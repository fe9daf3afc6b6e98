"""Dissection: one module per protocol plus the per-flow orchestration.

Each protocol module (stun.py, zoom.py, http.py, ...) holds its pure parsers and ends with a
`DISSECTOR` declaration: its payload kinds, its per-packet kind rules, its fact columns and its
dissect hooks (spec.py). registry.py collects them and derives every table the pipeline uses;
kinds.py classifies packets on the scan's hot path; flowfacts.py runs the hooks per flow.
`dissect_flows(flows, samples)` returns a `DissectResult` with one row of facts per flow and the
DNS answer table. How to add a protocol: docs/adding_a_protocol.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analyzer.dissect.flowfacts import FACT_COLUMNS, DissectResult, dissect_flows

__all__ = ["FACT_COLUMNS", "DissectResult", "dissect_flows"]


def __getattr__(name: str) -> Any:
    # Lazy: the scan imports analyzer.dissect.kinds on its hot path and must not pay for pandas
    # (flowfacts) unless dissection is asked for; the parsers import cryptography only when a
    # QUIC Initial or a certificate is decoded.
    if name in __all__:
        from analyzer.dissect import flowfacts

        return getattr(flowfacts, name)
    raise AttributeError(f"module 'analyzer.dissect' has no attribute {name!r}")
