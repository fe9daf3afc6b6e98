"""Classification: which app each flow belongs to (with evidence and confidence), what protocol
it speaks, its host name, its roles and how its bytes split between roles.

`classify_flows(flows, facts, dns)` returns a copy of the flow table with the columns
app, app_confidence, app_evidence, protocol, hostname, roles, bytes_by_role.

app_confidence is a float in [0, 1] (see analyzer/data/signatures.toml for the scale):
>= 0.9 a verified byte signature or the service's own name; 0.6-0.9 address range plus port,
a DNS-derived name or inheritance; < 0.6 weak (address space alone, same address as another
flow). `webrtc` (0.6) and `unknown` (0.0) are the fallbacks.
"""

from __future__ import annotations

import pandas as pd

from analyzer.classify.apps import Attribution, DnsIndex, attribute
from analyzer.classify.roles import ROLES, channel_role, other_by_kind, roles_of, split_bytes
from analyzer.classify.signatures import CONTRACT_APPS, Signatures, load_signatures
from analyzer.common.records import records as frame_records
from analyzer.dissect import registry
from analyzer.dissect.names import host_name

__all__ = ["CONTRACT_APPS", "ROLES", "Signatures", "classify_flows", "classify_scan", "load_signatures"]

OUTPUT_COLUMNS = ("app", "app_confidence", "app_evidence", "protocol", "hostname", "roles", "bytes_by_role",
                  "other_by_kind")

# Dominant payload kind -> protocol name, for flows whose samples said nothing (declared by the
# protocol modules, analyzer/dissect/registry.py).
_KIND_PROTOCOL: dict[str, str] = registry.KIND_LABEL


def classify_flows(
    flows: pd.DataFrame,
    facts: pd.DataFrame | None,
    dns: pd.DataFrame | None,
    signatures: Signatures | None = None,
) -> pd.DataFrame:
    """The flow table with app, app_confidence, app_evidence, protocol, hostname, roles and
    bytes_by_role added (one row per flow, same order)."""
    sig = signatures or load_signatures()
    out = flows.copy()
    if flows.empty:
        for col in OUTPUT_COLUMNS:
            out[col] = pd.Series(dtype="object")
        return out
    index = DnsIndex(dns)
    atts = attribute(flows, facts if facts is not None else pd.DataFrame(), dns, sig, index)
    kind_cols = [c for c in flows.columns if c.startswith("kind_bytes_")]
    kind_names = [c[len("kind_bytes_") :] for c in kind_cols]
    kind_matrix = flows[kind_cols].to_numpy(dtype="int64") if kind_cols else None
    fact_rows = _facts_rows(flows, facts)
    cols: dict[str, list] = {c: [] for c in OUTPUT_COLUMNS}
    for i, (flow, f, att) in enumerate(zip(frame_records(flows), fact_rows, atts, strict=True)):
        kb = dict(zip(kind_names, kind_matrix[i].tolist(), strict=True)) if kind_matrix is not None else {}
        protocol = _protocol(flow, f, kb)
        cols["app"].append(att.app)
        cols["app_confidence"].append(float(att.confidence))
        cols["app_evidence"].append(list(att.evidence))
        cols["protocol"].append(protocol)
        cols["hostname"].append(_hostname(flow, f, index))
        split, roles = _roles(flow, f, att, protocol, kb)
        cols["roles"].append(roles)
        cols["bytes_by_role"].append(split)
        cols["other_by_kind"].append(other_by_kind(kb))
    for col, values in cols.items():
        out[col] = pd.Series(values, index=out.index, dtype=object)
    out["app_confidence"] = out["app_confidence"].astype(float)
    return out


def classify_scan(result) -> pd.DataFrame:
    """Dissect a scan's samples and attribute apps and roles; the dissection facts stay as columns."""
    from analyzer.dissect import dissect_flows

    dissected = dissect_flows(result.flows, result.samples)
    info = getattr(result, "info", None)
    for line in dissected.warnings():  # a bound that cut something is reported, never silent
        if info is not None:
            info.warn(line, force=True)
    classified = classify_flows(result.flows, dissected.facts, dissected.dns)
    facts = dissected.facts.drop(columns=[c for c in dissected.facts.columns if c in classified.columns])
    return classified.join(facts, on="flow_id")


def _facts_rows(flows: pd.DataFrame, facts: pd.DataFrame | None) -> list[dict]:
    if facts is None or facts.empty:
        return [{} for _ in range(len(flows))]
    return frame_records(facts.reindex(flows["flow_id"].to_numpy()))


def _val(f: dict, key: str):
    v = f.get(key)
    if v is None or (isinstance(v, float) and v != v):
        return None
    return v


def _protocol(flow: dict, f: dict, kb: dict[str, int]) -> str:
    proto = _val(f, "protocol")
    media = kb.get("rtp", 0) + kb.get("rtcp", 0)
    encrypted = bool(_val(f, "dtls_handshake")) or kb.get("dtls_handshake", 0) > 0 or bool(_val(f, "srtp"))
    if proto in (None, "stun", "turn", "dtls", "rtp") and media > 0:
        # The samples stop after the first packets; the per-packet kinds see the RTP that follows
        # a DTLS handshake on the same 5-tuple (RFC 5764: that RTP is SRTP).
        return "srtp" if encrypted else "rtp"
    if proto:
        return str(proto)
    known = {k: v for k, v in kb.items() if k in _KIND_PROTOCOL and v > 0}
    if known:
        return _KIND_PROTOCOL[max(known, key=known.get)]
    return str(flow.get("transport") or "unknown")


def _hostname(flow: dict, f: dict, index: DnsIndex) -> str | None:
    sni = _val(f, "sni")
    if sni:
        return str(sni)
    http = _val(f, "http_host")
    if http:
        return str(http)
    first_ns = int(flow.get("first_ts_ns") or 0)
    for key in ("server_ip", "client_ip"):
        name = index.hostname(str(flow.get(key, "")), first_ns)
        if name:
            return name
    for key in ("cert_subject", "dtls_cert"):
        # A certificate CN is free text (any UTF-8, controls, TAG characters): only a plausible
        # DNS name may stand in for a host name, like an SNI.
        name = host_name(_val(f, key))
        if name:
            return name
    return None


def _roles(
    flow: dict, f: dict, att: Attribution, protocol: str, kb: dict[str, int]
) -> tuple[dict[str, int], list[str]]:
    protos = list(_val(f, "protocols") or [])
    sdp_keys = bool(_val(f, "sdp_key_exchange"))
    transport = str(flow.get("transport") or "")
    chan = channel_role(transport, protocol, protos, att.app, att.channel, sdp_keys, kb)
    total = int(flow.get("bytes") or 0)
    split = split_bytes(total, kb, chan)
    return split, roles_of(split, chan, transport, att.channel, sdp_keys)
