"""Rebuild the first bytes of one direction of a TCP stream from captured segments.

Handshake messages (a TLS ClientHello with post-quantum key shares, a certificate chain, a SIP
INVITE with a large SDP) often span several segments, and captures contain retransmissions and
reordering. Dissectors only need a contiguous prefix, so this stops at the first gap instead of
guessing what is missing.
"""

from __future__ import annotations

from collections.abc import Iterable

_MOD = 1 << 32
_HALF = 1 << 31


def _relative(seq: int, base: int) -> int:
    """Signed distance from base to seq in sequence space (handles the uint32 wrap)."""
    return ((seq - base + _HALF) % _MOD) - _HALF


def reassemble(segments: Iterable[tuple[int, bytes]], limit: int = 65536) -> bytes:
    """Contiguous stream prefix from (seq, payload) pairs, at most `limit` bytes.

    Segments are ordered by sequence number relative to the first one given (so a stream that
    wraps past 2**32 still sorts correctly); bytes already covered (retransmissions, overlaps)
    are skipped; reassembly stops at the first hole. Never raises on odd input: non-int
    sequence numbers or non-bytes payloads are ignored.
    """
    if limit <= 0:
        return b""
    usable: list[tuple[int, bytes]] = []
    for item in segments:
        try:
            seq, payload = item
        except (TypeError, ValueError):
            continue
        if not isinstance(seq, int) or not isinstance(payload, bytes | bytearray | memoryview):
            continue
        if len(payload) == 0:
            continue
        usable.append((seq % _MOD, bytes(payload)))
    if not usable:
        return b""
    base = usable[0][0]
    ordered = sorted(((_relative(seq, base), data) for seq, data in usable), key=lambda x: x[0])
    out = bytearray()
    expected = ordered[0][0]
    for start, data in ordered:
        if start > expected:
            break  # a hole: what follows cannot be placed reliably
        skip = expected - start
        if skip >= len(data):
            continue  # fully retransmitted
        chunk = data[skip:]
        out += chunk
        expected += len(chunk)
        if len(out) >= limit:
            break
    return bytes(out[:limit])
