"""Scan one part of a capture (a byte range, or one file of a rotated set) into a partial result,
and combine partial results into exactly the ScanResult a single sequential pass would give.

Flow tables combine with `analyzer.scan.flows.merge_partials`, the merge the chunked reader uses.
Payload samples need more care: a sequential pass keeps the first SAMPLE_FIRST payloads of each
flow direction plus up to SAMPLE_CONTROL later control packets, and "first" depends on what the
earlier parts saw. Each part therefore keeps a superset (its own first packets and its own
control packets, with their local ranks) plus per-direction counts, and `combine_parts` re-ranks
them globally. The superset property: a packet's local rank is never above its global rank.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analyzer.capture import CaptureInfo, CaptureReader
from analyzer.capture.source import CaptureSource
from analyzer.decode import DecodeState
from analyzer.dissect.kinds import KIND_NAMES
from analyzer.scan.flows import finalize, merge_partials
from analyzer.scan.scanner import (
    SAMPLE_CONTROL,
    SAMPLE_FIRST,
    SAMPLE_MAX_BYTES,
    FlowAccumulator,
    ScanResult,
    _attach_flow_ids,
    decode_for_flows,
    warn_decode_counters,
)

SAMPLE_COLUMNS = ["flow_key", "frame", "ts_ns", "adir", "proto", "tcp_seq", "tcp_flags", "payload", "lrank", "ctrl"]


@dataclass
class PartScan:
    """What one worker returns for one part: small enough to pickle back to the parent."""

    table: pd.DataFrame  # merged partial flow table (not finalised)
    samples: pd.DataFrame  # SAMPLE_COLUMNS, frame numbers local to the part
    counts: pd.DataFrame  # flow_key, adir, n (payload packets), c (control payload packets)
    info: CaptureInfo
    decode_counters: Counter = field(default_factory=Counter)


class _PartSampler:
    """Keeps a superset of what the sequential sampler keeps, with local ranks."""

    def __init__(self) -> None:
        self.n: dict[tuple[int, int], int] = {}  # payload packets per direction
        self.c: dict[tuple[int, int], int] = {}  # control payload packets per direction
        self.late: dict[tuple[int, int], int] = {}  # control packets ranked past SAMPLE_FIRST
        self.rows: list[tuple] = []

    def take(self, keys, dirs, chunk, cols, idx, control_mask) -> None:
        cand = np.flatnonzero(cols.l4_len[idx] > 0)
        if not cand.size:
            return
        ck, cd = keys[cand], dirs[cand]
        pairs = list(zip(ck.tolist(), cd.tolist(), strict=True))
        ones = pd.Series(np.ones(cand.size, np.int64))
        rank = ones.groupby([ck, cd]).cumsum().to_numpy() - 1
        rank += np.fromiter((self.n.get(k, 0) for k in pairs), np.int64, cand.size)
        ctrl = control_mask[cand]
        keep = rank < SAMPLE_FIRST
        late = ctrl & ~keep
        if late.any():
            sub = np.flatnonzero(late)
            sk, sd = ck[sub], cd[sub]
            crank = pd.Series(np.ones(sub.size, np.int64)).groupby([sk, sd]).cumsum().to_numpy() - 1
            crank += np.fromiter((self.late.get(pairs[i], 0) for i in sub.tolist()), np.int64, sub.size)
            keep[sub[crank < SAMPLE_CONTROL]] = True
            _add_counts(self.late, sk, sd, np.ones(sub.size, np.int64))
        _add_counts(self.n, ck, cd, np.ones(cand.size, np.int64))
        _add_counts(self.c, ck, cd, ctrl.astype(np.int64))
        k = np.flatnonzero(keep)
        if not k.size:
            return
        sel = idx[cand[k]]
        buf = chunk.buf
        offs, lens = cols.l4_off[sel].tolist(), np.minimum(cols.l4_len[sel], SAMPLE_MAX_BYTES).tolist()
        payloads = [bytes(buf[o : o + ln]) for o, ln in zip(offs, lens, strict=True)]
        self.rows.extend(zip(
            ck[k].tolist(), chunk.frame_no[sel].tolist(), chunk.ts_ns[sel].tolist(), cd[k].tolist(),
            cols.proto[sel].tolist(), cols.tcp_seq[sel].tolist(), cols.tcp_flags[sel].tolist(), payloads,
            rank[k].tolist(), ctrl[k].tolist(), strict=True,
        ))

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        samples = pd.DataFrame.from_records(self.rows, columns=SAMPLE_COLUMNS)
        samples["flow_key"] = samples["flow_key"].astype(np.uint64)
        samples["ctrl"] = samples["ctrl"].astype(bool)
        keys = list(self.n)
        counts = pd.DataFrame({
            "flow_key": np.array([k for k, _ in keys], dtype=np.uint64),
            "adir": np.array([d for _, d in keys], dtype=np.int64),
            "n": np.array([self.n[k] for k in keys], dtype=np.int64),
            "c": np.array([self.c.get(k, 0) for k in keys], dtype=np.int64),
        })
        return samples, counts


def _add_counts(target: dict, keys: np.ndarray, dirs: np.ndarray, values: np.ndarray) -> None:
    for k, v in pd.Series(values).groupby([keys, dirs]).sum().items():
        target[k] = target.get(k, 0) + int(v)


def scan_part(source: CaptureSource, *, name: str | None = None, chunk_bytes: int | None = None) -> PartScan:
    """Scan one self-contained capture stream (a whole file, or a range with its header)."""
    kwargs = {"chunk_bytes": chunk_bytes} if chunk_bytes else {}
    state = DecodeState()
    acc = FlowAccumulator()
    sampler = _PartSampler()
    with CaptureReader(source, name=name, **kwargs) as reader:
        for chunk in reader.chunks():
            d = decode_for_flows(chunk, state, reader.info)
            if d is not None:
                acc.add(d)
                sampler.take(d.keys, d.c["dir"], chunk, d.cols, d.idx, d.control_mask())
        info = reader.info
    samples, counts = sampler.frames()
    return PartScan(acc.merged(), samples, counts, info, Counter(state.counters))


def combine_parts(parts: list[PartScan], info: CaptureInfo) -> ScanResult:
    """Combine parts given in capture order into the ScanResult of one sequential pass.

    `info` is the merged capture description (see `merge_infos`); decode warnings are added to it.
    """
    counters: Counter = Counter()
    for p in parts:
        counters.update(p.decode_counters)
    warn_decode_counters(info, counters)
    flows = finalize(merge_partials([p.table for p in parts]), KIND_NAMES)
    samples = _global_samples(parts)
    return ScanResult(flows=flows, samples=_attach_flow_ids(samples, flows), info=info, kind_names=KIND_NAMES)


def _global_samples(parts: list[PartScan]) -> pd.DataFrame:
    """Re-rank the parts' sample supersets across parts (module docstring)."""
    frame_base = np.cumsum([0] + [p.info.frames for p in parts[:-1]])
    samples = [p.samples.assign(part=i, frame=p.samples["frame"] + int(frame_base[i]))
               for i, p in enumerate(parts) if len(p.samples)]
    if not samples:
        return pd.DataFrame(columns=SAMPLE_COLUMNS[:8])
    s = pd.concat(samples, ignore_index=True)
    counts = pd.concat([p.counts.assign(part=i) for i, p in enumerate(parts)], ignore_index=True)
    counts = counts.sort_values("part", kind="stable")
    by_dir = counts.groupby(["flow_key", "adir"], sort=False)
    counts["P"] = by_dir["n"].cumsum() - counts["n"]  # payload packets in earlier parts
    key = ["part", "flow_key", "adir"]
    s = s.merge(counts[[*key, "P"]], on=key, how="left")
    s["R"] = s["P"] + s["lrank"]
    early_ctrl = s[s["ctrl"] & (s["R"] < SAMPLE_FIRST)].groupby(key).size().rename("early")
    counts = counts.merge(early_ctrl, left_on=key, right_index=True, how="left")
    counts["g"] = counts["c"] - counts["early"].fillna(0).astype(np.int64)  # control packets past FIRST
    counts["CC"] = counts.groupby(["flow_key", "adir"], sort=False)["g"].cumsum() - counts["g"]
    s = s.merge(counts[[*key, "CC"]], on=key, how="left").sort_values("frame", kind="stable")
    late = s["ctrl"] & (s["R"] >= SAMPLE_FIRST)
    s["crank"] = s["CC"] + late.astype(np.int64).groupby([s[k] for k in key]).cumsum() - 1
    keep = (s["R"] < SAMPLE_FIRST) | (late & (s["crank"] < SAMPLE_CONTROL))
    return s.loc[keep, SAMPLE_COLUMNS[:8]].reset_index(drop=True)


def merge_infos(infos: list[CaptureInfo], path: str, file_bytes: int) -> CaptureInfo:
    """One CaptureInfo for parts read in capture order (counts summed, time span widened)."""
    first = infos[0]
    out = CaptureInfo(path=path, format=first.format, byte_order=first.byte_order,
                      ts_resolution=first.ts_resolution, compressed=first.compressed, file_bytes=file_bytes)
    seen_ifaces: set[tuple] = set()
    for info in infos:
        for iface in info.interfaces:
            sig = (iface.linktype, iface.snaplen, iface.tsresol_exp, iface.tsresol_base, iface.tsoffset_s, iface.name)
            if sig not in seen_ifaces:
                seen_ifaces.add(sig)
                out.interfaces.append(iface)
        out.frames += info.frames
        out.frame_bytes += info.frame_bytes
        if info.first_ts_ns is not None:
            out.first_ts_ns = info.first_ts_ns if out.first_ts_ns is None else min(out.first_ts_ns, info.first_ts_ns)
        if info.last_ts_ns is not None:
            out.last_ts_ns = info.last_ts_ns if out.last_ts_ns is None else max(out.last_ts_ns, info.last_ts_ns)
        out.truncated |= info.truncated
        out.skipped.update(info.skipped)
        for w in info.warnings:
            out.warn(w)
    return out
