"""Which captured strings may stand as a host name (SNI, HTTP Host, DNS names, certificate CNs)."""

from __future__ import annotations


def host_name(name: object) -> str | None:
    """A host name from the wire, lower-cased, or None when it is not a plausible DNS name
    (non-ASCII, control or format characters, spaces, longer than 253)."""
    if not isinstance(name, str) or not name:
        return None
    name = name.strip().rstrip(".").lower()
    if not name or len(name) > 253 or not name.isascii() or not name.isprintable() or " " in name:
        return None
    return name
