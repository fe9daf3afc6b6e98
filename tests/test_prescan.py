"""The command line's forked scan (analyzer/cli/prescan.py): the same output with and without it, the
same errors, a fallback when the child dies, and scan modules that never import pandas."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from analyzer.capture import writer as W
from tests.conftest import REPO, real_capture

CAPTURES = ("zoom.pcap", "teams.pcap", "sip.pcap", "dns_fragmented.pcap")


def run(*args: str, prescan: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CONFSCOPE_PRESCAN"}
    if not prescan:
        env["CONFSCOPE_PRESCAN"] = "0"
    return subprocess.run(
        [sys.executable, "-m", "analyzer", *args], capture_output=True, text=True, timeout=180, cwd=REPO, env=env
    )


def both(*args: str) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    with ThreadPoolExecutor(2) as pool:
        forked = pool.submit(run, *args, prescan=True)
        alone = pool.submit(run, *args, prescan=False)
        return forked.result(), alone.result()


@pytest.mark.parametrize("name", CAPTURES)
def test_flows_identical_with_and_without_the_forked_scan(name: str) -> None:
    path = str(real_capture(name))
    forked, alone = both("flows", path)
    assert forked.returncode == alone.returncode == 0, forked.stderr
    assert forked.stdout == alone.stdout and forked.stderr == alone.stderr
    assert forked.stdout.count("\n") > 2


def test_analyze_identical_with_and_without_the_forked_scan(tmp_path: Path) -> None:
    path = str(real_capture("zoom.pcap"))
    reports = {}
    for label, prescan in (("forked", True), ("alone", False)):
        proc = run("analyze", path, "-o", str(tmp_path / label), "--format", "json", "--region", "europe",
                   prescan=prescan)  # fmt: skip
        assert proc.returncode in (0, 1), proc.stderr
        reports[label] = (proc.returncode, json.loads((tmp_path / label / "zoom" / "report.json").read_text()))
    (code_a, a), (code_b, b) = reports["forked"], reports["alone"]
    assert code_a == code_b
    for report in (a, b):
        report.pop("generated_at", None)
        report.get("provenance", {}).pop("generated_at", None)
    assert a == b
    assert a["flows"] and a["capture"]["packets"] > 700


def test_unreadable_captures_fail_the_same_way(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    text = tmp_path / "notes.pcap"
    text.write_text("not a capture at all\n" * 10)
    for path in (empty, text):
        for command in (("flows", str(path)), ("analyze", str(path), "-o", str(tmp_path / "out"))):
            forked, alone = both(*command)
            assert forked.returncode == alone.returncode == 2
            assert forked.stderr == alone.stderr and forked.stderr.count("\n") == 1


def test_truncated_capture_keeps_its_warning(tmp_path: Path) -> None:
    data = W.pcap_bytes([(1_700_000_000_000_000_000 + i, b"\x00" * 60) for i in range(50)])
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[:-30])
    forked, alone = both("flows", str(path))
    assert forked.returncode == alone.returncode == 0
    assert forked.stderr == alone.stderr and "truncated" in forked.stderr


def test_a_dead_child_means_the_parent_scans() -> None:
    path = str(real_capture("zoom_p2p.pcapng"))
    code = f"""
import os, signal
import analyzer.cli.prescan as prescan
from analyzer.scan.scanner import scan_capture
options = {{"chunk_bytes": None, "keep_samples": True, "media": True, "name": None}}
assert prescan.start({path!r}, options)
os.kill(prescan._pending.pid, signal.SIGKILL)
fallback = scan_capture({path!r})
assert prescan._pending is None
direct = scan_capture({path!r})
assert fallback.flows.equals(direct.flows) and fallback.samples.equals(direct.samples)
assert fallback.streams.equals(direct.streams)
print("ok", len(direct.flows))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0 and proc.stdout.startswith("ok "), proc.stderr


def test_the_scan_never_imports_pandas() -> None:
    """What lets the child start at once: scanning, media statistics included, without pandas."""
    path = str(real_capture("zoom_p2p.pcapng"))
    code = f"""
import sys
from analyzer.scan.scanner import scan_raw
raw = scan_raw({path!r}, media=True)
assert "pandas" not in sys.modules, sorted(m for m in sys.modules if m.startswith("pandas"))[:3]
assert raw.table["key"].size > 10 and raw.sample_rows and raw.media_tap.media_packets > 0
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
