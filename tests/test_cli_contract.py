"""The command line contract of DESIGN.md: reports written, exit codes 0/1/2, one-line errors
without tracebacks, the flow table and geo lookups in their formats.

The runs that matter end to end (demo, two captures, an unreadable file, --debug, CSV on a pipe)
start as a user starts them, `python -m analyzer ...` in subprocesses launched together from one
module fixture. The other cases call `analyzer.cli.main.main(argv)` in-process with the streams
redirected: the same code path minus an interpreter start-up each, which keeps the file fast.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO, real_capture

REPORT_FILES = ("report.json", "report.md", "report.html", "flows.csv", "flows.parquet")
SMALL = "dtls.pcap"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "analyzer", *args], capture_output=True, text=True, timeout=180, cwd=REPO
    )


@dataclass
class InProcess:
    """The parts of a CompletedProcess the tests read, for an in-process `main(argv)` call."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def cli(*args: str) -> InProcess:
    from analyzer.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse usage errors exit from inside the parser
            code = exc.code if isinstance(exc.code, int) else 2
    return InProcess(["confscope", *args], code, out.getvalue(), err.getvalue())


def _one_error_line(proc: subprocess.CompletedProcess | InProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("confscope: error:"), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def runs(work) -> dict[str, subprocess.CompletedProcess | InProcess]:
    """Every CLI run of this file, started concurrently; keyed by a short name."""
    from analyzer.capture.demo import write_demo_capture

    small = str(real_capture(SMALL))
    # The demo capture is deterministic: the same bytes `confscope demo` writes, so the runs that
    # analyse it need not wait for the `demo` run.
    demo_capture = str(write_demo_capture(work / "demo-zoom-call.pcap"))
    text_file = work / "notes.pcap"
    text_file.write_text("this is a text file, not a capture\n", encoding="utf-8")
    empty = work / "empty.pcapng"
    empty.write_bytes(b"")
    bad_toml = work / "bad.toml"
    bad_toml.write_text("[default\nallow = [\n", encoding="utf-8")
    policy = work / "policy.toml"
    policy.write_text('[default]\nallow = "any"\n[roles.key_exchange]\nallow = ["US"]\n', encoding="utf-8")
    subprocess_jobs = {
        "demo": ("demo", "-o", str(work / "demo")),
        "two": ("analyze", demo_capture, small, "--region", "north-america", "-o", str(work / "two")),
        "text": ("analyze", str(text_file), "-o", str(work / "x")),
        "debug": ("--debug", "analyze", str(empty), "-o", str(work / "x")),
        "flows_csv": ("flows", small),
    }
    in_process_jobs = {
        "allow": ("analyze", demo_capture, "--allow", "US,CA,CN", "-o", str(work / "allow"), "--format", "json"),
        "policy": ("analyze", demo_capture, "--policy", str(policy), "-o", str(work / "policy"), "--format", "json"),
        "region_unknown": ("analyze", small, "--region", "atlantis", "-o", str(work / "x")),
        "bad_toml": ("analyze", small, "--policy", str(bad_toml), "-o", str(work / "x")),
        "bad_format": ("analyze", small, "--format", "json,pdf", "-o", str(work / "x")),
        "two_policies": ("analyze", small, "--allow", "US", "--region", "eu", "-o", str(work / "x")),
        "missing": ("analyze", str(work / "no-such.pcap"), "-o", str(work / "x")),
        "empty": ("analyze", str(empty), "-o", str(work / "x")),
        "flows_text": ("flows", str(text_file)),
        "flows_json": ("flows", small, "--format", "json", "-o", str(work / "flows.json")),
        "flows_parquet": ("flows", small, "--format", "parquet", "-o", str(work / "flows.parquet")),
        "flows_parquet_stdout": ("flows", small, "--format", "parquet"),
        "flows_plain": ("flows", small, "--no-dissect"),
        "geo": ("geo", "8.8.8.8", "192.168.1.1", "--format", "json"),
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {k: pool.submit(run, *v) for k, v in subprocess_jobs.items()}
        # The in-process calls run here meanwhile (the threads only wait on child processes).
        results: dict = {k: cli(*v) for k, v in in_process_jobs.items()}
        results.update({k: f.result() for k, f in futures.items()})
    return results


@pytest.fixture(scope="module")
def demo_run(runs, work) -> tuple[subprocess.CompletedProcess, Path]:
    return runs["demo"], work / "demo"


# confscope demo / analyze


def test_demo_reproduces_the_violation_and_exits_1(demo_run):
    proc, out = demo_run
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert (out / "demo-zoom-call.pcap").stat().st_size > 10_000
    folder = out / "demo-zoom-call"
    for name in REPORT_FILES:
        assert (folder / name).stat().st_size > 0, name
    # The terminal summary names the zone controller and the critical finding.
    assert "zoombj41zc.zoom.us" in proc.stdout
    assert "KEY_EXCHANGE_OUTSIDE_POLICY" in proc.stdout
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    crit = [f for f in report["findings"] if f["code"] == "KEY_EXCHANGE_OUTSIDE_POLICY"]
    assert crit and crit[0]["severity"] == "critical" and crit[0]["countries"] == ["CN"]
    assert "ECB_PATTERN" in {f["code"] for f in report["findings"]}


def test_flows_parquet_has_one_row_per_report_flow(demo_run):
    folder = demo_run[1] / "demo-zoom-call"
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    table = pq.read_table(folder / "flows.parquet")
    assert table.num_rows == len(report["flows"]) > 0
    assert sorted(table.column("flow_id").to_pylist()) == sorted(f["flow_id"] for f in report["flows"])
    with open(folder / "flows.csv", newline="", encoding="utf-8") as fh:
        assert len(list(csv.DictReader(fh))) == len(report["flows"])


def test_analyze_two_captures_writes_two_report_folders(runs, demo_run):
    proc = runs["two"]
    assert proc.returncode == 1, proc.stderr
    out = Path(runs["two"].args[runs["two"].args.index("-o") + 1])
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == ["demo-zoom-call", "dtls"]
    for folder in folders:
        for name in REPORT_FILES:
            assert (out / folder / name).is_file(), (folder, name)
    demo = json.loads((out / "demo-zoom-call" / "report.json").read_text(encoding="utf-8"))
    other = json.loads((out / "dtls" / "report.json").read_text(encoding="utf-8"))
    assert demo["policy"]["allowed_countries"] == ["CA", "MX", "US"]
    assert {v["country"] for v in demo["policy"]["violations"]} == {"CN"}
    assert other["capture"]["name"] == SMALL
    assert other["policy"]["allowed_countries"] == ["CA", "MX", "US"]
    # Both summaries are printed, one per capture.
    assert proc.stdout.count("reports:") == 2


def test_allowing_china_exits_0_with_no_violations(runs):
    proc = runs["allow"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = Path(proc.args[proc.args.index("-o") + 1]) / "demo-zoom-call"
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]  # --format json only
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["policy"]["violations"] == []
    assert report["policy"]["allowed_countries"] == ["CA", "CN", "US"]
    assert not [f for f in report["findings"] if f["code"].endswith("_OUTSIDE_POLICY")]


def test_policy_file_key_exchange_only(runs):
    proc = runs["policy"]
    assert proc.returncode == 1, proc.stderr
    out = Path(proc.args[proc.args.index("-o") + 1]) / "demo-zoom-call"
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [(v["role"], v["country"], v["severity"]) for v in report["policy"]["violations"]] == [
        ("key_exchange", "CN", "critical")
    ]


@pytest.mark.parametrize(
    ("key", "needle"),
    [
        ("region_unknown", "atlantis"),
        ("bad_toml", "bad.toml"),
        ("bad_format", "pdf"),
        ("two_policies", "not allowed with"),
        ("missing", "no such file"),
        ("text", "not a pcap"),
        ("empty", "empty"),
        ("flows_text", "not a pcap"),
        ("flows_parquet_stdout", "-o"),
    ],
)
def test_bad_usage_and_unreadable_input_exit_2_with_one_line(runs, key, needle):
    proc = runs[key]
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert needle in _one_error_line(proc)
    assert proc.stdout.strip() == "" or "written" not in proc.stdout


def test_bad_usage_writes_no_reports(runs):
    for key in ("region_unknown", "bad_toml", "bad_format", "missing", "text", "empty"):
        out = Path(runs[key].args[runs[key].args.index("-o") + 1])
        assert not out.exists() or not any(out.rglob("report.json")), key


def test_debug_shows_the_traceback(runs):
    proc = runs["debug"]
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr
    assert "CaptureFormatError" in proc.stderr


# confscope flows


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_flows_csv_to_stdout(runs):
    proc = runs["flows_csv"]
    assert proc.returncode == 0, proc.stderr
    rows = _csv_rows(proc.stdout)
    assert rows
    header = set(rows[0])
    assert {"flow_id", "transport", "client_ip", "server_ip", "server_port", "app", "roles", "hostname"} <= header
    assert {"bytes_by_role", "protocol"} <= header
    assert {r["app"] for r in rows} & {"webrtc", "unknown"}
    assert all(json.loads(r["roles"]) for r in rows)  # lists are JSON text in CSV cells


def test_flows_json_and_parquet_files_agree_with_csv(runs, work):
    csv_rows = _csv_rows(runs["flows_csv"].stdout)
    assert runs["flows_json"].returncode == 0, runs["flows_json"].stderr
    assert runs["flows_parquet"].returncode == 0, runs["flows_parquet"].stderr
    records = json.loads((work / "flows.json").read_text(encoding="utf-8"))
    table = pq.read_table(work / "flows.parquet")
    assert len(records) == table.num_rows == len(csv_rows)
    assert [r["flow_id"] for r in records] == table.column("flow_id").to_pylist()
    assert isinstance(records[0]["roles"], list)
    assert [r["server_port"] for r in records] == [int(r["server_port"]) for r in csv_rows]
    # Parquet keeps types: integers stay integers.
    assert str(table.schema.field("server_port").type).startswith(("int", "uint"))


def test_flows_no_dissect_has_no_app_columns(runs):
    proc = runs["flows_plain"]
    assert proc.returncode == 0, proc.stderr
    rows = _csv_rows(proc.stdout)
    full = _csv_rows(runs["flows_csv"].stdout)
    assert len(rows) == len(full)
    assert "client_ip" in rows[0] and "bytes" in rows[0]
    assert not {"app", "roles", "hostname"} & set(rows[0])


# confscope geo


def test_geo_json(runs):
    proc = runs["geo"]
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["ip"] for r in rows] == ["8.8.8.8", "192.168.1.1"]
    for r in rows:
        assert {"ip", "country", "registered_country", "asn", "org", "scope"} <= set(r)
    google, private = rows
    assert google["country"] == "US" and google["asn"] == 15169 and google["scope"] == "public"
    assert private["scope"] == "private" and private["country"] is None and private["asn"] is None


def test_markdown_writes_ports_and_asns_as_identifiers(demo_run):
    md = (demo_run[1] / "demo-zoom-call" / "report.md").read_text(encoding="utf-8")
    assert "162.255.38.14:8801" in md
    assert "AS45090" in md
    assert "8,801" not in md and "AS45,090" not in md
