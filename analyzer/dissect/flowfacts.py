"""Per-flow dissection: run the registered dissect hooks over each flow's payload samples and
collect one row of facts per flow, plus the table of every DNS answer seen.

Only the samples are read (the first packets of each direction and the control packets that the
scan keeps), so the cost is bounded by the number of flows, not the number of packets. What each
protocol does lives in its module (registry.py lists them); this module only orders the hooks:

- UDP: the flow hooks (DNS claims its ports), then each datagram goes down the packet ladder until
  a hook claims it, then the finishing hooks (DTLS flights, QUIC Initials, pooled RTP statistics).
- TCP: the streams are reassembled per direction and every stream hook runs, unless one says the
  flow is done (DNS over TCP).

Every parser is pure and returns None on malformed input; a guard per flow makes sure one hostile
flow can never stop the dissection of the others.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analyzer.dissect import registry, tcpstream
from analyzer.dissect.budget import Budget
from analyzer.dissect.spec import Facts, FlowContext, FlowMeta

FACT_COLUMNS: tuple[str, ...] = registry.FACT_COLUMNS
_STREAM_LIMIT = 65536
# Facts whose lists are reported sorted (sets of numbers, not a sequence of events).
_SORTED_FACTS = ("stun_attr_types", "stun_msg_types", "rtp_payload_types", "turn_channels")


@dataclass
class DissectResult:
    facts: pd.DataFrame  # index flow_id, columns FACT_COLUMNS
    dns: pd.DataFrame  # ip, name, ts_ns, cname_chain, flow_id
    errors: dict[str, int] = field(default_factory=dict)  # flows whose dissection failed, by reason
    cuts: dict[str, int] = field(default_factory=dict)  # what a bound dropped (dissect/budget.py)

    def warnings(self) -> list[str]:
        """Lines for the capture's warnings: bounds that cut something, flows whose parsers failed."""
        out = Budget(cuts=Counter(self.cuts)).warnings()
        out += [f"{n} flows not dissected: {reason}" for reason, n in sorted(self.errors.items())]
        return out


def empty_facts() -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series(dtype="object") for c in FACT_COLUMNS})
    df.index.name = "flow_id"
    return df


def empty_dns() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ip": pd.Series(dtype="object"),
            "name": pd.Series(dtype="object"),
            "ts_ns": pd.Series(dtype="int64"),
            "cname_chain": pd.Series(dtype="object"),
            "flow_id": pd.Series(dtype="int64"),
        }
    )


def dissect_flows(flows: pd.DataFrame, samples: pd.DataFrame) -> DissectResult:
    """Facts per flow (index flow_id) and the DNS answer table, from the flows' payload samples."""
    if flows is None or flows.empty:
        return DissectResult(empty_facts(), empty_dns())
    metas = _flow_meta(flows)
    rows: dict[int, dict] = {}
    dns_rows: list[tuple[str, str, int, tuple[str, ...], int]] = []
    errors: dict[str, int] = {}
    budget = Budget()
    if samples is not None and not samples.empty:
        for ctx in _contexts(samples, metas, dns_rows, budget):
            try:
                dissect_one(ctx)
                facts = ctx.facts
            except MemoryError:
                raise  # out of memory is not a parser bug: the run must fail, not lose facts quietly
            except Exception as exc:  # a parser bug must not stop the other flows
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                facts = Facts(errors=[type(exc).__name__])
            rows[ctx.fid] = _finish(facts)
    # Object columns throughout: facts are optional, and a numeric column with gaps would turn
    # its values into floats (a setup version 2 into 2.0).
    index = pd.Index(flows["flow_id"].to_numpy(), name="flow_id")
    facts_df = pd.DataFrame(
        {c: pd.Series([rows.get(int(i), {}).get(c) for i in index], index=index, dtype=object) for c in FACT_COLUMNS}
    )
    if dns_rows:
        dns_df = pd.DataFrame.from_records(dns_rows, columns=["ip", "name", "ts_ns", "cname_chain", "flow_id"])
        dns_df = dns_df.sort_values("ts_ns", kind="stable").reset_index(drop=True)
    else:
        dns_df = empty_dns()
    return DissectResult(facts=facts_df, dns=dns_df, errors=errors, cuts=dict(budget.cuts))


def dissect_one(ctx: FlowContext) -> None:
    """Run the registered hooks of the flow's transport over its samples, filling `ctx.facts`."""
    if ctx.meta.transport == "tcp":
        _tcp(ctx)
    elif ctx.meta.transport == "udp":
        _udp(ctx)


def _flow_meta(flows: pd.DataFrame) -> dict[int, FlowMeta]:
    out: dict[int, FlowMeta] = {}
    cols = zip(
        flows["flow_id"].tolist(), flows["transport"].tolist(), flows["client_port"].tolist(),
        flows["server_port"].tolist(), flows["client_ip"].tolist(), flows["server_ip"].tolist(),
        strict=True,
    )
    for fid, tr, cp, sp, cip, sip_ in cols:
        out[int(fid)] = FlowMeta(str(tr), _int(cp), _int(sp), str(cip), str(sip_))
    return out


def _int(value: object) -> int:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return -1


def _contexts(
    samples: pd.DataFrame, metas: dict[int, FlowMeta], dns_rows: list, budget: Budget
) -> Iterable[FlowContext]:
    """One FlowContext per sampled flow that is in the flow table, sharing the DNS answer list
    and the session's budget."""
    df = samples.sort_values(["flow_id", "frame"], kind="stable")
    fids = df["flow_id"].to_numpy().astype(np.int64)
    if fids.size == 0:
        return
    ts = df["ts_ns"].tolist()
    dirs = df["dir"].tolist()
    seqs = df["tcp_seq"].tolist() if "tcp_seq" in df else [-1] * fids.size
    pays = df["payload"].tolist()
    cuts = np.flatnonzero(np.diff(fids)) + 1
    starts = np.concatenate(([0], cuts)).tolist()
    ends = np.concatenate((cuts, [fids.size])).tolist()
    for a, b in zip(starts, ends, strict=True):
        fid = int(fids[a])
        meta = metas.get(fid)
        if meta is None:
            continue
        yield FlowContext(
            meta, [int(t) for t in ts[a:b]], [int(d) for d in dirs[a:b]], [int(s) for s in seqs[a:b]],
            [bytes(p) if p is not None else b"" for p in pays[a:b]], fid=fid, dns_rows=dns_rows,
            budget=budget,
        )


def _stream(ctx: FlowContext, d: int) -> bytes:
    segs = [(s, p) for s, p, x in zip(ctx.seqs, ctx.payloads, ctx.dirs, strict=True) if x == d and s >= 0]
    return tcpstream.reassemble(segs, limit=_STREAM_LIMIT)


def _tcp(ctx: FlowContext) -> None:
    ctx.streams = {0: _stream(ctx, 0), 1: _stream(ctx, 1)}
    if not ctx.streams[0] and not ctx.streams[1]:
        return
    for hook in registry.TCP_FLOW:
        if hook.fn(ctx):
            return


def _udp(ctx: FlowContext) -> None:
    for hook in registry.UDP_FLOW:
        if hook.fn(ctx):
            return
    ctx.packet = _inner
    for p, d, t in zip(ctx.payloads, ctx.dirs, ctx.ts_ns, strict=True):
        _datagram(ctx, p, d, t)
    for hook in registry.UDP_FINISH:
        hook.fn(ctx)


def _datagram(ctx: FlowContext, p: bytes, d: int, ts_ns: int) -> None:
    """One datagram down the packet ladder, until a hook claims it."""
    if not p:
        return
    for hook in registry.UDP_PACKET:
        if hook.fn(ctx, p, d, ts_ns):
            return


def _inner(ctx: FlowContext, p: bytes, d: int, ts_ns: int) -> None:
    """A datagram carried inside another (TURN ChannelData): down the same ladder, one level deeper."""
    ctx.depth += 1
    try:
        _datagram(ctx, p, d, ts_ns)
    finally:
        ctx.depth -= 1


def _finish(f: Facts) -> dict:
    protos = f.get("protocols", [])
    f["protocol"] = next((p for p in registry.PROTOCOL_ORDER if p in protos), None)
    out = {k: v for k, v in f.items() if k in FACT_COLUMNS}
    for key in _SORTED_FACTS:
        if key in out:
            out[key] = sorted(out[key])
    return out
