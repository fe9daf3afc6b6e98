"""Batch: byte-range splitting, multi-file merge, `confscope batch` (bad file, resume, dataset)."""

from __future__ import annotations

import json
import shutil
import subprocess
from argparse import Namespace
from pathlib import Path

import pandas as pd
import pytest

from analyzer.batch.run import read_flows_dataset, run_batch_cli
from analyzer.scan.scanner import scan_capture
from analyzer.scan.split import plan_split, scan_split
from analyzer.session.multifile import scan_files
from tests.conftest import real_capture


def _assert_same_scan(a, b) -> None:
    assert list(a.flows.columns) == list(b.flows.columns)
    assert len(a.flows) == len(b.flows) > 0
    for col in b.flows.columns:
        pd.testing.assert_series_equal(a.flows[col], b.flows[col], obj=col)
    pd.testing.assert_frame_equal(a.samples, b.samples)
    assert a.info.frames == b.info.frames
    assert a.info.frame_bytes == b.info.frame_bytes


@pytest.mark.parametrize("name", ["teams.pcap", "zoom_p2p.pcapng", "telegram_videocall.pcapng"])
def test_split_ranges_equal_sequential(name: str) -> None:
    path = real_capture(name)
    plan = plan_split(path, 3, min_part_bytes=1)
    assert plan is not None and len(plan.ranges) == 3
    assert plan.ranges[-1].end == path.stat().st_size
    assert all(r.end == n.start for r, n in zip(plan.ranges, plan.ranges[1:], strict=False))
    # Two worker processes, small chunks: many partial tables merged in the parts and across them.
    _assert_same_scan(scan_split(path, 3, min_part_bytes=1, chunk_bytes=16384), scan_capture(path))


def test_split_pcapng_carries_interfaces() -> None:
    path = real_capture("rtp.pcapng")
    plan = plan_split(path, 2, min_part_bytes=1)
    assert plan is not None
    later = plan.ranges[1]
    assert later.preamble[:4] == b"\x0a\x0d\x0d\x0a" and later.start > 0
    assert later.preamble == Path(path).read_bytes()[: len(later.preamble)]


def test_split_refuses_what_it_cannot_split(tmp_path: Path) -> None:
    gz = tmp_path / "x.pcap.gz"
    gz.write_bytes(b"\x1f\x8b" + b"\0" * 100)
    assert plan_split(gz, 2, min_part_bytes=1) is None
    src = real_capture("dns_fragmented.pcap")
    # Fragments cut from their first fragment: the sequential result is still what comes back.
    _assert_same_scan(scan_split(src, 3, min_part_bytes=1), scan_capture(src))


def test_merge_editcap_split_equals_whole(tmp_path: Path) -> None:
    if shutil.which("editcap") is None:
        pytest.skip("editcap (tshark package) is not installed")
    src = real_capture("teams.pcap")
    subprocess.run(["editcap", "-c", "250", str(src), str(tmp_path / "part.pcap")], check=True)
    files = sorted(tmp_path.glob("part*.pcap"))
    assert len(files) >= 4
    # Given out of order: the files are ordered by their first timestamp.
    _assert_same_scan(scan_files(files[::-1], workers=2), scan_capture(src))


def _args(inputs: list[str], out: Path, **kw) -> Namespace:
    base = {"inputs": inputs, "output": str(out), "workers": 2, "scheduler": None, "force": False, "merge": False,
            "format": "json,parquet", "geoip": [], "allow": None, "region": None, "policy": None, "vantage": None,
            "progress": "never"}
    base.update(kw)
    return Namespace(**base)


def test_batch_bad_file_resume_and_dataset(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for name in ("zoom.pcap", "rtp.pcapng"):
        shutil.copy(real_capture(name), src / name)
    (src / "broken.pcap").write_bytes(b"this is not a capture\n" * 10)
    out = tmp_path / "out"
    # zoom leaves North America (a violation), but broken.pcap failed: a failure wins, exit 2
    assert run_batch_cli(_args([str(src)], out, region="north-america")) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["totals"] == {**summary["totals"], "captures": 3, "analysed": 2, "failed": 1}
    assert [f["capture"] for f in summary["failures"]] == ["broken"]
    assert "zoom" in summary["sessions_with_violations"]
    for name in ("zoom", "rtp"):
        assert (out / name / "report.json").is_file()
    # The flows dataset holds exactly the flows of the reports.
    flows = read_flows_dataset(out)
    for name in ("zoom", "rtp"):
        report = json.loads((out / name / "report.json").read_text())
        mine = flows[flows["capture"] == name].sort_values("flow_id")
        assert mine["flow_id"].tolist() == [f["flow_id"] for f in report["flows"]]
        assert mine["bytes"].sum() == sum(f["bytes_c2s"] + f["bytes_s2c"] for f in report["flows"])
    html = (out / "summary.html").read_text()
    assert "<script" not in html and "broken" in html

    # Resume: nothing changed, so no report is rewritten; --force rewrites them.
    stamp = (out / "zoom" / "report.json").stat().st_mtime_ns
    assert run_batch_cli(_args([str(src)], out, region="north-america")) == 2
    assert (out / "zoom" / "report.json").stat().st_mtime_ns == stamp
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["captures"]) == {"zoom", "rtp", "broken"}
    # Other options: a different options hash, so the capture is redone.
    run_batch_cli(_args([str(src / "zoom.pcap")], out, allow="US"))
    assert (out / "zoom" / "report.json").stat().st_mtime_ns != stamp
    assert json.loads((out / "zoom" / "report.json").read_text())["options"]["allow"] == "US"
    stamp = (out / "zoom" / "report.json").stat().st_mtime_ns
    run_batch_cli(_args([str(src / "zoom.pcap")], out, allow="US", force=True))
    assert (out / "zoom" / "report.json").stat().st_mtime_ns != stamp


def test_batch_merge_and_usage_errors(tmp_path: Path) -> None:
    if shutil.which("editcap") is None:
        pytest.skip("editcap (tshark package) is not installed")
    src = real_capture("zoom.pcap")
    subprocess.run(["editcap", "-c", "300", str(src), str(tmp_path / "rot.pcap")], check=True)
    out = tmp_path / "out"
    files = [str(p) for p in sorted(tmp_path.glob("rot*.pcap"))]
    assert run_batch_cli(_args(files, out, merge=True, workers=1)) == 0
    (folder,) = [p for p in out.iterdir() if p.is_dir() and p.name != "flows"]
    report = json.loads((folder / "report.json").read_text())
    assert len(report["capture"]["files"]) == len(files)
    assert len(report["flows"]) == len(scan_capture(src).flows)
    from analyzer.errors import OptionError

    with pytest.raises(OptionError):
        run_batch_cli(_args([str(tmp_path / "nothing-*.pcap")], out))
    with pytest.raises(OptionError):
        run_batch_cli(_args(files, out, region="atlantis"))
