"""One schema for the tables of a batch folder; `confscope batch` as users expect it (closing line,
exit 1 on a failed capture, linked summary, paths resolved on the client for Dask workers)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analyzer.batch.run import read_table, run_batch, table_dataset
from analyzer.batch.schema import TABLES, batch_tables, flow_table, table
from analyzer.capture.demo import write_demo_capture
from analyzer.session.build import analyze
from tests.conftest import REPO, real_capture

# With and without each protocol: DNS only, plain RTP, STUN, DTLS+SRTP, SIP, QUIC, Zoom (demo:
# TLS, key exchange abroad, ECB media streams, findings), Teams.
MIXED = ["dns_fragmented.pcap", "rtp.pcapng", "stun.pcap", "stun_dtls_rtp.pcapng", "sip.pcap", "quic.pcap",
         "teams.pcap"]


@pytest.fixture(scope="module")
def mixed_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("in")
    for name in MIXED:
        shutil.copy(real_capture(name), src / name)
    write_demo_capture(src / "demo.pcap")
    out = tmp_path_factory.mktemp("batch") / "out"
    res = run_batch([str(src)], out, workers=2, formats=["json", "html"], region="north-america")
    assert not res.failed and len(res.analysed) == len(MIXED) + 1
    return out


def test_every_partition_has_the_declared_schema(mixed_batch: Path) -> None:
    for t in batch_tables():
        files = sorted((mixed_batch / t.name).glob("capture=*/part-0.parquet"))
        assert len(files) == len(MIXED) + 1, t.name  # a file per capture, even with no rows
        for f in files:
            assert pq.read_schema(f).remove_metadata() == t.arrow_schema(), f
    # The captures differ in what they hold: some tables are empty for some captures and not others.
    rows = {t.name: read_table(mixed_batch, t.name).groupby("capture", observed=True).size() for t in batch_tables()}
    assert 0 < rows["media_streams"].size < len(MIXED) + 1
    assert 0 < rows["key_exchange"].size < len(MIXED) + 1


def test_declared_flow_columns_cover_the_session(mixed_batch: Path) -> None:
    # A column the session adds must be declared, or the batch would silently drop it.
    declared = set(flow_table().names)
    for name in ("demo", "stun_dtls_rtp"):
        report = json.loads((mixed_batch / name / "report.json").read_text())
        flows = analyze(report["capture"]["path"]).flows
        assert set(flows.columns) <= declared, set(flows.columns) - declared


def test_endpoints_table_keeps_every_location_with_its_evidence(mixed_batch: Path) -> None:
    # One row per remote public address of each report, its evidence as typed structs, and the
    # declared columns cover what the report's endpoints[] rows hold.
    ep = read_table(mixed_batch, "endpoints")
    declared = set(table("endpoints").names)
    for name in ("demo", "teams"):
        report = json.loads((mixed_batch / name / "report.json").read_text())
        rows = ep[ep["capture"] == name]
        assert sorted(rows["ip"]) == sorted(e["ip"] for e in report["endpoints"]) and len(rows) > 0
        assert {k for e in report["endpoints"] for k in e} <= declared
        first = report["endpoints"][0]
        got = rows[rows["ip"] == first["ip"]].iloc[0]
        assert got["confidence"] == first["confidence"] and got["country"] == first["country"]
        assert [dict(x) for x in got["evidence"]] == first["evidence"]
    assert set(ep["confidence"]) <= {"confirmed", "likely", "contested", "unknown"}


def test_readers_see_one_table(mixed_batch: Path) -> None:
    report = json.loads((mixed_batch / "demo" / "report.json").read_text())
    want = {f["flow_id"]: f["bytes_c2s"] + f["bytes_s2c"] for f in report["flows"]}
    for t in TABLES:
        df = pd.read_parquet(mixed_batch / t)  # the failing call
        assert "capture" in df.columns
    flows = pd.read_parquet(mixed_batch / "flows")
    demo = flows[flows["capture"] == "demo"]
    assert dict(zip(demo["flow_id"], demo["bytes"], strict=True)) == want
    # Lists and maps keep their types across captures with and without the protocol.
    assert pa.types.is_list(table_dataset(mixed_batch).schema.field("stun_mapped").type)
    mapped = read_table(mixed_batch)
    assert any(isinstance(v, dict) and "media" in v for v in mapped["bytes_by_role"])
    stun = mapped[mapped["capture"] == "stun"]["stun_mapped"].dropna()
    assert any(len(v) and {"ip", "port"} <= set(v[0]) for v in stun)
    ds_rows = table_dataset(mixed_batch, "findings").count_rows()
    assert ds_rows == len(pd.read_parquet(mixed_batch / "findings")) > 0

    duckdb = pytest.importorskip("duckdb")
    got = duckdb.sql(
        f"select capture, sum(bytes), sum(bytes_by_role['media']) from read_parquet("
        f"'{mixed_batch}/flows/*/*.parquet', hive_partitioning=true) group by capture"
    ).fetchall()
    totals = flows.groupby("capture", observed=True)["bytes"].sum()
    assert {c: int(b) for c, b, _m in got} == {str(c): int(b) for c, b in totals.items()}
    media = {c: m for c, _b, m in got}
    assert media["demo"] == sum(s["media_bytes"] for s in report["media"])

    dd = pytest.importorskip("dask.dataframe")
    ddf = dd.read_parquet(mixed_batch / "flows")
    assert int(ddf["bytes"].sum().compute()) == int(flows["bytes"].sum())
    streams = dd.read_parquet(mixed_batch / "media_streams").compute()
    assert len(streams) == len(pd.read_parquet(mixed_batch / "media_streams"))


def test_hostile_values_fit_their_declared_types(tmp_path: Path) -> None:
    from analyzer.report.tabular import write_parquet

    t = table("key_exchange")
    bad = pd.DataFrame([{"flow_id": "x", "server_port": 10**12, "hostname": ["=cmd", 1], "bytes": None,
                         "first_ts": "soon", "country": "<script>"}])
    write_parquet(bad, tmp_path / "k.parquet", schema=t.arrow_schema())
    back = pq.read_table(tmp_path / "k.parquet").to_pylist()[0]
    assert back["flow_id"] is None and back["server_port"] is None and back["first_ts"] is None
    assert back["hostname"] == '["=cmd", 1]' and back["country"] == "<script>"


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "analyzer", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli_closing_line_exit_code_and_linked_summary(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    write_demo_capture(src / "demo.pcap")
    shutil.copy(real_capture("rtp.pcapng"), src / "rtp.pcapng")
    (src / "broken.pcap").write_bytes(b"not a capture at all\n" * 4)
    # Relative input and output paths, run from tmp_path.
    r = _cli(["batch", "in", "-o", "out", "--workers", "2", "--format", "json,html,md"], tmp_path)
    assert r.returncode == 1, r.stderr  # a capture failed (no policy given)
    last = r.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"confscope batch: 2 analysed, 0 skipped \(already done\), 1 failed, 0 with policy "
                        r"violations; summary: .*/out/summary.html", last), last
    assert "broken" in r.stderr
    html = (tmp_path / "out" / "summary.html").read_text()
    assert "<script" not in html and "<style>" in html
    hrefs = re.findall(r'href="([^"]+)"', html)
    assert "demo/report.html" in hrefs and "rtp/report.json" in hrefs
    assert all((tmp_path / "out" / h).is_file() for h in hrefs)
    # Resumed: nothing redone, the failure still counts.
    again = _cli(["batch", "in", "-o", "out", "--workers", "2", "--format", "json,html,md"], tmp_path)
    assert again.returncode == 1
    assert "0 analysed, 2 skipped (already done), 1 failed" in again.stdout
    # All good: exit 0.
    ok = _cli(["batch", "in/demo.pcap", "-o", "out2"], tmp_path)
    assert ok.returncode == 0 and "1 analysed, 0 skipped" in ok.stdout
    assert "exit status" in _cli(["batch", "--help"], tmp_path).stdout


def test_dask_workers_get_client_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    distributed = pytest.importorskip("distributed")
    work = tmp_path / "client"
    (work / "in").mkdir(parents=True)
    write_demo_capture(work / "in" / "demo.pcap")
    shutil.copy(real_capture("rtp.pcapng"), work / "in" / "rtp.pcapng")
    elsewhere = tmp_path / "workers"
    elsewhere.mkdir()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  local_directory=str(elsewhere)) as cluster:
        with distributed.Client(cluster) as client:
            # The workers run elsewhere: a relative path would not resolve there.
            client.run(os.chdir, str(elsewhere))
            assert set(client.run(os.getcwd).values()) == {str(elsewhere)}
        monkeypatch.chdir(work)
        res = run_batch(["in"], "out", scheduler=cluster.scheduler_address, formats=["json"])
    assert not res.failed and len(res.analysed) == 2
    for name in ("demo", "rtp"):
        assert (work / "out" / name / "report.json").is_file()
    assert not (elsewhere / "out").exists()
    assert set(pd.read_parquet(work / "out" / "flows")["capture"]) == {"demo", "rtp"}
    manifest = json.loads((work / "out" / "manifest.json").read_text())
    assert all(os.path.isabs(e["path"]) for e in manifest["captures"].values())
    # Resumable from the client side too: nothing redone.
    monkeypatch.chdir(work)
    again = run_batch(["in"], "out", workers=1, formats=["json"])
    assert len(again.skipped) == 2 and not again.analysed


def test_capture_names_avoid_the_batch_folders() -> None:
    from analyzer.batch.run import capture_names

    assert capture_names(["/x/flows.pcap", "/y/summary.pcap", "/z/zoom.pcap"]) == ["flows-2", "summary-2", "zoom"]
