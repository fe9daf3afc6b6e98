"""Builders of hostile captures for the resource-bound tests (pure functions returning bytes).

Written with struct/numpy directly, not with analyzer.capture.writer, so a bug shared with the
reader cannot make a malformed file look well formed.
"""

from __future__ import annotations

import gzip
import io
import struct

import numpy as np

LINKTYPE_ETHERNET = 1
ETH_IPV4 = b"\x08\x00"


def pcap_header(snaplen: int = 65535, linktype: int = LINKTYPE_ETHERNET, order: str = "<") -> bytes:
    return struct.pack(order + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen & 0xFFFFFFFF, linktype)


def pcap_record(data: bytes, sec: int = 1_600_000_000, caplen: int | None = None, wire: int | None = None) -> bytes:
    cap = len(data) if caplen is None else caplen
    return struct.pack("<IIII", sec, 0, cap & 0xFFFFFFFF, (len(data) if wire is None else wire) & 0xFFFFFFFF) + data


def shb(order: str = "<") -> bytes:
    return struct.pack(order + "IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack(order + "I", 28)


def idb(linktype: int = LINKTYPE_ETHERNET, order: str = "<") -> bytes:
    return struct.pack(order + "IIHHI", 1, 20, linktype, 0, 0) + struct.pack(order + "I", 20)


def epb(data: bytes, iface: int = 0, ts_us: int = 1_600_000_000_000_000, order: str = "<") -> bytes:
    padded = data + b"\x00" * (-len(data) % 4)
    blen = 32 + len(padded)
    body = struct.pack(order + "IIIII", iface, ts_us >> 32, ts_us & 0xFFFFFFFF, len(data), len(data))
    return struct.pack(order + "II", 6, blen) + body + padded + struct.pack(order + "I", blen)


def ipv4(proto: int, src: bytes, dst: bytes, payload: bytes) -> bytes:
    return struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0, src, dst) + payload


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def ethernet(payload: bytes, ethertype: bytes = ETH_IPV4) -> bytes:
    return b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + ethertype + payload


def nested_gre_frame(depth: int, payload: bytes = b"hello") -> bytes:
    """Ethernet / (IPv4 / GRE) x depth / IPv4 / UDP; layer k uses 10.0.k.1 -> 10.0.k.2."""
    inner = ipv4(17, bytes([10, 0, depth, 1]), bytes([10, 0, depth, 2]), udp(40000, 3478, payload))
    for k in range(depth - 1, -1, -1):
        inner = ipv4(47, bytes([10, 0, k, 1]), bytes([10, 0, k, 2]), b"\x00\x00\x08\x00" + inner)
    return ethernet(inner)


def resync_storm_pcapng(blocks: int) -> bytes:
    """Blocks that pass the resynchronisation check (known type, lengths agree) yet fail the walk
    (an EPB shorter than its fixed fields), one after another: every block is a new resync."""
    fake = struct.pack("<IIII", 6, 16, 0, 16)
    return shb() + idb() + fake * blocks


def resync_storm_pcap(triples: int) -> bytes:
    """Two plausible records then one whose caplen is impossible, repeated."""
    good = pcap_record(b"\xff\xff\xff\xff", sec=0x5F000000)
    bad = struct.pack("<IIII", 0x5F000000, 7, 0xFFFFFFF0, 0xFFFFFFFF)
    return pcap_header() + (good + good + bad) * triples


def zero_filled_pcap(total_bytes: int, record_bytes: int = 65535) -> bytes:
    """A pcap of zero-filled frames of `record_bytes`: compresses about 1000:1 (a gzip bomb body)."""
    rec = pcap_record(b"\x00" * record_bytes)
    return pcap_header() + rec * max(1, total_bytes // len(rec))


def gzip_of(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def gzip_bomb(total_bytes: int, record_bytes: int = 65535) -> bytes:
    """gzip of zero_filled_pcap(total_bytes), compressed as a stream so the body never exists whole."""
    out = io.BytesIO()
    rec = pcap_record(b"\x00" * record_bytes)
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0) as gz:
        gz.write(pcap_header())
        for _ in range(max(1, total_bytes // len(rec))):
            gz.write(rec)
    return out.getvalue()


def tiny_flows_pcap(n: int) -> bytes:
    """`n` single-packet UDP flows, each with its own 5-tuple (10.x.y.z:port -> 192.0.2.1:53000).

    Built as one numpy array of fixed-size records: Ethernet + IPv4 + UDP with a 4-byte payload.
    """
    frame = ethernet(ipv4(17, b"\x0a\x00\x00\x00", b"\xc0\x00\x02\x01", udp(1, 53000, b"abcd")))
    rec = np.frombuffer(pcap_record(frame), dtype=np.uint8)
    out = np.tile(rec, (n, 1))
    idx = np.arange(n, dtype=np.uint32)
    # Source address 10.<idx bits>, source port from the low bits: every record a distinct flow.
    ip_src = 16 + 14 + 12
    out[:, ip_src + 1] = (idx >> 16) & 0xFF
    out[:, ip_src + 2] = (idx >> 8) & 0xFF
    out[:, ip_src + 3] = idx & 0xFF
    sport = 1024 + (idx % 50000)
    out[:, 16 + 14 + 20] = (sport >> 8) & 0xFF
    out[:, 16 + 14 + 21] = sport & 0xFF
    usec = idx % 1_000_000
    out[:, 4:8] = usec.astype("<u4").view(np.uint8).reshape(n, 4)
    return pcap_header() + out.tobytes()
