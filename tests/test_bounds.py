"""Resource bounds against hostile captures (SECURITY.md, "Bounds"): lengths claiming gigabytes,
looping and zero-length pcapng blocks, resynchronisation storms, gzip bombs, deeply nested
tunnels and many tiny flows. Memory is measured as peak RSS of a fresh process."""

from __future__ import annotations

import struct

import pytest

from analyzer.capture import CaptureReader, reader, source, walk
from analyzer.decode import MAX_TUNNEL_DEPTH
from analyzer.scan.scanner import scan_capture
from analyzer.session.build import analyze
from tests.fuzz import hostile as H
from tests.fuzz.harness import run_measured, watchdog

MiB = 1024 * 1024


def _read(data: bytes, chunk_bytes: int = reader.DEFAULT_CHUNK_BYTES) -> tuple[int, CaptureReader]:
    with CaptureReader(data, chunk_bytes=chunk_bytes) as r:
        frames = sum(len(c) for c in r.chunks())
    return frames, r


def test_documented_constants_have_their_documented_values() -> None:
    """SECURITY.md quotes these numbers; a change must update it (and this test)."""
    assert 16 * MiB == reader.MAX_CAPLEN
    assert reader.DEFAULT_MAX_CAPLEN == 262144
    assert reader.MAX_RESYNC_EVENTS == 10000
    assert 64 * MiB == walk.PCAPNG_MAX_BLOCK
    assert 64 * MiB == source.RATIO_GRACE_BYTES
    assert MAX_TUNNEL_DEPTH == 4


def test_gigabyte_record_and_block_lengths_allocate_nothing_large() -> None:
    """Headers claiming ~4 GiB: skipped with a warning, peak RSS stays near the empty run's."""
    result = run_measured(
        """
        import struct
        from analyzer.capture import CaptureReader
        from tests.fuzz import hostile as H
        frame = H.ethernet(H.ipv4(17, b"\\x0a\\0\\0\\1", b"\\x0a\\0\\0\\2", H.udp(1, 2, b"x" * 64)))
        good = H.pcap_record(frame)
        files = {
            # snaplen and caplen both absurd, then a sane record the resync must find again
            "pcap": H.pcap_header(snaplen=0xFFFFFFFF) + good
            + H.pcap_record(b"", caplen=0xFFFFFFF0, wire=0xFFFFFFFF) + good * 50,
            "pcap_1g": H.pcap_header() + good + H.pcap_record(b"\\0" * 32, caplen=1 << 30) + good * 50,
            "pcapng": H.shb() + H.idb() + H.epb(frame)
            + struct.pack("<II", 6, 0xFFFFFFFC) + b"\\0" * 64 + H.epb(frame) * 50,
            "pcapng_epb_caplen": H.shb() + H.idb()
            + H.epb(frame)[:20] + struct.pack("<I", 0xFFFFFFFF) + H.epb(frame)[24:] + H.epb(frame) * 50,
            "pcapng_63m": H.shb() + H.idb() + struct.pack("<II", 6, 63 * 1024 * 1024) + b"\\0" * 4096,
        }
        out = {}
        for name, data in files.items():
            with CaptureReader(data) as r:
                frames = sum(len(c) for c in r.chunks())
            out[name] = {"frames": frames, "warned": bool(r.info.warnings), "truncated": r.info.truncated}
        _emit(out)
        """
    )
    for name in ("pcap", "pcap_1g", "pcapng", "pcapng_epb_caplen"):
        assert result[name]["warned"], name
        assert result[name]["frames"] >= 50, f"{name}: the records after the lie were lost"
    assert result["pcapng_63m"]["truncated"]
    # The reader's own working set is one 8 MiB buffer plus walk arrays; 96 MiB leaves room for
    # allocator noise and is far below any of the claimed lengths.
    assert result["peak_rss_mb"] - result["baseline_rss_mb"] < 96, result


def test_zero_length_and_looping_pcapng_blocks_terminate_and_resynchronise() -> None:
    frame = H.ethernet(H.ipv4(17, b"\x0a\0\0\1", b"\x0a\0\0\2", H.udp(1, 2, b"y" * 20)))
    junk = [
        b"\x00" * 4096,  # block type 0, length 0: a naive walk would never advance
        struct.pack("<III", 6, 0, 0) * 300,  # EPB type with zero length
        struct.pack("<III", 6, 12, 12) * 300,  # minimal blocks whose length points at themselves
        struct.pack("<II", 6, 8) * 500,  # length below the minimum block
    ]
    data = H.shb() + H.idb() + H.epb(frame) + b"".join(junk) + H.epb(frame) * 3
    with watchdog(10, "reading zero-length and self-referencing blocks"):
        frames, r = _read(data)
    assert frames == 4, "the packets after the junk must be found again"
    assert r.info.skipped["corrupt_record"] >= 1
    assert any("resynchronise" in w for w in r.info.warnings)


def _cap_storm(triples: int) -> bytes:
    """Corrupt headers each between two good records: the resync confirms a candidate by the
    record after it, so every corrupt header costs exactly one resynchronisation."""
    frame = H.pcap_record(H.ethernet(H.ipv4(17, b"\x0a\0\0\1", b"\x0a\0\0\2", H.udp(1, 2, b"z" * 30))))
    bad = struct.pack("<IIII", 1_600_000_000, 2, 0xFFFFFFF0, 0xFFFFFFFF)
    return H.pcap_header() + (frame + bad + frame) * triples


def test_resync_events_are_capped_and_the_cap_is_reported() -> None:
    """More corrupt headers than MAX_RESYNC_EVENTS: reading stops, and a warning names the cap
    even after thousands of resynchronisations (warnings are capped at 200)."""
    cap = reader.MAX_RESYNC_EVENTS
    with watchdog(30, f"reading {cap + 2000} corrupt headers"):
        frames, r = _read(_cap_storm(cap + 2000))
    assert r.info.skipped["corrupt_record"] == cap
    assert 2 * cap - 10 <= frames < 2 * (cap + 2000), "reading must stop at the cap, keeping the records before it"
    assert r.info.truncated
    assert any("too many corrupt records" in w and str(cap) in w for w in r.info.warnings)
    assert len(r.info.warnings) < 60, "resync warnings must be summarised, not listed one by one"


def test_pcapng_resync_storm_is_linear() -> None:
    """Each fake block (known type, agreeing lengths, too short for an EPB) is a resync event:
    these once took 2 minutes for 320 KB because every event scanned the rest of the buffer."""
    with watchdog(10, "pcapng resync storm of 9.6 MB"):
        frames, r = _read(H.resync_storm_pcapng(600_000))
    assert frames == 0
    assert r.info.skipped["corrupt_record"] >= 1


def test_pcap_resync_storm_is_linear() -> None:
    """Good, good, corrupt, repeated: 1.1 MB once took 9 minutes; now it is read in about a second."""
    with watchdog(10, "pcap resync storm of 1.1 MB"):
        frames, r = _read(H.resync_storm_pcap(20_000))
    # Two good records per corrupt header, up to the cap: every good record before it is kept.
    assert 2 * reader.MAX_RESYNC_EVENTS - 10 <= frames <= 2 * reader.MAX_RESYNC_EVENTS + 10
    assert r.info.skipped["corrupt_record"] == reader.MAX_RESYNC_EVENTS


def test_gzip_bomb_stops_at_the_byte_bound() -> None:
    body = H.zero_filled_pcap(8 * MiB)
    bomb = H.gzip_of(body)
    assert len(body) / len(bomb) > 200  # it is a bomb: the ratio bound would trip past the grace
    result = run_measured(
        f"""
        from analyzer.capture import CaptureReader
        from tests.fuzz import hostile as H
        data = H.gzip_bomb({8 * MiB})
        with CaptureReader(data, max_gunzip_bytes={1 * MiB}) as r:
            frames = sum(len(c) for c in r.chunks())
        _emit({{"frames": frames, "truncated": r.info.truncated, "warnings": r.info.warnings}})
        """,
    )
    assert result["truncated"]
    assert any("expands beyond 1048576 bytes" in w for w in result["warnings"]), result["warnings"]
    assert result["frames"] <= MiB // 65535 + 1  # at most what the first MiB held


def test_gzip_bomb_keeps_the_frames_within_the_bound() -> None:
    result = run_measured(
        f"""
        from analyzer.capture import CaptureReader
        from tests.fuzz import hostile as H
        with CaptureReader(H.gzip_bomb({8 * MiB}), max_gunzip_bytes={1 * MiB}) as r:
            frames = sum(len(c) for c in r.chunks())
        _emit({{"frames": frames}})
        """,
    )
    assert result["frames"] >= 10  # 1 MiB holds 15 records of 64 KiB


def test_resync_after_zero_padding_recovers_the_real_records() -> None:
    frame = H.ethernet(H.ipv4(17, b"\x0a\0\0\1", b"\x0a\0\0\2", H.udp(1, 2, b"x" * 64)))
    data = H.pcap_header() + H.pcap_record(b"\0" * 32, caplen=1 << 30) + H.pcap_record(frame) * 50
    frames, _r = _read(data)
    assert frames >= 50


@pytest.mark.slow
def test_gzip_bomb_stops_at_the_ratio_bound() -> None:
    """Past the 64 MiB grace, expansion beyond max_gunzip_ratio:1 stops the reader."""
    result = run_measured(
        f"""
        from analyzer.capture import CaptureReader
        from tests.fuzz import hostile as H
        data = H.gzip_bomb({80 * MiB})
        with CaptureReader(data, max_gunzip_ratio=50) as r:
            frames = sum(len(c) for c in r.chunks())
        _emit({{"frames": frames, "truncated": r.info.truncated, "warnings": r.info.warnings,
                "compressed": len(data)}})
        """,
    )
    assert result["truncated"]
    assert any("more than 50:1" in w for w in result["warnings"]), result["warnings"]
    assert result["frames"] * 65551 < 72 * MiB  # stopped shortly after the grace, not at the end
    # Decompression is streamed: RSS grows by buffers, not by the 80 MiB the stream expands to.
    assert result["peak_rss_mb"] - result["baseline_rss_mb"] < 64, result


def test_nested_gre_ten_deep_is_cut_at_the_depth_bound_with_a_warning() -> None:
    data = H.pcap_header() + H.pcap_record(H.nested_gre_frame(10)) * 3 + H.pcap_record(H.nested_gre_frame(2))
    with watchdog(20, "nested tunnels"):
        scan = scan_capture(data)
        session = analyze(data)
    flows = scan.flows.set_index("client_ip")
    # Depth 0..MAX_TUNNEL_DEPTH are decoded; the 10-deep packets keep the header at the bound.
    deep = flows.loc[f"10.0.{MAX_TUNNEL_DEPTH}.1"]
    assert deep["transport"] == "ip-47" and deep["packets"] == 3
    assert "gre" in deep["encap"]
    shallow = flows.loc["10.0.2.1"]
    assert shallow["transport"] == "udp" and shallow["server_port"] == 3478
    assert any("tunnel depth exceeded" in w for w in scan.info.warnings)
    assert any("tunnel depth exceeded" in w for w in session.report["capture"]["warnings"])


@pytest.mark.slow
def test_many_tiny_flows_cost_memory_proportional_to_flows() -> None:
    """No flow cap exists: memory grows linearly with flows, at a bounded cost per flow."""
    result = run_measured(
        """
        import resource
        from analyzer.scan.scanner import scan_capture
        from tests.fuzz import hostile as H
        out = {}
        for n in (20000, 100000):
            data = H.tiny_flows_pcap(n)
            before = _peak_mb()
            scan = scan_capture(data)
            out[n] = {"flows": len(scan.flows), "peak": _peak_mb(),
                      "before": before}
            del scan, data
        _emit(out)
        """,
        timeout=180,
    )
    small, large = result["20000"], result["100000"]
    assert small["flows"] == 20000 and large["flows"] == 100000
    per_flow = (large["peak"] - small["peak"]) * MiB / 80000
    # Measured about 2 KiB per flow (flow row, key, first-payload sample); 6 KiB flags a regression.
    assert per_flow < 6 * 1024, f"{per_flow:.0f} bytes per flow"


@pytest.mark.slow
def test_many_tiny_flows_through_analyze_cost_bounded_memory_per_flow() -> None:
    """The whole analysis (classify, geo, report tables) on tiny flows: still linear, no cap.

    Measured on 30k vs 300k flows: about 12 KiB per flow (3.5 GB peak RSS for 300k flows from a
    22 MB capture); SECURITY.md quotes this. 20 KiB flags a regression.
    """
    # One fresh process per size: peak RSS never decreases within a process, so measuring both
    # sizes in one process could hide the difference behind one-time costs of the first run.
    runs = {}
    for n in (3000, 15000):
        runs[n] = run_measured(
            f"""
            import resource
            from analyzer.session.build import analyze
            from tests.fuzz import hostile as H
            session = analyze(H.tiny_flows_pcap({n}))
            _emit({{"flows": len(session.flows), "peak": _peak_mb()}})
            """,
            timeout=300,
        )
    small, large = runs[3000], runs[15000]
    assert small["flows"] == 3000 and large["flows"] == 15000
    per_flow = (large["peak"] - small["peak"]) * MiB / 12000
    assert 0 < per_flow < 20 * 1024, f"{per_flow:.0f} bytes per flow"
