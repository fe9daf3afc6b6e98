"""The compiled hot path (_decode.c, _kinds.c) against its numpy twins: identical columns on the
shared captures, on every synthetic link type and tunnel, and on thousands of damaged mutants."""

from __future__ import annotations

import numpy as np
import pytest

from analyzer.capture import CaptureReader
from analyzer.capture.model import FrameChunk
from analyzer.decode import PacketColumns, decode_frames_compiled, decode_frames_numpy
from analyzer.decode import reasons as R
from analyzer.dissect import kinds as K
from analyzer.scan.flows import KEY_COLUMNS, CanonicalColumns, canonical, flow_keys
from tests.conftest import real_captures

if K._compiled is None or __import__("analyzer.decode", fromlist=["_compiled"])._compiled is None:
    pytest.skip("the C extensions are not built (pure-Python install)", allow_module_level=True)

S = pytest.importorskip("scapy.all")
from tests.test_decode_synthetic import LINKS, MAC, TUNNELS  # noqa: E402

KEYED = ("ver", "proto", "src_hi", "src_lo", "dst_hi", "dst_lo", "sport", "dport", "tcp_flags", "tcp_seq", "l4_len")


def _differences(chunk: FrameChunk) -> list[str]:
    """Where the two decoders (and then the two kind classifiers) disagree on a chunk."""
    a, fa, ca = decode_frames_numpy(chunk)
    b, fb, cb = decode_frames_compiled(chunk)
    out = []
    if not np.array_equal(a.status, b.status):
        i = np.flatnonzero(a.status != b.status)[:3]
        out.append(f"status at frames {i.tolist()}: numpy {a.status[i].tolist()} compiled {b.status[i].tolist()}")
    ok = (a.status == R.OK) & (b.status == R.OK)
    # Fields of frames that gave no 5-tuple are never read downstream, nor a payload offset without bytes.
    for name in (*KEYED, "encap"):
        if not np.array_equal(getattr(a, name)[ok], getattr(b, name)[ok]):
            out.append(name)
    with_payload = ok & (a.l4_len > 0)
    if not np.array_equal(a.l4_off[with_payload], b.l4_off[with_payload]):
        out.append("l4_off")
    for name in ("frag_off", "more", "frag_id"):
        if not np.array_equal(getattr(fa, name)[ok], getattr(fb, name)[ok]):
            out.append(name)
    if ca != cb:
        out.append(f"counters {ca} vs {cb}")
    idx = np.flatnonzero(ok)
    reference = canonical(a, idx)
    if not np.array_equal(flow_keys(reference), b.flow_key[idx]):
        out.append("flow keys")
    # One shape: the numpy twin carries the same per-frame side and key as the C loop.
    if not (np.array_equal(a.flow_key[idx], b.flow_key[idx]) and np.array_equal(a.a_is_src[idx], b.a_is_src[idx])):
        out.append("numpy twin's flow keys / a_is_src")
    lazy = CanonicalColumns(b, idx, b.a_is_src[idx])
    for name in (*KEY_COLUMNS, "dir"):
        if not np.array_equal(reference[name], lazy[name]) or reference[name].dtype != lazy[name].dtype:
            out.append(f"canonical {name}")
    out += _kind_differences(chunk.buf, a, np.flatnonzero(ok))
    return out


def _kind_differences(buf: np.ndarray, cols: PacketColumns, idx: np.ndarray) -> list[str]:
    args = (buf, cols.l4_off[idx], cols.l4_len[idx], cols.proto[idx], cols.sport[idx], cols.dport[idx])
    ka, kb = K.payload_kinds_numpy(*args), K.payload_kinds(*args)
    if np.array_equal(ka, kb):
        return []
    i = np.flatnonzero(ka != kb)[:3]
    return [f"kinds: numpy {[K.kind_name(k) for k in ka[i]]} compiled {[K.kind_name(k) for k in kb[i]]}"]


def _chunk(frames: list[tuple[int, bytes]]) -> FrameChunk:
    lens = np.array([len(f) for _, f in frames], dtype=np.int64)
    off = np.zeros(len(frames), np.int64)
    off[1:] = np.cumsum(lens)[:-1]
    buf = np.frombuffer(b"".join(f for _, f in frames) + b"\x45" * 64, dtype=np.uint8).copy()
    n = len(frames)
    return FrameChunk(
        buf=buf,
        data_off=off,
        caplen=lens,
        wirelen=lens,
        ts_ns=np.arange(n, dtype=np.int64),
        linktype=np.array([lt for lt, _ in frames], dtype=np.int32),
        frame_no=np.arange(n, dtype=np.int64),
    )


# An empty file has no frames to compare (the reader refuses it; test_labels_real and test_session_real cover that).
@pytest.mark.parametrize("path", [p for p in real_captures() if p.stat().st_size], ids=lambda p: p.name)
def test_real_captures_decode_identically(path) -> None:
    frames = 0
    with CaptureReader(str(path)) as reader:
        for chunk in reader.chunks():
            assert _differences(chunk) == [], path.name
            frames += len(chunk)
        assert frames == reader.info.frames


def _base_frames() -> list[tuple[int, bytes]]:
    """Every link type with IPv4/IPv6 UDP, TCP and ICMP, every tunnel, and tunnels nested too deep."""
    inner = [
        S.IP(src="192.0.2.1", dst="198.51.100.2") / S.UDP(sport=5004, dport=8801) / (b"\x05" + b"m" * 40),
        S.IPv6(src="2001:db8::1", dst="2001:db8::2") / S.UDP(sport=3478, dport=3478) / (b"\x00\x01" + b"s" * 30),
        S.IP(src="192.0.2.1", dst="198.51.100.2") / S.TCP(sport=40000, dport=443, flags="PA") / b"\x16\x03\x01xyz",
        S.IP(src="192.0.2.1", dst="198.51.100.2") / S.ICMP(type=8) / b"ping",
        S.IPv6(src="2001:db8::1", dst="2001:db8::2") / S.IPv6ExtHdrHopByHop() / S.IPv6ExtHdrFragment(m=1, id=9)
        / S.UDP(sport=53, dport=53) / b"dns",
        S.IP(src="192.0.2.1", dst="198.51.100.2", flags="MF", frag=0) / S.UDP(sport=1, dport=2) / b"frag",
    ]
    frames = []
    for linktype, build, _ in LINKS.values():
        for pkt in inner:
            ip = S.raw(pkt)
            if (linktype == 228 and ip[0] >> 4 == 6) or (linktype == 229 and ip[0] >> 4 == 4):
                continue
            frames.append((linktype, build(ip)))
    for pkt, _ in TUNNELS.values():
        frames.append((1, S.raw(S.Ether(**MAC) / pkt)))
    deep = S.IP(src="10.9.9.9", dst="10.9.9.8") / S.UDP(sport=9, dport=9) / b"deep"
    for _ in range(6):
        deep = S.IP(src="10.0.0.1", dst="10.0.0.2") / deep
    frames.append((1, S.raw(S.Ether(**MAC) / deep)))
    erspan = S.IP(src="10.0.0.1", dst="10.0.0.2", proto=47) / S.Raw(
        b"\x10\x00\x88\xbe\x00\x00\x00\x01" + b"\x10\x00\x00\x05\x00\x00\x00\x00"
        + S.raw(S.Ether(**MAC) / inner[0])
    )
    pptp = S.IP(src="10.0.0.1", dst="10.0.0.2", proto=47) / S.Raw(
        b"\x30\x01\x88\x0b" + b"\x00\x20\x00\x07" + b"\x00\x00\x00\x01" + b"\xff\x03\x00\x21" + S.raw(inner[0])
    )
    frames += [(1, S.raw(S.Ether(**MAC) / erspan)), (1, S.raw(S.Ether(**MAC) / pptp)), (999, b"\x00" * 40)]
    return frames


def test_synthetic_frames_decode_identically_and_decode_at_all() -> None:
    frames = _base_frames()
    chunk = _chunk(frames)
    assert _differences(chunk) == []
    cols, _, counters = decode_frames_compiled(chunk)
    assert (cols.status == R.OK).sum() >= len(frames) - 2  # all but the unknown link type and the 6in4 excess
    assert counters["tunnel_depth_exceeded"] == 1
    bits = np.bitwise_or.reduce(cols.encap)
    for bit in (R.ENCAP_VLAN, R.ENCAP_MPLS, R.ENCAP_PPPOE, R.ENCAP_GRE, R.ENCAP_IPIP, R.ENCAP_GTP, R.ENCAP_VXLAN):
        assert bits & bit, R.ENCAP_NAMES[bit]


@pytest.mark.parametrize("seed", range(4))
def test_damaged_mutants_decode_identically(seed: int) -> None:
    """Truncations and byte flips of every base frame: the bounds checks of both decoders agree."""
    rng = np.random.default_rng(seed)
    mutants = []
    for linktype, frame in _base_frames():
        for _ in range(60):
            data = bytearray(frame)
            for _ in range(int(rng.integers(1, 4))):
                data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
            cut = int(rng.integers(0, len(data) + 1)) if rng.random() < 0.5 else len(data)
            mutants.append((linktype, bytes(data[:cut])))
    chunk = _chunk(mutants)
    assert _differences(chunk) == []
    statuses = set(decode_frames_compiled(chunk)[0].status.tolist())
    assert {R.OK, R.BAD_IP_HEADER, R.TRUNCATED_TRANSPORT, R.TRUNCATED_LINK, R.NON_IP} <= statuses


INTERESTING_FIRST = (0, 1, 3, 4, 5, 0x0F, 0x10, 0x0D, 0x1E, 0x21, 0x15, 0x1F, 0x40, 0x4F, 20, 22, 23, 25, 0x2C,
                     0x3C, 0x80, 0x90, 0xBF, 0xC0, 0xFF, 0x49, 0x53, 0x7F)  # fmt: skip
INTERESTING_PORTS = (53, 5353, 5355, 5060, 5061, 443, 8801, 8810, 3478, 1900, 40000, 50000, 50001)
# Start lines of the text protocols (SIP, SSDP's search and announcement).
INTERESTING_TEXT = (b"INVITE sip:a SIP/2.0", b"NOTIFY * HTTP/1.1", b"M-SEARCH * HTTP/1.1")


def _payload_mutants(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """Random payloads nudged towards every rule: first bytes, cookies, lengths that fit."""
    lens = rng.integers(0, 80, n)
    buf = rng.integers(0, 256, int(lens.sum()) + 8, dtype=np.uint8)
    off = np.zeros(n, np.int64)
    off[1:] = np.cumsum(lens)[:-1]
    for i in np.flatnonzero(lens):
        o, size, r = off[i], lens[i], rng.random()
        buf[o] = INTERESTING_FIRST[rng.integers(len(INTERESTING_FIRST))]
        if size > 8 and r < 0.2:
            buf[o + 4 : o + 8] = (0x21, 0x12, 0xA4, 0x42) if r < 0.12 else (0x5A, 0x52, 0x54, 0x50)
        elif size > 4 and r < 0.4:
            v = max(size - (20 if r < 0.3 else 4 + int(rng.integers(0, 4))), 0)
            buf[o + 2], buf[o + 3] = v >> 8, v & 0xFF
        elif size > 13 and r < 0.5:
            v = size - 13
            buf[o + 1 : o + 3] = (0xFE, 0xFD)
            buf[o + 11], buf[o + 12] = v >> 8, v & 0xFF
        elif size > 9 and r < 0.65:
            buf[o + 1] = rng.choice([1, 0x0F, 0x15])
            buf[o + 7], buf[o + 8] = rng.choice([0, 4]), rng.choice([0x0F, 0x10, 0x15, 0x21, 0x0A])
        elif size > 4 and r < 0.7:
            buf[o + 1 : o + 4] = (1, 0, 0xFB)
        elif r < 0.75:
            text = INTERESTING_TEXT[int(rng.integers(len(INTERESTING_TEXT)))][:size]
            buf[o : o + len(text)] = np.frombuffer(text, np.uint8)
        elif size > 12 and r < 0.8:  # RTP that is all padding (P set, count = bytes after the header)
            buf[o], buf[o + 1], buf[o + size - 1] = 0xA0, 111, size - 12
    proto = rng.choice([6, 17, 17, 1], n).astype(np.uint8)
    sport = rng.choice(INTERESTING_PORTS, n)
    dport = rng.choice(INTERESTING_PORTS, n)
    lens[rng.random(n) < 0.01] = -5
    return buf, off, lens, proto, sport, dport


def test_payload_kinds_identical_on_mutated_payloads() -> None:
    rng = np.random.default_rng(7)
    seen = set()
    for _ in range(20):
        args = _payload_mutants(rng, 5000)
        ka, kb = K.payload_kinds_numpy(*args), K.payload_kinds(*args)
        assert np.array_equal(ka, kb), np.flatnonzero(ka != kb)[:5]
        seen |= set(ka.tolist())
    assert seen == set(range(len(K.KIND_NAMES)))  # every rule fired somewhere


def test_payload_kinds_bad_offsets_read_nothing() -> None:
    buf = np.frombuffer(b"\x16\x03\x01" * 10, np.uint8)
    args = (buf, np.array([-3, 25, 0]), np.array([5, 10, 3]), np.full(3, 6, np.uint8), np.full(3, 1), np.full(3, 2))
    assert K.payload_kinds(*args).tolist() == K.payload_kinds_numpy(*args).tolist() == [
        K.NONE, K.NONE, K.KIND_CODES["tls_handshake"],
    ]  # fmt: skip


def _pure_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """What CONFSCOPE_PURE_PYTHON=1 selects at import, switched on in this process."""
    import analyzer.dissect.rtpcolumns as media
    import analyzer.scan.groups as groups
    from analyzer import decode
    from analyzer.capture import walk

    monkeypatch.setattr(decode, "_compiled", None)
    monkeypatch.setattr(media, "_compiled_kinds", None)
    monkeypatch.setattr(K, "_compiled", None)
    monkeypatch.setattr(groups, "_compiled", None)
    monkeypatch.setattr(walk, "pcap_walker", walk.walk_pcap)
    monkeypatch.setattr(walk, "pcapng_walker", walk.walk_pcapng)


def test_whole_scan_identical_without_the_extensions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flows, payload samples and media streams of every shared capture, compiled vs twins."""
    from analyzer.scan.scanner import scan_capture

    paths = [p for p in real_captures() if p.stat().st_size]
    if not paths:
        pytest.skip("../shared is absent")
    compiled = {p.name: scan_capture(str(p), chunk_bytes=1 << 16) for p in paths}
    with monkeypatch.context() as m:
        _pure_python(m)
        twins = {p.name: scan_capture(str(p), chunk_bytes=1 << 16) for p in paths}
    for name, a in compiled.items():
        b = twins[name]
        assert a.flows.equals(b.flows), name
        assert a.samples.equals(b.samples), name
        assert a.streams.equals(b.streams), name
    assert sum(len(r.flows) for r in compiled.values()) > 400


def test_grouping_identical_to_its_twin() -> None:
    import analyzer.scan.groups as G

    if G._compiled is None:
        pytest.skip("_groups is not built")
    rng = np.random.default_rng(3)
    for _ in range(100):
        n = int(rng.integers(0, 5000))
        keys = rng.integers(0, int(rng.integers(1, 300)), n).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        fast, slow = G.factorize(keys), G.factorize_numpy(keys)
        assert all(np.array_equal(x, y) for x, y in zip(fast, slow, strict=True))
        codes, uniq, first = fast
        assert np.array_equal(uniq[codes], keys) and np.array_equal(keys[first], uniq)
        assert np.array_equal(G.ranks(codes, uniq.size), G.ranks_numpy(codes, uniq.size))
    with pytest.raises(ValueError):
        G.ranks(np.array([0, 5]), 2)


def test_rtp_header_fields_identical_to_their_twin() -> None:
    """RTP header fields of mutated payloads posing as plain RTP and as Zoom media."""
    import analyzer.dissect.rtpcolumns as media

    rng = np.random.default_rng(11)
    fields_seen = 0
    for _ in range(20):
        buf, off, lens, _, sport, dport = _payload_mutants(rng, 4000)
        plen = np.where((off >= 0) & (off + lens <= buf.shape[0]), np.maximum(lens, 0), 0)
        # Make many payloads look like RTP v2 or like Zoom SFU/P2P media headers.
        for i in np.flatnonzero(plen > 40)[::2]:
            o = off[i]
            choice = rng.integers(0, 3)
            if choice == 0:
                buf[o] = 0x80 | int(rng.integers(0, 32))
            elif choice == 1:
                buf[o], buf[o + 8], buf[o + 27] = 0x05, rng.choice([0x0F, 0x10, 0x0D, 0x1E, 0x21]), 0x80
            else:
                buf[o], buf[o + 19] = rng.choice([0x0F, 0x10, 0x1E]), 0x80
        kinds = rng.choice([K.RTP, K.ZOOM_MEDIA], off.size).astype(np.uint8)
        sport = np.where(rng.random(off.size) < 0.5, 8801, sport)
        fast = media.rtp_header_fields(buf, off, plen, kinds, sport, dport)
        slow = media.rtp_header_fields_numpy(buf, off, plen, kinds, sport, dport)
        for name, x, y in zip(("rel", "hl", "seq", "rts", "ssrc", "pt", "zmedia", "ok"), fast, slow, strict=True):
            assert np.array_equal(x, y), name
        fields_seen += int(fast[7].sum())
    assert fields_seen > 1000  # the header checks passed often enough to compare real values


def test_compiled_functions_refuse_wrong_arrays() -> None:
    """Wrong item sizes or lengths are a Python error, never a read out of bounds."""
    import analyzer.dissect.rtpcolumns as media

    buf = np.zeros(64, np.uint8)
    off, n8 = np.zeros(3, np.int64), np.zeros(3, np.int64)
    small, u8 = np.zeros(3, np.int32), np.zeros(3, np.uint8)
    with pytest.raises(TypeError):
        K._compiled.payload_kinds(buf, off, n8, u8, small, small, np.zeros(3, np.uint8))  # int64 lengths
    with pytest.raises(TypeError):
        K._compiled.payload_kinds(buf, off, small, u8, small, small, np.zeros(2, np.uint8))  # short output
    with pytest.raises(TypeError):
        media._compiled_kinds.rtp_fields(buf, off, n8, u8, small, small, np.zeros((3, 7), np.int64))
