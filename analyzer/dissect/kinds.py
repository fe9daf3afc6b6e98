"""Per-packet payload kinds, vectorised with numpy (hot path: no per-packet Python code).

The kinds, their codes and the rule ladders come from the dissector registry (registry.py): each
protocol module declares its kinds and its column rules, and the ladder of a transport is its
rules by priority, first match wins. Rules read payload bytes only through columns.Bytes, which
masks every read past the payload. tests/test_dissect_kinds.py measures the agreement of the
rules with the scalar parsers on real captures.

The compiled twin (_kinds.c) states the same rules one packet at a time; it exports its enum and
its ladders by name, and is used only when they match the registry (registry.compiled_mismatch).
Rules a new protocol adds without a C twin run here, in numpy, on what the C left at the default.
"""

from __future__ import annotations

import warnings

import numpy as np

from analyzer.common.compiled import load
from analyzer.dissect import registry
from analyzer.dissect.columns import Bytes
from analyzer.dissect.spec import Rule

KIND_NAMES: tuple[str, ...] = registry.KIND_NAMES
KIND_CODES: dict[str, int] = registry.KIND_CODES
CONTROL_KINDS: frozenset[str] = registry.CONTROL_KINDS
NONE, OTHER, TCP = KIND_CODES["none"], KIND_CODES["other"], KIND_CODES["tcp"]
RTP, RTCP, ZOOM_MEDIA = KIND_CODES["rtp"], KIND_CODES["rtcp"], KIND_CODES["zoom_media"]  # the media tap's kinds

PROTO_TCP = 6
PROTO_UDP = 17
_PROTO = {"udp": PROTO_UDP, "tcp": PROTO_TCP}

_compiled = load("analyzer.dissect._kinds")
_C_NAMES, _C_RULES = registry.compiled_declarations(_compiled)
if _compiled is not None and (_problem := registry.compiled_mismatch(_C_NAMES, _C_RULES)) is not None:
    # A stale build (the registry changed, the extension was not rebuilt): numpy gives the
    # right answer, only slower. `python3 setup.py build_ext --inplace` fixes it.
    warnings.warn(f"analyzer.dissect._kinds not used: {_problem}", RuntimeWarning, stacklevel=1)
    _compiled = None
# Rules the compiled loop lacks, per transport: evaluated in numpy after it.
_NUMPY_ONLY: dict[str, tuple[Rule, ...]] = (
    {t: registry.numpy_only_rules(_C_RULES[t], t) for t in registry.TRANSPORTS} if _compiled is not None else {}
)


def payload_kinds(
    buf: np.ndarray,
    off: np.ndarray,
    length: np.ndarray,
    proto: np.ndarray,
    sport: np.ndarray,
    dport: np.ndarray,
) -> np.ndarray:
    """Kind code (index into KIND_NAMES) of each packet's transport payload buf[off:off+length]."""
    if _compiled is None:
        return payload_kinds_numpy(buf, off, length, proto, sport, dport)
    out = np.empty(len(off), dtype=np.uint8)
    cols = c_packet_columns(buf, off, length, proto, sport, dport)
    _compiled.payload_kinds(*cols, out)
    for transport, rules in _NUMPY_ONLY.items():
        if rules:
            _finish_in_numpy(out, cols, transport, rules)
    return out


def _finish_in_numpy(out: np.ndarray, cols: tuple[np.ndarray, ...], transport: str, rules: tuple[Rule, ...]) -> None:
    """Run `rules` on the packets of `transport` that the compiled ladder left at the default."""
    buf, off, length, proto, sport, dport = cols
    default = KIND_CODES[registry.DEFAULT_KIND[transport]]
    idx = np.flatnonzero((out == default) & (proto == _PROTO[transport]))
    if idx.size == 0:
        return
    b = _clamped(buf, off[idx], length[idx])
    out[idx] = _ladder(b, sport[idx].astype(np.int64), dport[idx].astype(np.int64), rules, default)


def c_packet_columns(
    buf: np.ndarray,
    off: np.ndarray,
    length: np.ndarray,
    proto_or_kind: np.ndarray,
    sport: np.ndarray,
    dport: np.ndarray,
    length_dtype: type = np.int32,
) -> tuple[np.ndarray, ...]:
    """The packet columns in the layout _kinds.c reads; no copy where they already have it (the
    decoder's columns do), values beyond int32 clipped where a narrower type is asked for."""
    return (
        np.ascontiguousarray(buf, dtype=np.uint8),
        np.ascontiguousarray(off, dtype=np.int64),
        _narrow(length, length_dtype),
        np.ascontiguousarray(proto_or_kind, dtype=np.uint8),
        _narrow(sport, np.int32),
        _narrow(dport, np.int32),
    )


def _narrow(values: np.ndarray, dtype: type) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype == dtype:
        return np.ascontiguousarray(values)
    info = np.iinfo(dtype)
    return np.ascontiguousarray(np.clip(values, -1, info.max), dtype=dtype)


def _clamped(buf: np.ndarray, off: np.ndarray, length: np.ndarray) -> Bytes:
    """Payload reads where a bad offset/length reads as no payload (never outside `buf`)."""
    off = np.asarray(off, dtype=np.int64)
    plen = np.maximum(np.asarray(length, dtype=np.int64), 0)
    plen = np.where((off >= 0) & (off + plen <= buf.shape[0]), plen, 0)
    return Bytes(buf, off, plen)


def payload_kinds_numpy(
    buf: np.ndarray,
    off: np.ndarray,
    length: np.ndarray,
    proto: np.ndarray,
    sport: np.ndarray,
    dport: np.ndarray,
) -> np.ndarray:
    """payload_kinds with numpy only: the reference the compiled loop (_kinds.c) is tested against."""
    n = np.asarray(off).shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.uint8)
    buf = np.asarray(buf, dtype=np.uint8)
    if buf.shape[0] == 0:
        return np.zeros(n, dtype=np.uint8)
    b = _clamped(buf, off, length)
    proto = np.asarray(proto)
    sport = np.asarray(sport, dtype=np.int64)
    dport = np.asarray(dport, dtype=np.int64)
    has = b.length > 0
    out = np.where(has, OTHER, NONE).astype(np.uint8)
    # Each transport's rules run on its own packets only: on a TCP-heavy capture the UDP
    # demultiplexing (most of the work) then touches a fraction of the packets.
    for transport in registry.TRANSPORTS:
        idx = np.flatnonzero(has & (proto == _PROTO[transport]))
        if idx.size:
            default = KIND_CODES[registry.DEFAULT_KIND[transport]]
            out[idx] = _ladder(b.subset(idx), sport[idx], dport[idx], registry.LADDERS[transport], default)
    return out


def _ladder(b: Bytes, sport: np.ndarray, dport: np.ndarray, rules: tuple[Rule, ...], default: int) -> np.ndarray:
    """The first rule (by priority) that matches each non-empty payload, else `default`."""
    conds: list[np.ndarray] = []
    codes: list[int] = []
    for rule in rules:
        res = rule.fn(b, sport, dport)
        masks = res if isinstance(res, tuple) else (res,)
        for mask, kind in zip(masks, rule.kinds, strict=True):
            conds.append(mask)
            codes.append(KIND_CODES[kind])
    if not conds:
        return np.full(b.off.shape, default, dtype=np.uint8)
    return np.select(conds, codes, default=default).astype(np.uint8)


def kind_name(code: int) -> str:
    return KIND_NAMES[code] if 0 <= code < len(KIND_NAMES) else "other"
