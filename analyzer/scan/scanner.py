"""One pass over a capture: read chunks, decode, classify payload kinds, aggregate flows and keep
the payload samples that dissection needs. Memory is bounded by the chunk size plus what is
proportional to the number of flows (partial tables and samples)."""

from __future__ import annotations

import os
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from analyzer.capture import CaptureInfo, CaptureReader, FrameChunk
from analyzer.capture.source import CaptureSource
from analyzer.common.lazy import lazy_import
from analyzer.decode import DecodeState, Fragments, PacketColumns, attribute_fragments, decode_frames
from analyzer.decode import reasons as R
from analyzer.decode.fields import member
from analyzer.dissect.kinds import KIND_NAMES, payload_kinds
from analyzer.scan.flows import (
    TRANSPORT_NAMES,
    CanonicalColumns,
    Table,
    aggregate_table,
    canonical,
    finalize,
    flow_keys,
    merge_tables,
    table_frame,
)
from analyzer.scan.groups import factorize, ranks
from analyzer.scan.media import MediaResult, MediaTap

pd = lazy_import("pandas")  # only finished scans need pandas (analyzer/common/lazy.py)

# Low-volume kinds whose every packet (up to SAMPLE_CONTROL) dissection wants to see. TLS and QUIC
# handshakes are not among them: they open a flow, so the first SAMPLE_FIRST packets hold them, and
# a long capture that reuses a 5-tuple would otherwise keep hundreds of repeated handshakes.
CONTROL_KINDS = frozenset(
    k for k in ("dns", "sip", "stun", "dtls_handshake", "zoom_control", "zrtp") if k in KIND_NAMES
)
CONTROL_CODES = tuple(sorted(KIND_NAMES.index(k) for k in CONTROL_KINDS))

SAMPLE_FIRST = 10  # first packets kept per flow and direction
SAMPLE_CONTROL = 64  # further control packets (DNS, SIP, STUN, DTLS handshakes) per flow and direction
SAMPLE_MAX_BYTES = 16384
MERGE_EVERY_ROWS = 200_000
MERGE_EVERY_PARTS = 16
THREADS = max(1, min(2, int(os.environ.get("CONFSCOPE_THREADS", "1") or 1)))  # 2 = decode on a thread

ProgressFn = Callable[[int], None]


@dataclass
class ScanResult:
    flows: pd.DataFrame
    samples: pd.DataFrame
    info: CaptureInfo
    kind_names: tuple[str, ...] = field(default_factory=tuple)
    media: MediaResult | None = None

    @property
    def streams(self) -> pd.DataFrame:
        return self.media.streams if self.media is not None else pd.DataFrame()


class _Sampler:
    """Keeps the first payloads of each flow direction, with counts carried across chunks.

    Counting is per group (flow key, direction), never per packet: each chunk's packets are
    grouped once, and only the groups' running totals live in Python dicts.
    """

    def __init__(self) -> None:
        self.seen = _GroupCounts()
        self.seen_control = _GroupCounts()
        self.rows: list[tuple] = []

    def _select(self, pair: np.ndarray, pair_keys: np.ndarray, limit: int, seen: _GroupCounts) -> np.ndarray:
        """Which packets to keep: `pair` numbers each packet's (flow, direction) group in this
        chunk, `pair_keys` gives each group's key in the registry `seen`."""
        n_pairs = pair_keys.size
        counts = np.bincount(pair, minlength=n_pairs)
        present = np.flatnonzero(counts)
        order = np.argsort(pair_keys[present], kind="stable")
        present = present[order]
        prior = np.zeros(n_pairs, np.int64)
        prior[present] = seen.add(pair_keys[present], counts[present])
        if not (prior[present] < limit).any():
            return np.zeros(pair.size, bool)
        keep = np.zeros(pair.size, bool)
        sub = np.flatnonzero(prior[pair] < limit)
        keep[sub] = ranks(pair[sub], n_pairs) + prior[pair[sub]] < limit
        return keep

    def take(self, keys, dirs, chunk, cols, idx, control_mask, groups=None) -> None:
        cand = np.flatnonzero(cols.l4_len[idx] > 0)
        if not cand.size:
            return
        codes, uniq, _ = groups if groups is not None else factorize(keys)
        # One registry key per (flow, direction): the low bit of the flow hash is replaced by the
        # direction; `pair` numbers the same groups densely within this chunk.
        pair_keys = ((uniq & ~np.uint64(1))[:, None] | np.array([0, 1], np.uint64)).reshape(-1)
        pair = codes[cand] * 2 + dirs[cand].astype(np.int64)
        keep = self._select(pair, pair_keys, SAMPLE_FIRST, self.seen)
        ctrl = np.flatnonzero(control_mask[cand] & ~keep)
        if ctrl.size:
            keep[ctrl[self._select(pair[ctrl], pair_keys, SAMPLE_CONTROL, self.seen_control)]] = True
        sel = idx[cand[keep]]
        if not sel.size:
            return
        buf = chunk.buf
        offs, lens = cols.l4_off[sel].tolist(), np.minimum(cols.l4_len[sel], SAMPLE_MAX_BYTES).tolist()
        payloads = [bytes(buf[o : o + ln]) for o, ln in zip(offs, lens, strict=True)]
        self.rows.extend(
            zip(
                keys[cand[keep]].tolist(),
                chunk.frame_no[sel].tolist(),
                chunk.ts_ns[sel].tolist(),
                dirs[cand[keep]].tolist(),
                cols.proto[sel].tolist(),
                cols.tcp_seq[sel].tolist(),
                cols.tcp_flags[sel].tolist(),
                payloads,
                strict=True,
            )
        )


def _sample_frame(rows: list[tuple]) -> pd.DataFrame:
    cols = ["flow_key", "frame", "ts_ns", "adir", "proto", "tcp_seq", "tcp_flags", "payload"]
    df = pd.DataFrame.from_records(rows, columns=cols)
    df["flow_key"] = df["flow_key"].astype(np.uint64)
    return df


class _GroupCounts:
    """Running counts per uint64 group key, as sorted arrays (no Python loop over groups)."""

    def __init__(self) -> None:
        self.keys = np.zeros(0, np.uint64)
        self.counts = np.zeros(0, np.int64)

    def add(self, uniq: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Add `counts` for the sorted unique keys `uniq`; returns their counts before."""
        pos = np.searchsorted(self.keys, uniq)
        found = np.zeros(uniq.size, bool)
        inside = pos < self.keys.size
        found[inside] = self.keys[pos[inside]] == uniq[inside]
        prior = np.zeros(uniq.size, np.int64)
        prior[found] = self.counts[pos[found]]
        self.counts[pos[found]] += counts[found]
        new = ~found
        if new.any():
            self.keys = np.insert(self.keys, pos[new], uniq[new])
            self.counts = np.insert(self.counts, pos[new], counts[new])
        return prior


@dataclass
class DecodedChunk:
    """One chunk after decoding: the frames that gave a 5-tuple (`idx`), their payload kinds,
    canonical endpoints (`c`, with `dir` relative to endpoint A) and flow keys."""

    chunk: FrameChunk
    cols: PacketColumns
    idx: np.ndarray
    kinds: np.ndarray
    c: Mapping[str, np.ndarray]
    keys: np.ndarray
    _groups: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def control_mask(self) -> np.ndarray:
        return member(self.kinds, CONTROL_CODES)

    @property
    def groups(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(codes, unique keys, first positions) of the packets' flows, in order of appearance."""
        if self._groups is None:
            self._groups = factorize(self.keys)
        return self._groups


Prepared = tuple[FrameChunk, PacketColumns, Fragments, Counter, "DecodedChunk | None"]


def _decoded(chunk: FrameChunk, cols: PacketColumns) -> DecodedChunk | None:
    idx = np.flatnonzero(cols.status == R.OK)
    if not idx.size:
        return None
    kinds = payload_kinds(
        chunk.buf, cols.l4_off[idx], cols.l4_len[idx], cols.proto[idx], cols.sport[idx], cols.dport[idx]
    ).astype(np.int64)
    if cols.flow_key is not None and cols.a_is_src is not None:
        c = CanonicalColumns(cols, idx, cols.a_is_src[idx])
        return DecodedChunk(chunk, cols, idx, kinds, c, cols.flow_key[idx])
    c = canonical(cols, idx)
    return DecodedChunk(chunk, cols, idx, kinds, c, flow_keys(c))


def prepare_chunk(chunk: FrameChunk) -> Prepared:
    """The part of a chunk's processing that needs nothing from other chunks (runs on a thread)."""
    cols, frags, counters = decode_frames(chunk)
    return chunk, cols, frags, counters, _decoded(chunk, cols)


def finish_chunk(prepared: Prepared, state: DecodeState, info: CaptureInfo) -> DecodedChunk | None:
    """The order-dependent rest, in capture order: fragments, counts of undecoded frames."""
    chunk, cols, frags, counters, d = prepared
    state.counters.update(counters)
    if frags.any():
        attribute_fragments(cols, frags, state)
        d = _decoded(chunk, cols)  # later fragments got ports (or became orphans): key them again
    _count_skipped(info, cols.status)
    return d


def decode_for_flows(chunk: FrameChunk, state: DecodeState, info: CaptureInfo) -> DecodedChunk | None:
    """Decode a chunk, count the frames that gave no 5-tuple, classify payload kinds."""
    return finish_chunk(prepare_chunk(chunk), state, info)


def prepared_chunks(reader: CaptureReader, threads: int = THREADS) -> Iterator[Prepared]:
    """Chunks of a reader, prepared in capture order; with threads=2, one ahead on a second thread.

    numpy releases the GIL in its array loops, but its many small calls do not: on an idle 2-core
    machine the second thread measured slower (1.92 s vs 1.56 s on 1M packets), so it is off by
    default (CONFSCOPE_THREADS=2 turns it on).
    """
    if threads < 2:
        for chunk in reader.chunks():
            yield prepare_chunk(chunk)
        return
    with ThreadPoolExecutor(max_workers=threads - 1, thread_name_prefix="confscope-decode") as pool:
        pending: deque[Future] = deque()
        for chunk in reader.chunks():
            pending.append(pool.submit(prepare_chunk, chunk))
            if len(pending) >= threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class FlowAccumulator:
    """Partial flow tables of successive chunks, merged now and then to keep memory bounded."""

    def __init__(self) -> None:
        self.parts: list[Table] = []
        self.rows = 0

    def add(self, d: DecodedChunk) -> None:
        codes, uniq, _ = d.groups
        chunk, cols, idx = d.chunk, d.cols, d.idx
        part = aggregate_table(
            d.c,
            codes,
            uniq,
            chunk.ts_ns[idx],
            chunk.wirelen[idx].astype(np.int64),
            cols.tcp_flags[idx].astype(np.int64),
            cols.encap[idx],
            d.kinds,
            len(KIND_NAMES),
        )
        self.parts.append(part)
        self.rows += part["key"].shape[0]
        # Merge by rows (many flows) and by count (many chunks of the same flows): either way the
        # pending tables stay bounded, so memory does not grow with the length of the capture.
        if (self.rows > MERGE_EVERY_ROWS or len(self.parts) >= MERGE_EVERY_PARTS) and len(self.parts) > 1:
            self.parts = [merge_tables(self.parts)]
            self.rows = self.parts[0]["key"].shape[0]

    def merged(self) -> pd.DataFrame:
        return table_frame(merge_tables(self.parts))


def warn_decode_counters(info: CaptureInfo, counters: Counter) -> None:
    for reason, count in counters.items():
        info.warn(f"{count} packets: {reason.replace('_', ' ')} (outer tunnel header used)")


def scan_capture(
    source: CaptureSource,
    *,
    chunk_bytes: int | None = None,
    progress: ProgressFn | None = None,
    keep_samples: bool = True,
    media: bool = True,
    name: str | None = None,
) -> ScanResult:
    """Read, decode and aggregate a whole capture in one pass."""
    import analyzer.cli.prescan as prescan

    options = {"chunk_bytes": chunk_bytes, "keep_samples": keep_samples, "media": media, "name": name}
    raw = prescan.collect(source, options) if progress is None else None
    if raw is None:
        raw = scan_raw(source, progress=progress, **options)
    return finish_scan(raw)


@dataclass
class RawScan:
    """A scan before its tables become DataFrames: numpy columns and plain Python objects only,
    so it can be made without pandas and pickled (analyzer/cli/prescan.py)."""

    table: Table
    sample_rows: list[tuple] | None
    media_tap: MediaTap | None
    info: CaptureInfo


def scan_raw(
    source: CaptureSource,
    *,
    chunk_bytes: int | None = None,
    progress: ProgressFn | None = None,
    keep_samples: bool = True,
    media: bool = True,
    name: str | None = None,
) -> RawScan:
    """The pass over the capture (everything of scan_capture that needs no pandas)."""
    kwargs = {"chunk_bytes": chunk_bytes} if chunk_bytes else {}
    with CaptureReader(source, name=name, **kwargs) as reader:
        state = DecodeState()
        acc = FlowAccumulator()
        sampler = _Sampler() if keep_samples else None
        media_tap = MediaTap() if media else None
        for prepared in prepared_chunks(reader, THREADS):
            chunk = prepared[0]
            d = finish_chunk(prepared, state, reader.info)
            if d is not None:
                acc.add(d)
                if media_tap is not None:
                    media_tap.update(chunk, d.cols, d.idx, d.kinds, d.keys, d.c["dir"])
                if sampler is not None:
                    sampler.take(d.keys, d.c["dir"], chunk, d.cols, d.idx, d.control_mask(), d.groups)
            if progress is not None:
                progress(chunk.bytes_read)
        info = reader.info
    warn_decode_counters(info, state.counters)
    return RawScan(merge_tables(acc.parts), sampler.rows if sampler else None, media_tap, info)


def finish_scan(raw: RawScan) -> ScanResult:
    """The ScanResult of a RawScan: the flow table, the samples and the media streams."""
    flows = finalize(table_frame(raw.table), KIND_NAMES)
    samples = _attach_flow_ids(_sample_frame(raw.sample_rows) if raw.sample_rows is not None else None, flows)
    result = None
    if raw.media_tap is not None:
        fk = flows["flow_key"].to_numpy()
        result = raw.media_tap.result(
            pd.Series(flows["flow_id"].to_numpy(), index=fk), pd.Series(flows["a_is_client"].to_numpy(), index=fk)
        )
    return ScanResult(flows=flows, samples=samples, info=raw.info, kind_names=KIND_NAMES, media=result)


def _count_skipped(info: CaptureInfo, status: np.ndarray) -> None:
    bad = status[status != R.OK]
    if bad.size:
        for code, count in zip(*np.unique(bad, return_counts=True), strict=True):
            info.skipped[R.REASON_NAMES.get(int(code), f"reason_{int(code)}")] += int(count)


def _attach_flow_ids(samples: pd.DataFrame | None, flows: pd.DataFrame) -> pd.DataFrame:
    cols = ["flow_id", "frame", "ts_ns", "dir", "transport", "tcp_seq", "tcp_flags", "payload"]
    if samples is None or samples.empty or flows.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in cols})
    pos = pd.Index(flows["flow_key"].to_numpy()).get_indexer(samples["flow_key"].to_numpy())
    samples = samples[pos >= 0]
    pos = pos[pos >= 0]
    # `adir` is relative to the canonical A endpoint; turn it into client/server direction.
    a_is_client = flows["a_is_client"].to_numpy()[pos]
    adir = samples["adir"].to_numpy()
    out = pd.DataFrame(
        {
            "flow_id": flows["flow_id"].to_numpy()[pos],
            "frame": samples["frame"].to_numpy(),
            "ts_ns": samples["ts_ns"].to_numpy(),
            "dir": np.where(a_is_client, adir, 1 - adir).astype(np.int8),
            "transport": [TRANSPORT_NAMES.get(p, f"ip-{p}") for p in samples["proto"].tolist()],
            "tcp_seq": samples["tcp_seq"].to_numpy(),
            "tcp_flags": samples["tcp_flags"].to_numpy(),
            "payload": samples["payload"].to_numpy(),
        }
    )
    return out.sort_values(["flow_id", "frame"], kind="stable").reset_index(drop=True)
