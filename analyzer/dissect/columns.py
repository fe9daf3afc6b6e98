"""Masked reads of payload bytes over whole packet columns: the vocabulary of the numpy kind rules.

Each packet's transport payload is buf[off:off+length]. Rules look at a few leading bytes, always
through `Bytes`, which masks every read at or past off+length (it returns -1 there), so no rule
can see a neighbouring packet's bytes. The compiled twin (_kinds.c) reads through at()/u16()/u32()
with the same -1 convention.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from analyzer.decode.fields import member

_LITTLE = sys.byteorder == "little"


def _field_view(buf: np.ndarray, dtype: type, width: int) -> np.ndarray:
    n = max(buf.shape[0] - width + 1, 1)
    if buf.shape[0] < width:
        buf = np.concatenate([buf, np.zeros(width, np.uint8)])
    return np.ndarray(shape=(n,), dtype=dtype, buffer=buf, strides=(1,))


class Bytes:
    """Masked reads of payload bytes at per-packet relative offsets."""

    def __init__(self, buf: np.ndarray, off: np.ndarray, length: np.ndarray) -> None:
        self.buf = buf
        self.off = off
        self.length = length
        self._cache: dict[object, np.ndarray] = {}

    def at(self, rel: int | np.ndarray) -> np.ndarray:
        """Byte at off+rel as int64, or -1 where rel is outside [0, length)."""
        if np.ndim(rel) == 0:
            rel = int(rel)
            if rel in self._cache:
                return self._cache[rel]
        r = np.asarray(rel, dtype=np.int64)
        ok = (r >= 0) & (r < self.length)
        out = np.full(self.off.shape, -1, dtype=np.int64)
        out[ok] = self.buf[(self.off + r)[ok] if r.ndim else self.off[ok] + r]
        if isinstance(rel, int):
            self._cache[rel] = out
        return out

    def subset(self, idx: np.ndarray) -> Bytes:
        return Bytes(self.buf, self.off[idx], self.length[idx])

    def _wide(self, rel: int | np.ndarray, width: int, view_dtype: type) -> np.ndarray:
        """A big-endian `width`-byte field at off+rel, or -1 where it does not fit in the payload.

        One gather through an overlapping strided view (see analyzer.decode.fields) instead of one
        gather per byte: this function dominated the cost of payload_kinds.
        """
        key = (int(rel), width) if np.ndim(rel) == 0 else None
        if key is not None and key in self._cache:
            return self._cache[key]
        r = np.asarray(rel, dtype=np.int64)
        ok = (r >= 0) & (r + width <= self.length)
        pos = self.off + r
        view = _field_view(self.buf, view_dtype, width)
        out = np.full(self.off.shape, -1, dtype=np.int64)
        vals = view[np.clip(pos[ok] if pos.ndim else pos, 0, view.shape[0] - 1)]
        out[ok] = vals.byteswap() if _LITTLE else vals
        if key is not None:
            self._cache[key] = out
        return out

    def u16(self, rel: int | np.ndarray) -> np.ndarray:
        return self._wide(rel, 2, np.uint16)

    def u32(self, rel: int | np.ndarray) -> np.ndarray:
        return self._wide(rel, 4, np.uint32)

    def equals(self, rel: int, pattern: bytes) -> np.ndarray:
        ok = np.ones(self.off.shape, dtype=bool)
        for i, value in enumerate(pattern):
            ok &= self.at(rel + i) == value
        return ok

    def starts_with_any(self, prefixes: tuple[bytes, ...]) -> np.ndarray:
        """Payloads that start with one of `prefixes`, testing only those whose first byte fits."""
        first = member(self.at(0), sorted({p[0] for p in prefixes}))

        def text(x: Bytes, _n: np.ndarray) -> np.ndarray:
            ok = np.zeros(x.off.shape, dtype=bool)
            for prefix in prefixes:
                ok |= x.equals(0, prefix)
            return ok

        return on(first, self, text)


def on(mask: np.ndarray, b: Bytes, rule: Callable[..., Any]) -> Any:
    """Evaluate `rule(bytes, plen)` only on the packets in `mask` (the candidates); False elsewhere.

    The variable-offset reads are the costly part, so they run on the few candidates only. A rule
    may return one mask or a tuple of masks.
    """
    idx = np.flatnonzero(mask)
    sub = b.subset(idx)
    res = rule(sub, sub.length)
    parts = res if isinstance(res, tuple) else (res,)
    outs = []
    for part in parts:
        out = np.zeros(mask.shape, dtype=bool)
        out[idx] = part
        outs.append(out)
    return tuple(outs) if isinstance(res, tuple) else outs[0]


def port_in(sport: np.ndarray, dport: np.ndarray, ports: tuple[int, ...] | range) -> np.ndarray:
    """Either port in `ports` (a range is tested by its bounds)."""
    if isinstance(ports, range) and ports.step == 1:
        lo, hi = ports.start, ports.stop - 1
        return ((sport >= lo) & (sport <= hi)) | ((dport >= lo) & (dport <= hi))
    return member(sport, tuple(ports)) | member(dport, tuple(ports))
