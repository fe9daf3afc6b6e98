"""Byte ranges of one capture scanned in parallel give exactly the single-process scan: flows,
samples and capture counts, on every shared capture that can be split, on a generated benchmark
capture and on a generated many-flow capture; `workers` auto picks the parallel scan only for
large uncompressed files, and the command line prints the same bytes either way."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analyzer.errors import OptionError
from analyzer.scan.parallel import default_workers
from analyzer.scan.scanner import idle_workers, scan_capture, scan_workers
from analyzer.scan.split import plan_split, scan_split
from tests.conftest import REAL, REPO, real_captures

sys.path.insert(0, str(REPO / "bench"))
import make_capture


def assert_same_scan(a, b) -> None:
    assert list(a.flows.columns) == list(b.flows.columns)
    assert len(a.flows) == len(b.flows)
    pd.testing.assert_frame_equal(a.flows, b.flows)
    pd.testing.assert_frame_equal(a.samples, b.samples)
    assert a.info.frames == b.info.frames and a.info.frame_bytes == b.info.frame_bytes
    assert dict(a.info.skipped) == dict(b.info.skipped)
    assert a.info.first_ts_ns == b.info.first_ts_ns and a.info.last_ts_ns == b.info.last_ts_ns


SPLITTABLE = [p.name for p in real_captures() if plan_split(p, 2, min_part_bytes=1) is not None]


@pytest.mark.parametrize("name", SPLITTABLE or ["none"])
def test_every_shared_capture_scans_the_same_in_two_ranges(name: str) -> None:
    if not SPLITTABLE:
        pytest.skip(f"{REAL} is absent")
    path = REAL / name
    one = scan_capture(path, workers=1, media=False)
    # Default chunks: IP fragment attribution depends on chunk boundaries in a sequential pass as
    # well (ip_fragmented_garbage.pcap gives other flows with 16 KiB chunks), so that is not varied.
    two = scan_split(path, 2, min_part_bytes=1)
    assert_same_scan(two, one)


@pytest.fixture(scope="module")
def bench_captures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not REAL.is_dir():
        pytest.skip(f"{REAL} is absent")
    out = tmp_path_factory.mktemp("bench")
    names = make_capture.conferencing_seeds(REAL)
    made = {}
    for label, per_flow in (("big", None), ("many", 5.0)):
        path = out / f"{label}.pcap"
        make_capture.build(REAL, names, 40_000, path, pcapng=False, packets_per_flow=per_flow)
        made[label] = path
    return made


@pytest.mark.parametrize("label", ["big", "many"])
def test_auto_workers_scan_generated_captures_in_parallel_with_identical_results(
    bench_captures: dict[str, Path], label: str
) -> None:
    path = bench_captures[label]
    small = 1_000_000
    assert path.stat().st_size > 2 * small
    # auto: the idle cores (cores minus load), so on a busy machine possibly one process.
    assert 1 <= idle_workers() <= default_workers()
    assert scan_workers(path, None, media=False, parallel_min_bytes=small) in (idle_workers(), idle_workers() + 1, 1)
    one = scan_capture(path, workers=1, media=False)
    auto = scan_capture(path, media=False, parallel_min_bytes=small)
    two = scan_capture(path, workers=2, media=False)
    assert_same_scan(two, one)
    four = scan_capture(path, workers=4, media=False, chunk_bytes=1 << 20)
    assert len(one.flows) > (5000 if label == "many" else 100)
    assert len(one.samples) > 1000
    assert_same_scan(auto, one)
    assert_same_scan(four, one)


def test_workers_rules(tmp_path: Path, bench_captures: dict[str, Path]) -> None:
    path = bench_captures["big"]
    size = path.stat().st_size
    assert scan_workers(path, None, media=False, parallel_min_bytes=size + 1) == 1  # below the threshold
    # A session's scan has two tasks (flow table, media tap): never more than two processes.
    assert scan_workers(path, 4, media=True) == 2 and scan_workers(path, 4, media=False) == 4
    assert scan_workers(path, 1, media=False, parallel_min_bytes=1) == 1
    assert scan_workers(path, 3, media=False) == 3  # explicit: whatever the size
    assert scan_workers(path.read_bytes()[:100000], None, media=False, parallel_min_bytes=1) == 1  # not a file
    gz = tmp_path / "x.pcap.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()[:200000]))
    assert scan_workers(gz, None, media=False, parallel_min_bytes=1) == 1  # gzip cannot be entered mid-stream
    for bad in (0, -2, "2"):
        with pytest.raises(OptionError):
            scan_workers(path, bad, media=False)  # type: ignore[arg-type]


def test_cli_flows_csv_is_byte_identical_with_and_without_workers(bench_captures: dict[str, Path]) -> None:
    path = bench_captures["big"]

    def flows(*extra: str) -> bytes:
        proc = subprocess.run(
            [sys.executable, "-m", "analyzer", "flows", str(path), *extra],
            capture_output=True, cwd=REPO, timeout=300, check=True,
        )  # fmt: skip
        return proc.stdout

    one = flows("--workers", "1")
    assert one.count(b"\n") > 100
    assert flows("--workers", "2", "--parallel-min-mb", "0") == one
    assert flows("--workers", "auto", "--parallel-min-mb", "1") == one
    bad = subprocess.run(
        [sys.executable, "-m", "analyzer", "flows", str(path), "--workers", "none"], capture_output=True, cwd=REPO
    )
    assert bad.returncode == 2 and b"--workers" in bad.stderr


@pytest.mark.parametrize("name", ["zoom_p2p.pcapng", "rtp.pcapng", "telegram_videocall.pcapng", "stun_dtls_rtp.pcapng"])
def test_session_scan_on_two_cores_equals_one_pass(name: str) -> None:
    """analyze's scan: the media tap in a worker beside the flow table gives the one-pass result."""
    from analyzer.session.build import analyze

    path = REAL / name
    if not path.exists():
        pytest.skip(f"{path} is absent")
    one = scan_capture(path, workers=1)
    two = scan_capture(path, workers=2)
    assert_same_scan(two, one)
    assert one.media is not None and two.media is not None
    assert one.media.media_packets == two.media.media_packets > 0
    pd.testing.assert_frame_equal(one.streams, two.streams)
    assert scan_workers(path, None, media=True, parallel_min_bytes=1) == 1  # auto: one pass for a session
    assert scan_workers(path, 3, media=True) == 2
    a = analyze(path, workers=1, region="eu").report
    b = analyze(path, workers=2, parallel_min_bytes=1, region="eu").report
    assert a == b
