"""Counted nouns for messages and reports: `1 packet`, `3 packets`, `1,204 flows`."""

from __future__ import annotations


def plural(n: int, word: str, many: str | None = None) -> str:
    """`n word` with the plural (`word + "s"` unless `many` is given) for every n but 1."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {many or word + 's'}"
