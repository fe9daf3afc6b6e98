"""Reading the small files a user names (policy, key, manifest, signatures) within a size bound.

`--policy /dev/zero` would otherwise read until memory runs out: every such read stops one byte
past its bound and fails with a message naming it (SECURITY.md, "Bounds").
"""

from __future__ import annotations

import os

POLICY_MAX_BYTES = 1 << 20  # a policy file: a few roles and country lists
KEY_MAX_BYTES = 4096  # the first line of an --anonymize file:PATH
MANIFEST_MAX_BYTES = 256 << 20  # batch manifest.json: about 500 bytes per capture
SIGNATURES_MAX_BYTES = 4 << 20


class FileTooLarge(ValueError):
    """The file is larger than the bound for its kind (or endless, like /dev/zero)."""


def read_bounded(path: str | os.PathLike, limit: int, what: str = "file") -> bytes:
    """At most `limit` bytes of `path`; FileTooLarge when there are more. OSError passes through."""
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(f"{what} {os.fspath(path)} is larger than {limit:,} bytes (bound)")
    return data


def first_line_bounded(path: str | os.PathLike, limit: int, what: str = "file") -> str:
    """The first line (UTF-8, without its end), which must end within `limit` bytes."""
    with open(path, "rb") as fh:
        line = fh.readline(limit + 1)
    if len(line) > limit:
        raise FileTooLarge(f"{what}: the first line is longer than {limit:,} bytes (bound)")
    return line.decode("utf-8").rstrip("\r\n")
