"""Property tests at the API boundary: the pcap/pcapng reader and analyze() on arbitrary bytes and
on structured mutations of the shared real captures raise nothing but ConfscopeError, keep every
frame inside its buffer, and finish under a watchdog."""

from __future__ import annotations

import contextlib
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.capture import CaptureReader, walk
from analyzer.errors import ConfscopeError
from analyzer.session.build import analyze
from tests.conftest import REAL
from tests.fuzz.harness import fuzzer, watchdog

PCAP_LE = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
PCAP_BE_NS = struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 0xFFFFFFFF, 101)
SHB_LE = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
IDB_LE = struct.pack("<IIHHI", 1, 20, 1, 0, 0) + struct.pack("<I", 20)
HEADERS = st.sampled_from([b"", PCAP_LE, PCAP_BE_NS, SHB_LE, SHB_LE + IDB_LE])
SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def read_all(data: bytes, chunk_bytes: int = 4096) -> int:
    """Read every chunk, checking each frame lies inside its buffer; returns the frame count."""
    frames = 0
    with CaptureReader(data, chunk_bytes=chunk_bytes) as reader:
        for chunk in reader.chunks():
            n = len(chunk)
            assert chunk.caplen.shape == chunk.data_off.shape == chunk.ts_ns.shape == (n,)
            if n:
                assert (chunk.caplen >= 0).all()
                assert (chunk.data_off >= 0).all()
                assert int((chunk.data_off + chunk.caplen).max()) <= len(chunk.buf)
                assert (chunk.wirelen >= chunk.caplen).all()
            frames += n
        assert reader.info.frames == frames
    return frames


@SETTINGS
@given(head=HEADERS, body=st.binary(max_size=3000), chunk=st.sampled_from([4096, 8192, 1 << 20]))
def test_reader_on_arbitrary_bytes_raises_only_confscope_errors(head: bytes, body: bytes, chunk: int) -> None:
    with watchdog(10, "reading arbitrary bytes"), contextlib.suppress(ConfscopeError):
        read_all(head + body, chunk)


@SETTINGS
@given(
    body=st.lists(
        st.tuples(
            st.sampled_from([1, 2, 3, 5, 6, 0x0A0D0D0A, 0xBAD]),
            st.sampled_from([0, 8, 12, 16, 28, 32, 36, 64, 0xFFFFFFFC]),
            st.binary(max_size=80),
        ),
        max_size=30,
    ),
    big=st.booleans(),
)
def test_reader_on_pcapng_block_soup(body: list[tuple[int, int, bytes]], big: bool) -> None:
    """Blocks of known and unknown types whose lengths lie, loop (zero) or overrun: no exception."""
    o = ">" if big else "<"
    shb = struct.pack(o + "IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack(o + "I", 28)
    data = shb + b"".join(struct.pack(o + "II", t, n) + pay + struct.pack(o + "I", n) for t, n, pay in body)
    with watchdog(10, "reading a pcapng block soup"):
        read_all(data)


@pytest.mark.skipif(not walk.COMPILED, reason="the C walker is not built; only the Python walker exists")
@settings(max_examples=400, deadline=None)
@given(
    buf=st.binary(min_size=0, max_size=600),
    pos=st.integers(0, 64),
    big=st.booleans(),
    max_caplen=st.sampled_from([0, 64, 65535, 262144]),
    limit=st.sampled_from([1, 3, 64]),
)
def test_c_and_python_walkers_agree_on_arbitrary_buffers(
    buf: bytes, pos: int, big: bool, max_caplen: int, limit: int
) -> None:
    """Differential check of the compiled walker (memory-unsafe language) against the Python one."""
    from analyzer.capture import _walk

    arr = np.frombuffer(buf, dtype=np.uint8)

    def outs() -> list[np.ndarray]:
        return [
            np.zeros(limit, np.int64),
            np.zeros(limit, np.int64),
            np.zeros(limit, np.int64),
            np.zeros(limit, np.uint32),
            np.zeros(limit, np.uint32),
            np.zeros(limit, np.uint32),
        ]

    a, b = outs(), outs()
    ra = _walk.walk_pcap(arr, pos, len(arr), big, max_caplen, *a[:5])
    rb = walk.walk_pcap(arr, pos, len(arr), big, max_caplen, *b[:5])
    assert tuple(ra) == tuple(rb)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x[: ra[0]], y[: ra[0]])
    a, b = outs(), outs()
    ra = _walk.walk_pcapng(arr, pos, len(arr), big, *a)
    rb = walk.walk_pcapng(arr, pos, len(arr), big, *b)
    assert tuple(ra) == tuple(rb)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x[: ra[0]], y[: ra[0]])


def _bases() -> list:
    bases = fuzzer().load_bases(REAL, max_bytes=16 * 1024)
    if not bases:
        pytest.skip(f"no shared real captures under {REAL}")
    return bases


@settings(max_examples=300, deadline=None)
@given(index=st.integers(0, 2**31))
def test_reader_on_mutated_real_captures(index: int) -> None:
    mutant = fuzzer().make_mutant(_bases(), "reader-property", index)
    what = f"reading mutant {index} of {mutant.base} ({mutant.ops})"
    with watchdog(10, what), contextlib.suppress(ConfscopeError):
        read_all(mutant.data)


@settings(max_examples=25, deadline=None)
@given(data=st.one_of(st.binary(max_size=400), HEADERS.flatmap(lambda h: st.binary(max_size=400).map(h.__add__))))
def test_analyze_on_arbitrary_bytes_raises_only_confscope_errors(data: bytes) -> None:
    with watchdog(30, "analyze() on arbitrary bytes"):
        try:
            session = analyze(data)
        except ConfscopeError:
            return
    assert session.report["schema"] == "confscope.session/1"
    assert session.exit_code in (0, 1)


@settings(max_examples=30, deadline=None)
@given(index=st.integers(0, 2**31))
def test_analyze_on_mutated_real_captures(index: int) -> None:
    mutant = fuzzer().make_mutant(_bases(), "analyze-property", index)
    with watchdog(30, f"analyze() on mutant {index} of {mutant.base} ({mutant.ops})"):
        try:
            session = analyze(mutant.data)
        except ConfscopeError:
            return
    assert session.report["capture"]["packets"] >= 0
    assert len(session.report["flows"]) == len(session.flows)
