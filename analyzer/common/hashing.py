"""Fast 64-bit mixing of integer columns, used to key flows and IP fragments."""

from __future__ import annotations

import hashlib
import os

import numpy as np

_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xBF58476D1CE4E5B9)
_K3 = np.uint64(0x94D049BB133111EB)


def _fmix(h: np.ndarray) -> np.ndarray:
    # splitmix64 finaliser: every input bit affects every output bit.
    h = (h ^ (h >> np.uint64(30))) * _K2
    h = (h ^ (h >> np.uint64(27))) * _K3
    return h ^ (h >> np.uint64(31))


def mix_columns(*columns: np.ndarray) -> np.ndarray:
    """Combine equal-length integer columns into one uint64 hash per row.

    With fewer than a million distinct keys the chance of any collision is below 3e-8; callers
    that need certainty compare the key columns of each group afterwards.
    """
    with np.errstate(over="ignore"):
        h = np.full(columns[0].shape[0], 0x243F6A8885A308D3, dtype=np.uint64)
        for col in columns:
            h = _fmix((h * _K1) ^ col.astype(np.uint64, copy=False))
    return h


HASH_BLOCK_BYTES = 8 * 1024 * 1024


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's content, read in blocks (captures can be gigabytes).

    Large blocks: hashing runs on a thread beside the scan (session.py), and it takes the GIL once
    per block; hashlib.file_digest's 256 KiB blocks took it ~2,000 times per 500 MB, each time
    stalling the scan.
    """
    block = bytearray(HASH_BLOCK_BYTES)
    view = memoryview(block)
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(block):
            digest.update(view[:n])
    return digest.hexdigest()
