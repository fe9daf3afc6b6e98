"""The per-chunk work of a scan and the sequential pass over one stream of chunks: decode, classify
payload kinds, aggregate flows, keep the payload samples that dissection needs, tap media. Memory
is bounded by the chunk size plus what is proportional to the number of flows (partial tables and
samples). `one_pass` is what a single process runs on a whole capture and what each worker runs on
its byte range (analyzer/scan/parts.py); analyzer/scan/scanner.py chooses between the two."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analyzer.capture import CaptureInfo, CaptureReader, FrameChunk
from analyzer.capture.source import CaptureSource
from analyzer.decode import DecodeState, Fragments, PacketColumns, attribute_fragments, decode_frames
from analyzer.decode import reasons as R
from analyzer.decode.fields import member
from analyzer.dissect.kinds import CONTROL_KINDS, KIND_NAMES, payload_kinds
from analyzer.scan.ecb import gather_bytes
from analyzer.scan.flows import (
    TRANSPORT_NAMES,
    CanonicalColumns,
    Table,
    aggregate_table,
    finalize,
    merge_tables,
    table_frame,
)
from analyzer.scan.groups import factorize, ranks
from analyzer.scan.media import MediaResult, MediaTap

# CONTROL_KINDS (declared by the protocol modules, analyzer/dissect/registry.py): low-volume kinds
# whose every packet (up to SAMPLE_CONTROL) dissection wants to see. TLS and QUIC
# handshakes are not among them: they open a flow, so the first SAMPLE_FIRST packets hold them, and
# a long capture that reuses a 5-tuple would otherwise keep hundreds of repeated handshakes.
CONTROL_CODES = tuple(sorted(KIND_NAMES.index(k) for k in CONTROL_KINDS))

SAMPLE_FIRST = 10  # first packets kept per flow and direction
SAMPLE_CONTROL = 64  # further control packets (DNS, SIP, STUN, DTLS handshakes) per flow and direction
SAMPLE_MAX_BYTES = 16384
MERGE_EVERY_ROWS = 200_000
MERGE_EVERY_PARTS = 16

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

    @property
    def stream_seconds(self) -> pd.DataFrame:
        """The media tap's (stream, second) rows; `stream` is the row of `streams`."""
        seconds = self.media.seconds if self.media is not None else None
        return seconds if seconds is not None else pd.DataFrame()


class _Sampler:
    """Keeps the first payloads of each flow direction, with counts carried across chunks.

    Counting is per group (flow key, direction), never per packet: each chunk's packets are
    grouped once, and only the groups' running totals live in Python dicts. Kept packets are
    stored as numpy columns per chunk with their payloads back to back in one byte array (~42
    bytes per sample besides the payload; a Python tuple per sample cost ~700), so a trace of
    200,000 short flows does not pay for an object per sample until the samples table is built.
    """

    def __init__(self, part: bool = False) -> None:
        self.seen = _GroupCounts()
        self.seen_control = _GroupCounts()
        self.blocks: list[dict[str, np.ndarray]] = []
        # A part of a capture scanned in parallel also records, per row, its rank among the
        # payload packets of its flow direction (SAMPLE_FIRST for a row kept as a later control
        # packet) and whether it is a control packet: combine_parts re-ranks them across parts.
        self.part = part

    def _select(
        self, pair: np.ndarray, pair_keys: np.ndarray, limit: int, seen: _GroupCounts, rank: np.ndarray | None = None
    ) -> np.ndarray:
        """Which packets to keep: `pair` numbers each packet's (flow, direction) group in this
        chunk, `pair_keys` gives each group's key in the registry `seen`. `rank`, if given,
        receives the kept packets' ranks within their group (counting earlier chunks)."""
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
        r = ranks(pair[sub], n_pairs) + prior[pair[sub]]
        keep[sub] = r < limit
        if rank is not None:
            rank[sub] = r
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
        rank = np.full(pair.size, SAMPLE_FIRST, np.int64) if self.part else None
        keep = self._select(pair, pair_keys, SAMPLE_FIRST, self.seen, rank)
        first = keep.copy() if self.part else None
        ctrl = np.flatnonzero(control_mask[cand] & ~keep)
        if ctrl.size:
            keep[ctrl[self._select(pair[ctrl], pair_keys, SAMPLE_CONTROL, self.seen_control)]] = True
        sel = idx[cand[keep]]
        if not sel.size:
            return
        lens = np.minimum(cols.l4_len[sel], SAMPLE_MAX_BYTES).astype(np.int64)
        block = {
            "flow_key": keys[cand[keep]].astype(np.uint64),
            "frame": chunk.frame_no[sel].astype(np.int64),
            "ts_ns": chunk.ts_ns[sel].astype(np.int64),
            "adir": dirs[cand[keep]].astype(np.int8),
            "proto": cols.proto[sel].astype(np.uint8),
            "tcp_seq": cols.tcp_seq[sel].astype(np.int64),
            "tcp_flags": cols.tcp_flags[sel].astype(np.int32),
            "plen": lens,
            "data": gather_bytes(chunk.buf, cols.l4_off[sel], lens),
        }
        if rank is not None and first is not None:
            block["lrank"] = np.where(first, rank, SAMPLE_FIRST)[keep]
            block["ctrl"] = control_mask[cand[keep]].astype(bool)
        self.blocks.append(block)

    def samples(self) -> list[dict[str, np.ndarray]]:
        """The kept samples: one set of columns per chunk that kept any (see sample_frame)."""
        return self.blocks

    def counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pair keys, payload packets, control packets not among the first) per flow direction
        seen: what a part reports besides its rows (analyzer/scan/parts.py)."""
        keys = self.seen.keys
        late = np.zeros(keys.size, np.int64)
        if self.seen_control.keys.size:
            late[np.searchsorted(keys, self.seen_control.keys)] = self.seen_control.counts
        return keys, self.seen.counts.copy(), late


SAMPLE_COLUMNS = ["flow_key", "frame", "ts_ns", "adir", "proto", "tcp_seq", "tcp_flags", "payload"]
PART_SAMPLE_COLUMNS = [*SAMPLE_COLUMNS, "lrank", "ctrl"]


def sample_frame(blocks: list[dict[str, np.ndarray]] | None, columns: list[str] = SAMPLE_COLUMNS) -> pd.DataFrame:
    """The samples DataFrame (`columns`) of a sampler's blocks; payloads become bytes here, block
    by block, so the payload bytes are held at most once and a half over (not twice)."""
    if not blocks:
        return pd.DataFrame({c: pd.Series(dtype=np.uint64 if c == "flow_key" else np.int64) for c in columns})
    payloads: list[bytes] = []
    for b in blocks:
        ends = np.cumsum(b["plen"])
        view = memoryview(b["data"])
        payloads += [bytes(view[e - n : e]) for e, n in zip(ends.tolist(), b["plen"].tolist(), strict=True)]
        del view
        b["data"] = np.zeros(0, np.uint8)  # consumed: its bytes now live in `payloads`
    out: dict[str, object] = {}
    for c in columns:
        if c == "payload":
            out[c] = pd.Series(payloads, dtype=object)
            continue
        col = np.concatenate([b[c] for b in blocks])
        out[c] = col.astype(np.uint64 if c == "flow_key" else bool if c == "ctrl" else np.int64)
    return pd.DataFrame(out)


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
    assert cols.flow_key is not None and cols.a_is_src is not None  # both decoders set them
    c = CanonicalColumns(cols, idx, cols.a_is_src[idx])
    return DecodedChunk(chunk, cols, idx, kinds, c, cols.flow_key[idx])


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


@dataclass
class RawScan:
    """A pass before its tables become DataFrames: numpy columns and plain Python objects, cheap
    to pickle back from a worker. `sample_counts` (pair keys, payload packets, late control
    packets) and the rows' extra columns are there only for a part (`one_pass(part=True)`)."""

    table: Table
    samples: list[dict[str, np.ndarray]] | None
    media_tap: MediaTap | None
    info: CaptureInfo
    decode_counters: Counter = field(default_factory=Counter)
    sample_counts: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


def one_pass(
    source: CaptureSource,
    *,
    chunk_bytes: int | None = None,
    progress: ProgressFn | None = None,
    keep_samples: bool = True,
    media: bool = True,
    name: str | None = None,
    part: bool = False,
    flows: bool = True,
) -> RawScan:
    """One sequential pass over a capture stream (a whole capture, or with `part=True` one byte
    range or file of a capture that analyzer/scan/parts.py combines with the others).
    `flows=False` skips the flow table (and samples): the media-only pass of a session scanned on
    two cores (analyzer/scan/scanner.py)."""
    kwargs = {"chunk_bytes": chunk_bytes} if chunk_bytes else {}
    with CaptureReader(source, name=name, **kwargs) as reader:
        state = DecodeState()
        acc = FlowAccumulator()
        sampler = _Sampler(part) if keep_samples else None
        media_tap = MediaTap() if media else None
        for chunk in reader.chunks():
            d = decode_for_flows(chunk, state, reader.info)
            if d is not None:
                if flows:
                    acc.add(d)
                if media_tap is not None:
                    media_tap.update(chunk, d.cols, d.idx, d.kinds, d.keys, d.c["dir"])
                if sampler is not None and flows:
                    sampler.take(d.keys, d.c["dir"], chunk, d.cols, d.idx, d.control_mask(), d.groups)
            if progress is not None:
                progress(chunk.bytes_read)
        info = reader.info
    if not part:  # a part's counters are summed with the other parts' first
        warn_decode_counters(info, state.counters)
    counts = sampler.counts() if part and sampler is not None else None
    return RawScan(
        merge_tables(acc.parts),
        sampler.samples() if sampler else None,
        media_tap,
        info,
        Counter(state.counters),
        counts,
    )


def media_pass(source: CaptureSource, chunk_bytes: int | None = None, name: str | None = None) -> MediaTap | None:
    """The media tap of a whole capture, alone (a top-level function, for a process pool)."""
    return one_pass(source, chunk_bytes=chunk_bytes, keep_samples=False, media=True, name=name, flows=False).media_tap


def finish_scan(raw: RawScan) -> ScanResult:
    """The ScanResult of a RawScan: the flow table, the samples and the media streams."""
    flows = finalize(table_frame(raw.table), KIND_NAMES)
    samples = attach_flow_ids(sample_frame(raw.samples) if raw.samples is not None else None, flows)
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


def attach_flow_ids(samples: pd.DataFrame | None, flows: pd.DataFrame) -> pd.DataFrame:
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
