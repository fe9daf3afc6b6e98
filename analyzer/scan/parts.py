"""Scan one part of a capture (a byte range, or one file of a rotated set) into a partial result,
and combine partial results into exactly the ScanResult a single sequential pass would give.

A part is the sequential pass itself (`chunks.one_pass(part=True)`), so the per-chunk code is the
same whether it runs in this process, in a local worker process or on a Dask worker. Flow tables
combine with `flows.merge_tables`, the merge the chunked reader uses. Payload samples need more
care: a sequential pass keeps the first SAMPLE_FIRST payloads of each flow direction plus up to
SAMPLE_CONTROL later control packets, and "first" depends on what the earlier parts saw. Each part
therefore keeps a superset (its own first packets and its own control packets, with their local
ranks) plus per-direction counts, and `combine_parts` re-ranks them globally. The superset
property: a packet's local rank is never above its global rank.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from analyzer.capture import CaptureInfo
from analyzer.capture.source import CaptureSource
from analyzer.dissect.kinds import KIND_NAMES
from analyzer.scan.chunks import (
    PART_SAMPLE_COLUMNS,
    SAMPLE_COLUMNS,
    SAMPLE_CONTROL,
    SAMPLE_FIRST,
    RawScan,
    ScanResult,
    attach_flow_ids,
    one_pass,
    sample_frame,
    warn_decode_counters,
)
from analyzer.scan.flows import finalize, merge_tables, table_frame

PartScan = RawScan  # what one worker returns for one part: small enough to pickle back


def scan_part(
    source: CaptureSource, *, name: str | None = None, chunk_bytes: int | None = None, keep_samples: bool = True
) -> RawScan:
    """Scan one self-contained capture stream (a whole file, or a range with its header)."""
    return one_pass(source, name=name, chunk_bytes=chunk_bytes, keep_samples=keep_samples, media=False, part=True)


def combine_parts(parts: list[RawScan], info: CaptureInfo) -> ScanResult:
    """Combine parts given in capture order into the ScanResult of one sequential pass.

    `info` is the merged capture description (see `merge_infos`); decode warnings are added to it.
    """
    counters: Counter = Counter()
    for p in parts:
        counters.update(p.decode_counters)
    warn_decode_counters(info, counters)
    flows = finalize(table_frame(merge_tables([p.table for p in parts])), KIND_NAMES)
    samples = _global_samples(parts) if all(p.samples is not None for p in parts) else None
    return ScanResult(flows=flows, samples=attach_flow_ids(samples, flows), info=info, kind_names=KIND_NAMES)


def _pair_keys(flow_key: np.ndarray, adir: np.ndarray) -> np.ndarray:
    # The sampler's key of a flow direction (chunks._Sampler.take): the flow hash with its low
    # bit replaced by the direction.
    return (flow_key.astype(np.uint64) & ~np.uint64(1)) | adir.astype(np.uint64)


def _global_samples(parts: list[RawScan]) -> pd.DataFrame:
    """Re-rank the parts' sample supersets across parts (module docstring)."""
    frame_base = np.cumsum([0] + [p.info.frames for p in parts[:-1]])
    frames, counts = [], []
    for i, p in enumerate(parts):
        rows = sample_frame(p.samples, PART_SAMPLE_COLUMNS)
        rows["ctrl"] = rows["ctrl"].astype(bool)
        rows["pkey"] = _pair_keys(rows["flow_key"].to_numpy(), rows["adir"].to_numpy(np.int64))
        rows["part"] = i
        rows["frame"] = rows["frame"].astype(np.int64) + int(frame_base[i])
        frames.append(rows)
        keys, n, late = p.sample_counts if p.sample_counts is not None else (np.zeros(0, np.uint64),) * 3
        early = rows[rows["ctrl"] & (rows["lrank"] < SAMPLE_FIRST)].groupby("pkey").size()
        c = np.asarray(late, np.int64) + early.reindex(keys, fill_value=0).to_numpy(np.int64)
        counts.append(pd.DataFrame({"part": i, "pkey": np.asarray(keys, np.uint64), "n": n, "c": c}))
    s = pd.concat(frames, ignore_index=True)
    if s.empty:
        return s[SAMPLE_COLUMNS]
    cnt = pd.concat(counts, ignore_index=True)  # parts in order
    by_dir = cnt.groupby("pkey", sort=False)
    cnt["P"] = by_dir["n"].cumsum() - cnt["n"]  # payload packets in earlier parts
    key = ["part", "pkey"]
    s = s.merge(cnt[[*key, "P"]], on=key, how="left")
    s["R"] = s["P"] + s["lrank"]
    early_ctrl = s[s["ctrl"] & (s["R"] < SAMPLE_FIRST)].groupby(key).size().rename("early")
    cnt = cnt.merge(early_ctrl, left_on=key, right_index=True, how="left")
    cnt["g"] = cnt["c"] - cnt["early"].fillna(0).astype(np.int64)  # control packets past FIRST
    cnt["CC"] = cnt.groupby("pkey", sort=False)["g"].cumsum() - cnt["g"]
    s = s.merge(cnt[[*key, "CC"]], on=key, how="left").sort_values("frame", kind="stable")
    late = s["ctrl"] & (s["R"] >= SAMPLE_FIRST)
    s["crank"] = s["CC"] + late.astype(np.int64).groupby([s[k] for k in key]).cumsum() - 1
    keep = (s["R"] < SAMPLE_FIRST) | (late & (s["crank"] < SAMPLE_CONTROL))
    return s.loc[keep, SAMPLE_COLUMNS].reset_index(drop=True)


def merge_infos(infos: list[CaptureInfo], path: str, file_bytes: int) -> CaptureInfo:
    """One CaptureInfo for parts read in capture order (counts summed, time span widened)."""
    first = infos[0]
    out = CaptureInfo(
        path=path,
        format=first.format,
        byte_order=first.byte_order,
        ts_resolution=first.ts_resolution,
        compressed=first.compressed,
        file_bytes=file_bytes,
    )
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
