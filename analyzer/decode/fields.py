"""Vectorised big-endian field reads at many offsets of one byte buffer.

Offsets past the end of the buffer are clipped instead of raising; callers always combine a
read with a bounds mask (`pos + width <= frame_end`), so clipped values are never trusted.
"""

from __future__ import annotations

import numpy as np


def u8(buf: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return np.take(buf, pos, mode="clip").astype(np.int64)


def u16(buf: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return (u8(buf, pos) << 8) | u8(buf, pos + 1)


def u32(buf: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return (u16(buf, pos) << 16) | u16(buf, pos + 2)


def u64_be(buf: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Eight bytes at each offset as one big-endian uint64 (used for halves of IPv6 addresses)."""
    idx = pos[:, None] + np.arange(8, dtype=np.int64)
    raw = np.ascontiguousarray(np.take(buf, idx, mode="clip"))
    return raw.view(">u8").ravel().astype(np.uint64)
