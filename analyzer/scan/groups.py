"""Grouping one chunk's packets by key: group numbers in order of first appearance, and each
packet's position within its group. Compiled (`_groups.c`) with this numpy twin as the reference
(tests/test_compiled_twins.py); both give identical results."""

from __future__ import annotations

import numpy as np

from analyzer.common.compiled import load

_compiled = load("analyzer.scan._groups")


def factorize(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes, unique keys, first positions): codes number the distinct keys 0, 1, ... in order
    of first appearance, so `first` is also each group's first packet."""
    keys = np.ascontiguousarray(keys, dtype=np.uint64)
    if _compiled is None:
        return factorize_numpy(keys)
    codes = np.empty(keys.size, np.int64)
    first = np.empty(keys.size, np.int64)
    k = _compiled.factorize(keys, codes, first)
    first = first[:k].copy()
    return codes, keys[first], first


def factorize_numpy(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    uniq, first_sorted, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first_sorted, kind="stable")
    renumber = np.empty(order.size, np.int64)
    renumber[order] = np.arange(order.size)
    return renumber[inverse.reshape(-1)], uniq[order], first_sorted[order].astype(np.int64)


def ranks(codes: np.ndarray, n_groups: int) -> np.ndarray:
    """0-based position of each element within its group (codes in [0, n_groups)), in array order."""
    codes = np.ascontiguousarray(codes, dtype=np.int64)
    if _compiled is None:
        return ranks_numpy(codes, n_groups)
    out = np.empty(codes.size, np.int64)
    _compiled.ranks(codes, n_groups, out)
    return out


def ranks_numpy(codes: np.ndarray, n_groups: int) -> np.ndarray:
    order = np.argsort(codes, kind="stable")
    starts = np.zeros(n_groups + 1, np.int64)
    np.cumsum(np.bincount(codes, minlength=n_groups), out=starts[1:])
    out = np.empty(codes.size, np.int64)
    out[order] = np.arange(codes.size) - starts[codes[order]]
    return out
