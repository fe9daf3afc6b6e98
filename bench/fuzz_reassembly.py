"""Reassembly fuzzer: DTLS handshake fragments, QUIC CRYPTO frames and TCP segments, mutated at
the level the reassembly code sees them, run through `dissect_flows` (the per-flow dissection).

A mutant is one flow: its transport, ports and payload samples (direction, TCP sequence number,
bytes), kept within the scan's sample bounds (SAMPLE_FIRST + SAMPLE_CONTROL packets per
direction, SAMPLE_MAX_BYTES each). It *crashes* when an exception leaves `dissect_flows` or a
parser raises inside the per-flow guard (`DissectResult.errors`); it *hangs* when it outlives
the timeout. Memory: the peak RSS of the run (VmHWM) must stay within `--memory-mb` above the
RSS at the start. Mutant `i` of seed `S` is rebuilt from `random.Random(f"{S}:r:{i}")`.

    python bench/fuzz.py --target reassembly --count 10000
"""

from __future__ import annotations

import itertools
import random
import signal
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

SAMPLE_PACKETS = 74  # SAMPLE_FIRST + SAMPLE_CONTROL per direction (analyzer/scan/scanner.py)
SAMPLE_BYTES = 16384
MEMORY_BUDGET_MB = 256.0
U24_EDGES = (0, 1, 11, 12, 0xFF, 0x3FFF, 0x4000, 0xFFFF, 0x10000, 0x3FFFF, 0x40000, 0x40001, 0xFFFFFF)
U32_EDGES = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFF0, 0xFFFF0000)


@dataclass
class Flow:
    kind: str  # "dtls", "quic" or "tcp"
    transport: str
    client_port: int
    server_port: int
    packets: list[tuple[int, int, bytes]] = field(default_factory=list)  # (dir, tcp_seq or -1, payload)


# --- bases ------------------------------------------------------------------------------------


def _u24(n: int) -> bytes:
    return (n & 0xFFFFFF).to_bytes(3, "big")


def _certificate_message() -> bytes:
    from analyzer.capture.demo import _certificate

    der = _certificate("fuzz.example", 5)
    chain = _u24(len(der)) + der
    return _u24(len(chain)) + chain


def _client_hello_body(sni: str) -> bytes:
    host = sni.encode()
    sni_ext = struct.pack(">HH", 0, len(host) + 5) + struct.pack(">HBH", len(host) + 3, 0, len(host)) + host
    srtp = struct.pack(">HHH", 14, 5, 2) + b"\x00\x01\x00"
    exts = sni_ext + srtp
    return (b"\xfe\xfd" + bytes(32) + b"\x00" + b"\x00" + b"\x00\x02\xc0\x2b" + b"\x01\x00"
            + struct.pack(">H", len(exts)) + exts)


def _hs(msg_type: int, seq: int, body: bytes, off: int = 0, length: int | None = None) -> bytes:
    total = len(body) if length is None else length
    return bytes([msg_type]) + _u24(total) + struct.pack(">H", seq) + _u24(off) + _u24(len(body)) + body


def _dtls_record(payload: bytes, seq: int, ctype: int = 22) -> bytes:
    return bytes([ctype]) + b"\xfe\xfd\x00\x00" + seq.to_bytes(6, "big") + struct.pack(">H", len(payload)) + payload


def dtls_base() -> Flow:
    """A ClientHello (use_srtp) and a Certificate cut in three fragments over two datagrams."""
    hello = _hs(1, 0, _client_hello_body("dtls.fuzz.example"))
    cert = _certificate_message()
    a, b = len(cert) // 3, 2 * len(cert) // 3
    f1 = _hs(11, 1, cert[:a], 0, len(cert))
    f2 = _hs(11, 1, cert[a:b], a, len(cert))
    f3 = _hs(11, 1, cert[b:], b, len(cert))
    return Flow("dtls", "udp", 50000, 3478, [
        (0, -1, _dtls_record(hello, 0)),
        (1, -1, _dtls_record(f1 + f2, 0)),
        (1, -1, _dtls_record(f3, 1) + _dtls_record(b"\x01", 2, ctype=20)),
    ])


def _tls_client_hello(sni: str) -> bytes:
    body = b"\x03\x03" + _client_hello_body(sni)[2:]
    hs = b"\x01" + _u24(len(body)) + body
    return b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs


def tcp_bases() -> list[Flow]:
    from analyzer.capture.demo import server_flight

    tls = Flow("tcp", "tcp", 40000, 443)
    _segment(tls, 0, 1000, _tls_client_hello("tls.fuzz.example"), 700)
    _segment(tls, 1, 5000, server_flight("tls.fuzz.example", 9), 500)
    sip = Flow("tcp", "tcp", 40001, 5060)
    invite = (b"INVITE sip:bob@example.org SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.1\r\nCall-ID: fuzz@x\r\n"
              b"From: <sip:a@x>\r\nTo: <sip:b@y>\r\nUser-Agent: fuzz\r\nContent-Type: application/sdp\r\n")
    sdp = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/SAVP 0\r\n"
    sdp += b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + b"A" * 40 + b"\r\n"
    _segment(sip, 0, 77, invite + b"Content-Length: %d\r\n\r\n" % len(sdp) + sdp, 90)
    dns = Flow("tcp", "tcp", 40002, 53)
    msg = struct.pack(">HHHHHH", 7, 0x8180, 1, 1, 0, 0) + b"\x03www\x04fuzz\x00\x00\x01\x00\x01"
    msg += b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([93, 1, 2, 3])
    _segment(dns, 1, 9, struct.pack(">H", len(msg)) + msg, 20)
    return [tls, sip, dns]


def _segment(flow: Flow, d: int, seq: int, data: bytes, size: int) -> None:
    for off in range(0, len(data), size):
        flow.packets.append((d, (seq + off) & 0xFFFFFFFF, data[off : off + size]))


@cache
def _meet_hello() -> bytes | None:
    """The ClientHello of the first QUIC Initial in the shared google_meet.pcapng, if present."""
    from analyzer.dissect import quic

    for payload in _real_udp_payloads("google_meet.pcapng", 12):
        initial = quic.parse_initial(payload)
        if initial is not None and initial.client_hello is not None:
            return quic.crypto_stream(list(initial.crypto))
    return None


_CAPTURES: list[Path] = []


def _real_udp_payloads(name: str, count: int) -> list[bytes]:
    from analyzer.scan.scanner import scan_capture

    for root in _CAPTURES:
        path = root / name
        if path.exists():
            s = scan_capture(path).samples
            s = s[s["tcp_seq"] < 0] if "tcp_seq" in s else s
            return [bytes(p) for p in s.sort_values("frame")["payload"].head(count).tolist() if p]
    return []


def quic_base() -> Flow:
    hello = _meet_hello() or _tls_client_hello("quic.fuzz.example")[5:]
    dcid = bytes(range(8))
    half = len(hello) // 2
    return Flow("quic", "udp", 50001, 443, [
        (0, -1, protect(1, dcid, 0, crypto_frame(half, hello[half:]), 1200)),
        (0, -1, protect(1, dcid, 1, crypto_frame(0, hello[:half]), 1200)),
    ])


# --- QUIC Initial protection (RFC 9001 5.3/5.4), to make mutated CRYPTO frames decryptable ----


def varint(v: int) -> bytes:
    v = max(0, min(v, (1 << 62) - 1))
    if v < 0x40:
        return bytes([v])
    if v < 0x4000:
        return (v | 0x4000).to_bytes(2, "big")
    if v < 0x40000000:
        return (v | 0x80000000).to_bytes(4, "big")
    return (v | 0xC000000000000000).to_bytes(8, "big")


def crypto_frame(offset: int, data: bytes, length: int | None = None) -> bytes:
    return b"\x06" + varint(offset) + varint(len(data) if length is None else length) + data


def protect(version: int, dcid: bytes, pn: int, payload: bytes, pad_to: int = 0) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from analyzer.dissect.quic import initial_keys

    keys = initial_keys(version, dcid)
    if keys is None:
        return b""
    # PADDING frames: to the asked size, and at least enough for the header-protection sample
    payload = payload + b"\x00" * max(0, pad_to - len(payload), 20 - len(payload))
    pn_bytes = (pn & 0xFFFF).to_bytes(2, "big")
    header = (bytes([0xC1]) + version.to_bytes(4, "big") + bytes([len(dcid)]) + dcid + b"\x00\x00"
              + ((len(payload) + 18) | 0x4000).to_bytes(2, "big") + pn_bytes)
    nonce = bytes(a ^ b for a, b in zip(keys.iv, (pn & 0xFFFF).to_bytes(12, "big"), strict=True))
    packet = bytearray(header + AESGCM(keys.key).encrypt(nonce, payload, header))
    at = len(header) - 2
    enc = Cipher(algorithms.AES(keys.hp), modes.ECB()).encryptor()
    mask = enc.update(bytes(packet[at + 4 : at + 20])) + enc.finalize()
    packet[0] ^= mask[0] & 0x0F
    packet[at] ^= mask[1]
    packet[at + 1] ^= mask[2]
    return bytes(packet)


# --- mutators ---------------------------------------------------------------------------------


def _flip(data: bytes, rng: random.Random, n: int | None = None) -> bytes:
    if not data:
        return data
    b = bytearray(data)
    for _ in range(n or rng.randint(1, 8)):
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    return bytes(b)


def _cuts(n: int, rng: random.Random, pieces: int) -> list[tuple[int, int]]:
    """Random [start, end) spans covering 0..n, some overlapping, some missing."""
    points = sorted({0, n, *(rng.randrange(n + 1) for _ in range(max(0, pieces - 1)))})
    spans = list(itertools.pairwise(points))
    if spans and rng.random() < 0.3:
        a, b = rng.choice(spans)
        spans.append((max(0, a - rng.randint(1, 64)), min(n, b + rng.randint(1, 64))))  # overlap
    if len(spans) > 1 and rng.random() < 0.2:
        spans.remove(rng.choice(spans))  # a hole
    return spans


def dtls_refragment(flow: Flow, rng: random.Random) -> Flow:
    """Every handshake message cut anew (overlaps, holes, duplicates), datagrams shuffled."""
    messages = [(1, 0, _client_hello_body("dtls.fuzz.example")), (11, 1, _certificate_message())]
    frags = []
    for mtype, seq, body in messages:
        for a, b in _cuts(len(body), rng, rng.randint(1, 12)):
            frags.append(_hs(mtype, seq, body[a:b], a, len(body)))
    frags += rng.sample(frags, k=min(len(frags), rng.randint(0, 3)))  # retransmissions
    rng.shuffle(frags)
    out, rec = [], 0
    while frags:
        take = [frags.pop() for _ in range(min(len(frags), rng.randint(1, 4)))]
        out.append((rng.randint(0, 1), -1, _dtls_record(b"".join(take), rec)))
        rec += 1
    return Flow(flow.kind, flow.transport, flow.client_port, flow.server_port, out)


def dtls_lying_headers(flow: Flow, rng: random.Random) -> Flow:
    """Fragment headers whose length, offset, fragment length or sequence lie."""
    out = []
    for d, seq, p in flow.packets:
        b = bytearray(p)
        pos = 13
        while pos + 12 <= len(b):
            field_at = rng.choice((1, 4, 6, 9))
            if field_at == 4:
                b[pos + 4 : pos + 6] = struct.pack(">H", rng.choice((0, 1, 0xFFFF, rng.randrange(0x10000))))
            else:
                b[pos + field_at : pos + field_at + 3] = _u24(rng.choice(U24_EDGES))
            pos += 12 + rng.randint(0, 600)
        out.append((d, seq, bytes(b)))
    return Flow(flow.kind, flow.transport, flow.client_port, flow.server_port, out)


def dtls_header_spam(flow: Flow, rng: random.Random) -> Flow:
    """The issue-16 bomb: records full of fragment headers for new messages, little or no data."""
    out = list(flow.packets)
    for k in range(rng.randint(1, 20)):
        n = rng.randint(1, 1300)
        data = rng.choice((0, 1, 7))
        hs = b"".join(_hs(rng.choice((1, 2, 11, 12)), (k * 1300 + i) & 0xFFFF, b"\xab" * data, 0,
                          rng.choice((0x3FFFF, 0x40000, 0xFFFF, 5000))) for i in range(n))
        out.append((rng.randint(0, 1), -1, _dtls_record(hs[: SAMPLE_BYTES - 13], k)))
    return Flow(flow.kind, flow.transport, flow.client_port, flow.server_port, out)


def quic_crypto_frames(flow: Flow, rng: random.Random) -> Flow:
    """The ClientHello as CRYPTO frames cut anew (overlaps, holes, absurd offsets and lengths),
    spread over 1-8 properly protected Initials of one DCID."""
    hello = _meet_hello() or _tls_client_hello("quic.fuzz.example")[5:]
    if rng.random() < 0.3:
        hello = _flip(hello, rng)
    frames = []
    for a, b in _cuts(len(hello), rng, rng.randint(1, 10)):
        off = a if rng.random() > 0.1 else rng.choice((1 << 16, (1 << 62) - 1, 0xFFFFFFFF, a + 7))
        length = None if rng.random() > 0.1 else rng.choice((0, b - a + 1, 1 << 20))
        frames.append(crypto_frame(off, hello[a:b], length))
    frames += [b"\x01"] * rng.randint(0, 3)  # PING
    rng.shuffle(frames)
    dcid = bytes(rng.randrange(256) for _ in range(rng.choice((0, 8, 20))))
    version = rng.choice((1, 1, 0x6B3343CF, 0xFF00001D))
    out = []
    per = max(1, len(frames) // rng.randint(1, 8))
    for i in range(0, len(frames), per):
        payload = b"".join(frames[i : i + per])
        if rng.random() < 0.1:
            payload = _flip(payload, rng)
        out.append((0, -1, protect(version, dcid, i, payload, rng.choice((0, 1200)))))
    if rng.random() < 0.2:
        out.append((0, -1, _flip(out[0][2], rng)))  # a damaged copy: fails authentication
    return Flow(flow.kind, flow.transport, flow.client_port, flow.server_port, [p for p in out if p[2]])


def tcp_resegment(flow: Flow, rng: random.Random) -> Flow:
    """Each direction cut anew, with overlaps (conflicting retransmissions), holes, reordering,
    tiny segments and a base sequence number near the 2**32 wrap."""
    out = []
    for d in (0, 1):
        pkts = [(s, p) for x, s, p in flow.packets if x == d]
        if not pkts:
            continue
        stream = b"".join(p for _s, p in sorted(pkts, key=lambda sp: sp[0]))
        base = rng.choice((pkts[0][0], 0xFFFFFFFF - rng.randrange(2000), 0, rng.randrange(1 << 32)))
        for a, b in _cuts(len(stream), rng, rng.randint(1, 60)):
            chunk = stream[a:b]
            if rng.random() < 0.1:
                chunk = _flip(chunk, rng)
            out.append((d, (base + a) & 0xFFFFFFFF, chunk))
    rng.shuffle(out)
    return Flow(flow.kind, flow.transport, flow.client_port, flow.server_port, out)


def tcp_lying_sequence(flow: Flow, rng: random.Random) -> Flow:
    """Sequence numbers replaced by edge values, segments duplicated or flipped."""
    out = []
    for d, s, p in flow.packets:
        if rng.random() < 0.4:
            s = rng.choice(U32_EDGES)
        out.append((d, s, _flip(p, rng) if rng.random() < 0.2 else p))
        if rng.random() < 0.2:
            out.append((d, s, p[: rng.randint(0, len(p))]))
    return Flow(flow.kind, flow.transport, flow.client_port, flow.server_port, out)


def payload_flips(flow: Flow, rng: random.Random) -> Flow:
    out = [(d, s, _flip(p, rng) if rng.random() < 0.5 else p[: rng.randint(0, len(p))]) for d, s, p in flow.packets]
    return Flow(flow.kind, flow.transport, flow.client_port, flow.server_port, out)


MUTATORS: dict[str, tuple[tuple[str, ...], Callable[[Flow, random.Random], Flow]]] = {
    "dtls_refragment": (("dtls",), dtls_refragment),
    "dtls_lying_headers": (("dtls",), dtls_lying_headers),
    "dtls_header_spam": (("dtls",), dtls_header_spam),
    "quic_crypto_frames": (("quic",), quic_crypto_frames),
    "tcp_resegment": (("tcp",), tcp_resegment),
    "tcp_lying_sequence": (("tcp",), tcp_lying_sequence),
    "payload_flips": (("dtls", "quic", "tcp"), payload_flips),
}


@dataclass
class Mutant:
    index: int
    base: str
    ops: list[str]
    flow: Flow


@cache
def bases() -> tuple[Flow, ...]:
    return (dtls_base(), quic_base(), *tcp_bases())


def make_mutant(seed: str, index: int) -> Mutant:
    rng = random.Random(f"{seed}:r:{index}")
    all_bases = bases()
    k = rng.randrange(len(all_bases))
    flow = all_bases[k]
    ops = []
    for _ in range(rng.randint(1, 3)):
        names = [n for n, (kinds, _f) in MUTATORS.items() if flow.kind in kinds]
        name = rng.choice(names)
        flow = MUTATORS[name][1](flow, rng)
        ops.append(name)
    return Mutant(index, f"{all_bases[k].kind}:{all_bases[k].server_port}", ops, _within_sample_bounds(flow))


def _within_sample_bounds(flow: Flow) -> Flow:
    kept: dict[int, int] = Counter()
    out = []
    for d, s, p in flow.packets:
        if kept[d] < SAMPLE_PACKETS:
            kept[d] += 1
            out.append((d, s, p[:SAMPLE_BYTES]))
    return Flow(flow.kind, flow.transport, flow.client_port, flow.server_port, out)


# --- running --------------------------------------------------------------------------------------


def frames_of(flow: Flow):
    """(flows, samples) DataFrames of one flow, shaped as the scan hands them to dissect_flows."""
    import pandas as pd

    flows = pd.DataFrame({"flow_id": [0], "transport": [flow.transport], "client_port": [flow.client_port],
                          "server_port": [flow.server_port], "client_ip": ["10.0.0.1"], "server_ip": ["192.0.2.1"]})
    n = len(flow.packets)
    samples = pd.DataFrame({
        "flow_id": [0] * n, "frame": list(range(1, n + 1)), "ts_ns": [1_700_000_000_000_000_000 + i for i in range(n)],
        "dir": [d for d, _s, _p in flow.packets], "tcp_seq": [s for _d, s, _p in flow.packets],
        "payload": [p for _d, _s, p in flow.packets],
    })
    return flows, samples


class _Alarm(BaseException):
    pass


def _vm_hwm_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_one(mutant: Mutant, timeout: float) -> tuple[str, str]:
    """('ok' | 'crash' | 'hang', detail) for one mutant, in this process under a SIGALRM watchdog."""
    from analyzer.dissect.flowfacts import dissect_flows

    flows, samples = frames_of(mutant.flow)

    def on_alarm(signum: int, frame: object) -> None:
        raise _Alarm

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        result = dissect_flows(flows, samples)
    except _Alarm:
        return "hang", f"dissect_flows did not finish within {timeout} s"
    except Exception as exc:  # an exception leaving dissect_flows is a crash
        return "crash", f"{type(exc).__name__}: {exc}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    if result.errors:
        return "crash", f"parser raised inside the guard: {result.errors}"
    if not len(result.facts):
        return "ok", ""
    row = result.facts.iloc[0]
    # what the mutant reached: protocols, and whether a reassembled message was parsed whole
    reached = list(row["protocols"] or [])
    reached += [f"{k}_parsed" for k in ("sni", "dtls_cert", "cert_subject") if isinstance(row.get(k), str)]
    return "ok", ",".join(reached)


def fuzz_reassembly(count: int, *, seed: str, timeout: float = 10.0, start: int = 0,
                    captures: Path | None = None, memory_mb: float = MEMORY_BUDGET_MB,
                    progress: Callable[[int, Counter], None] | None = None) -> dict:
    """Run `count` reassembly mutants in this process; a summary like bench/fuzz.py's."""
    if captures is not None and captures not in _CAPTURES:
        _CAPTURES.append(captures)
    bases()  # build (and import) before measuring memory
    import analyzer.dissect.flowfacts  # noqa: F401

    t0 = time.perf_counter()
    before = _vm_hwm_mb()
    verdicts: Counter = Counter()
    by_op: Counter = Counter()
    reached: Counter = Counter()
    failures: list[dict] = []
    slowest: list[tuple[float, int]] = []
    for done, i in enumerate(range(start, start + count), 1):
        m = make_mutant(seed, i)
        t = time.perf_counter()
        verdict, detail = run_one(m, timeout)
        took = time.perf_counter() - t
        verdicts[verdict] += 1
        by_op.update(m.ops)
        if verdict == "ok":
            reached.update(p for p in detail.split(",") if p)
        else:
            failures.append({"index": i, "verdict": verdict, "base": m.base, "ops": m.ops, "detail": detail})
        slowest = sorted([*slowest, (round(took, 3), i)], reverse=True)[:5]
        if progress is not None:
            progress(done, verdicts)
    grown = _vm_hwm_mb() - before
    return {
        "target": "reassembly",
        "seed": seed,
        "mutants": sum(verdicts.values()),
        "crashes": verdicts["crash"],
        "hangs": verdicts["hang"],
        "peak_rss_growth_mb": round(grown, 1),
        "memory_budget_mb": memory_mb,
        "memory_ok": grown <= memory_mb,
        "seconds": round(time.perf_counter() - t0, 1),
        "by_mutator": dict(sorted(by_op.items())),
        "protocols_reached": dict(sorted(reached.items())),
        "slowest": [{"seconds": s, "index": i} for s, i in slowest],
        "failures": failures,
    }
