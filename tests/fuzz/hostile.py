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


def dtls_fragment_bomb_pcap(
    datagrams: int = 10, headers: int = 1300, datagram_size: int = 16000, data: int = 1
) -> bytes:
    """DTLS handshake records packed with fragment headers, each announcing a new 256 KiB message
    (distinct message_seq) with `data` bytes of fragment: the issue-16 memory bomb.

    Every datagram opens with a whole record (so it is recognised as DTLS); a client on
    10.9.0.1:50000 sends to 192.0.2.9:3478. `headers` fragment headers per datagram, up to
    `datagram_size` bytes of record body.
    """
    out = [pcap_header()]
    seq = 0
    per_record = max(1, min(headers, (datagram_size - 13) // (12 + data)))
    for i in range(datagrams):
        frags = []
        for _ in range(per_record):
            # msg_type 11 (Certificate), length 0x03FFFF, message_seq, offset 0, frag_len `data`
            frags.append(bytes([11]) + (0x3FFFF).to_bytes(3, "big") + struct.pack(">H", seq & 0xFFFF)
                         + b"\x00\x00\x00" + data.to_bytes(3, "big") + b"\xab" * data)
            seq += 1
        body = b"".join(frags)
        record = struct.pack(">BHHHIH", 22, 0xFEFD, 0, 0, i, len(body)) + body
        frame = ethernet(ipv4(17, b"\x0a\x09\x00\x01", b"\xc0\x00\x02\x09", udp(50000, 3478, record)))
        out.append(pcap_record(frame, sec=1_600_000_000 + i))
    return b"".join(out)


def dns_answers_pcap(responses: int, answers: int = 500) -> bytes:
    """`responses` DNS responses (one flow each, so every one is sampled), each with `answers` A
    records for distinct names: about responses * answers rows for the DNS table."""
    out = [pcap_header()]
    for r in range(responses):
        q = b"\x01q\x07example\x00"
        body = [struct.pack(">HHHHHH", r & 0xFFFF, 0x8180, 1, answers, 0, 0), q, b"\x00\x01\x00\x01"]
        for a in range(answers):
            name = b"\x04h%03d" % (a % 1000) + b"\xc0\x0c"  # label + pointer to the question name
            body.append(name + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([93, (a >> 8) & 255, a & 255, 1 + r % 250]))
        msg = b"".join(body)
        src = bytes([10, 53, (r >> 8) & 255, r & 255])
        frame = ethernet(ipv4(17, b"\x08\x08\x08\x08", src, udp(53, 1024 + r % 60000, msg)))
        out.append(pcap_record(frame, sec=1_600_000_000 + r // 1000))
    return b"".join(out)


def rtp_streams_pcap(streams: int, packets: int = 3) -> bytes:
    """One UDP flow carrying `streams` distinct RTP SSRCs (`packets` packets each)."""
    out = [pcap_header()]
    n = 0
    for k in range(packets):
        for s in range(streams):
            rtp = struct.pack(">BBHII", 0x80, 111, k, 1000 * k, 0x10000 + s) + bytes(40)
            frame = ethernet(ipv4(17, b"\x0a\x01\x00\x01", b"\xc0\x00\x02\x07", udp(40000, 40002, rtp)))
            sec, usec = 1_600_000_000 + n // 100000, n % 100000 * 10
            out.append(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
            n += 1
    return b"".join(out)
