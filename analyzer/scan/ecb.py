"""The ECB repeated-block statistic over the media tap's sampled encrypted regions
(protocols.md section 5): repeats of 16-byte blocks per stream at every alignment, identical
regions, byte entropy against what random bytes of the same size give. The verdicts drawn from
these numbers are in analyzer/session/media_verdicts.py."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pandas as pd

from analyzer.common.hashing import mix_columns


def gather_bytes(buf: np.ndarray, starts: np.ndarray, lens: np.ndarray, step: int = 1 << 18) -> np.ndarray:
    """buf[starts[i] : starts[i] + lens[i]] for all i, back to back. Index arrays are built for
    about `step` bytes at a time, so the temporary memory stays small whatever the total."""
    starts = np.asarray(starts, np.int64)
    lens = np.asarray(lens, np.int64)
    out = np.empty(int(lens.sum()), np.uint8)
    ends = np.cumsum(lens)
    cuts = np.searchsorted(ends, np.arange(step, int(ends[-1]) if ends.size else 0, step), side="right")
    pos = 0
    for lo, hi in zip(np.r_[0, cuts].tolist(), np.r_[cuts, lens.size].tolist(), strict=True):
        if hi <= lo:
            continue
        seg = lens[lo:hi]
        total = int(seg.sum())
        idx = np.repeat(starts[lo:hi] - np.r_[0, np.cumsum(seg)[:-1]], seg) + np.arange(total)
        out[pos : pos + total] = buf[idx]
        pos += total
    return out


ECB_BATCH_BYTES = 1024 * 1024  # streams are processed in batches of about this many sampled bytes
_ECB_COLUMNS = [
    "ecb_packets", "ecb_blocks", "ecb_repeats", "ecb_repeat_ratio", "ecb_repeats_max", "ecb_repeat_alignment",
    "ecb_packets_with_repeats", "ecb_identical_payloads", "ecb_distinct_entropy", "ecb_distinct_bytes",
    "ecb_entropy_random", "ecb_payload_entropy", "ecb_sample_bytes", "ecb_payload_entropy_random",
    "ecb_repeats_expected_random",
]


def ecb_statistics(sid: np.ndarray, lens: np.ndarray, data: np.ndarray) -> pd.DataFrame:
    """Repeated 16-byte blocks per stream over sampled encrypted regions (protocols.md 5).

    `data` holds the regions back to back, `lens` their lengths (each >= 16), `sid` their stream.
    Returns one row per stream id (the index): packets, blocks and repeats ("excess" = blocks -
    distinct blocks) at alignment 0, the worst of alignments 0-15, packets with a repeated block,
    identical regions, the distinct blocks' byte entropy with its sample size and what random
    bytes of that size would give, the same for all sampled bytes, and the random-ciphertext
    expectation of repeats, blocks^2 / 2^129.
    """
    sid = np.asarray(sid, np.int64)
    lens = np.asarray(lens, np.int64)
    data = np.asarray(data, np.uint8)
    if sid.size == 0:
        return pd.DataFrame(columns=_ECB_COLUMNS, index=pd.Index([], dtype=np.int64))
    # Process whole streams in batches so temporary arrays stay small on big samples.
    pstart = np.r_[0, np.cumsum(lens)[:-1]]
    order = np.argsort(sid, kind="stable")
    usid, first, counts = np.unique(sid[order], return_index=True, return_counts=True)
    stream_bytes = np.add.reduceat(lens[order], first)
    batch = np.cumsum(stream_bytes) // ECB_BATCH_BYTES
    frames = []
    for b in np.unique(batch).tolist():
        members = np.flatnonzero(batch == b)
        pk = np.concatenate([order[first[i] : first[i] + counts[i]] for i in members.tolist()])
        blens = lens[pk]
        local = np.searchsorted(usid[members], sid[pk])
        part = _ecb_batch(local, blens, gather_bytes(data, pstart[pk], blens), members.size)
        part.index = pd.Index(usid[members])
        frames.append(part)
    return pd.concat(frames)[_ECB_COLUMNS]


def _ecb_batch(sid: np.ndarray, lens: np.ndarray, data: np.ndarray, m: int) -> pd.DataFrame:
    excess_by_align = np.zeros((16, m), np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(data, 16)
    pstart = np.r_[0, np.cumsum(lens)[:-1]]
    res = pd.DataFrame(index=pd.RangeIndex(m))
    packets = np.bincount(sid, minlength=m)
    res["ecb_packets"] = packets
    for a in range(16):
        nb = np.maximum((lens - a) // 16, 0)
        pkt = np.repeat(np.arange(lens.size), nb)
        first_block = np.r_[0, np.cumsum(nb)[:-1]]
        kpos = np.arange(pkt.size) - first_block[pkt]
        raw = windows[pstart[pkt] + a + 16 * kpos]
        words = np.ascontiguousarray(raw).view("<u8").reshape(-1, 2)
        bsid = sid[pkt]
        # Keyed by stream too, so one uint64 column says "same block value in the same stream".
        h = mix_columns(words[:, 0], words[:, 1], bsid)
        dup = pd.Series(h).duplicated(keep="first").to_numpy()
        excess_by_align[a] = np.bincount(bsid, weights=dup, minlength=m).astype(np.int64)
        if a:
            continue
        blocks = np.bincount(bsid, minlength=m)
        res["ecb_blocks"] = blocks
        _, inverse, counts = np.unique(h, return_inverse=True, return_counts=True)
        pkt_rep = np.bincount(pkt, weights=counts[inverse] >= 2, minlength=lens.size) > 0
        res["ecb_packets_with_repeats"] = np.bincount(sid, weights=pkt_rep, minlength=m).astype(np.int64)
        ent, nbytes = _entropy_sorted(bsid[~dup], raw[~dup].reshape(-1), 16, m)
        res["ecb_distinct_entropy"], res["ecb_distinct_bytes"] = ent, nbytes
        # A region's identity: its blocks' hashes with their positions, its last 16 bytes, its length.
        with np.errstate(over="ignore"):
            ph = np.zeros(lens.size, np.uint64)
            np.add.at(ph, pkt, mix_columns(h, kpos.astype(np.uint64)))
        tail = np.ascontiguousarray(windows[pstart + lens - 16]).view("<u8").reshape(-1, 2)
        ph = mix_columns(ph, tail[:, 0], tail[:, 1], lens.astype(np.uint64))
        pdup = pd.Series(mix_columns(ph, sid)).duplicated(keep="first").to_numpy()
        res["ecb_identical_payloads"] = np.bincount(sid, weights=pdup, minlength=m).astype(np.int64)
    blocks = res["ecb_blocks"].to_numpy()
    res["ecb_repeats"] = excess_by_align[0]
    res["ecb_repeat_ratio"] = excess_by_align[0] / np.maximum(blocks, 1)
    res["ecb_repeats_max"] = excess_by_align.max(axis=0)
    res["ecb_repeat_alignment"] = excess_by_align.argmax(axis=0)
    res["ecb_entropy_random"] = [random_entropy(int(x)) for x in res["ecb_distinct_bytes"].tolist()]
    pent, pbytes = _entropy_sorted(sid, data, lens, m)
    res["ecb_payload_entropy"], res["ecb_sample_bytes"] = pent, pbytes
    res["ecb_payload_entropy_random"] = [random_entropy(int(x)) for x in pbytes.tolist()]
    res["ecb_repeats_expected_random"] = blocks.astype(np.float64) ** 2 / 2.0**129
    return res


def _entropy_sorted(
    group: np.ndarray, data: np.ndarray, size: int | np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray]:
    """Shannon entropy (bits/byte) and byte count per group 0..m-1. `group` is sorted and item i
    owns the next `size` (or size[i]) bytes of `data`, so each group's bytes are one slice."""
    sizes = np.broadcast_to(np.asarray(size, np.int64), group.shape)
    per_group = np.bincount(group, weights=sizes, minlength=m).astype(np.int64)
    bounds = np.r_[0, np.cumsum(per_group)]
    ent = np.full(m, np.nan)
    for g in np.flatnonzero(per_group).tolist():
        counts = np.bincount(data[bounds[g] : bounds[g + 1]], minlength=256)
        p = counts[counts > 0] / per_group[g]
        ent[g] = float(-(p * np.log2(p)).sum())
    return ent, per_group


@lru_cache(maxsize=4096)
def random_entropy(n: int) -> float:
    """Expected plug-in entropy (bits/byte) of n uniformly random bytes: each byte value's count is
    Binomial(n, 1/256), and E[H] = log2 n - (256/n) E[c log2 c]."""
    if n <= 1:
        return 0.0
    p = 1.0 / 256
    mean = n * p
    hi = min(n, int(mean + 12 * math.sqrt(mean) + 20))
    j = np.arange(1, hi + 1, dtype=np.float64)
    log_pmf = (
        math.lgamma(n + 1) - np.array([math.lgamma(x + 1) for x in j]) - np.array([math.lgamma(n - x + 1) for x in j])
        + j * math.log(p) + (n - j) * math.log1p(-p)
    )
    e_clogc = float((np.exp(log_pmf) * j * np.log2(j)).sum())
    return math.log2(n) - 256.0 / n * e_clogc
