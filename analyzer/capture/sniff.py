"""Recognise a capture container from its first bytes, never from its file name."""

from __future__ import annotations

from dataclasses import dataclass

from analyzer.errors import CaptureFormatError

GZIP_MAGIC = b"\x1f\x8b"
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"

# Classic pcap magic numbers as they appear on disk, -> (byte order, timestamp unit exponent).
PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("little", 6),
    b"\xa1\xb2\xc3\xd4": ("big", 6),
    b"\x4d\x3c\xb2\xa1": ("little", 9),
    b"\xa1\xb2\x3c\x4d": ("big", 9),
}
# Alexey Kuznetzov's patched-libpcap format: same layout but 8 more bytes per record header.
KUZNETZOV_MAGICS = {b"\x34\xcd\xb2\xa1", b"\xa1\xb2\xcd\x34"}


@dataclass(frozen=True)
class Sniffed:
    format: str  # "pcap", "pcapng" or "gzip"
    byte_order: str = ""
    ts_exp: int = 6


def sniff(head: bytes, name: str = "capture") -> Sniffed:
    """Identify the container from up to its first 16 bytes; raise CaptureFormatError otherwise."""
    if len(head) == 0:
        raise CaptureFormatError(f"{name}: empty file, not a capture")
    if head[:2] == GZIP_MAGIC:
        return Sniffed("gzip")
    magic = head[:4]
    if magic in PCAP_MAGICS:
        if len(head) < 24:
            raise CaptureFormatError(f"{name}: pcap file header truncated ({len(head)} of 24 bytes)")
        order, exp = PCAP_MAGICS[magic]
        return Sniffed("pcap", order, exp)
    if magic in KUZNETZOV_MAGICS:
        raise CaptureFormatError(f"{name}: modified (Kuznetzov) pcap is not supported; convert it with editcap")
    if magic == PCAPNG_SHB:
        if len(head) < 12:
            raise CaptureFormatError(f"{name}: pcapng section header truncated")
        bom = head[8:12]
        if bom == b"\x4d\x3c\x2b\x1a":
            return Sniffed("pcapng", "little")
        if bom == b"\x1a\x2b\x3c\x4d":
            return Sniffed("pcapng", "big")
        raise CaptureFormatError(f"{name}: pcapng section header has an invalid byte-order magic")
    raise CaptureFormatError(f"{name}: not a pcap or pcapng capture ({describe_unknown(head)})")


def describe_unknown(head: bytes) -> str:
    """A short human guess at what the file is instead, for the error line."""
    if head[:4] in (b"\x00\x00\x00\x00",) or len(head) < 4:
        return "unknown leading bytes"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head[:16]):
        return "looks like text"
    # ERF records start with an 8-byte timestamp whose high word is a plausible epoch second.
    if len(head) >= 10 and 1 <= head[8] <= 30:
        return "looks like an ERF (Endace) capture; convert it with editcap -F pcapng"
    return f"magic {head[:4].hex()}"
