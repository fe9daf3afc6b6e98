"""Campaigns: labels from a manifest (CSV, TOML) or inferred, countries per group and role, key
exchange, consistency, the diff, the outputs, the CLI, Dask, and the page in a real browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from analyzer.batch.run import run_batch
from analyzer.campaign import SCHEMA, campaign
from analyzer.campaign.labels import read_manifest
from analyzer.capture.demo import ZONE_CONTROLLER, demo_variant, write_demo_capture
from analyzer.errors import OptionError
from tests.conftest import REPO, real_capture

DE_SERVER = "52.28.10.10"  # Amazon Frankfurt in the embedded database
HOSTILE = '<script>alert(1)</script>|*x*'


def _corpus(root: Path) -> dict[str, Path]:
    """Four calls like the demo: two dates from Germany (the second with its key exchange moved
    from CN to DE), one inferred (US, 2020-04-04), and Teams."""
    root.mkdir(parents=True, exist_ok=True)
    base = write_demo_capture(root / "base.pcap").read_bytes()
    (root / "base.pcap").unlink()
    files = {
        "jan": demo_variant(base, days=0),
        "feb": demo_variant(base, days=31, ip_map={ZONE_CONTROLLER[1]: DE_SERVER}),
        "feb2": demo_variant(base, days=31.5),
        "us": base,
    }
    out = {}
    for name, data in files.items():
        (root / f"{name}.pcap").write_bytes(data)
        out[name] = root / f"{name}.pcap"
    shutil.copy(real_capture("teams.pcap"), root / "teams.pcap")
    out["teams"] = root / "teams.pcap"
    return out


MANIFEST = """capture,app,vantage,date,label,network
jan.pcap,zoom,DE,2026-01-05,first,wifi
feb.pcap,zoom,DE,2026-02-05,second,lte
feb2.pcap,,DE,2026-02-05,{hostile},lte
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("study")
    _corpus(root / "calls")
    (root / "calls" / "study.csv").write_text(MANIFEST.format(hostile=HOSTILE.replace('"', "")), encoding="utf-8")
    batch = root / "batch"
    res = run_batch([str(root / "calls")], batch, workers=2, formats=["json", "html"])
    assert not res.failed
    return root, batch


def _expected_shares(report: dict, app: str) -> dict[tuple[str, str], int]:
    """Bytes per (role, country) of one session's public flows of `app`, computed here from the
    report's flow records."""
    out: dict[tuple[str, str], int] = defaultdict(int)
    for f in report["flows"]:
        if f.get("remote_scope") == "public" and f.get("app") == app:
            for role, b in (f.get("bytes_by_role") or {}).items():
                out[(role, f.get("remote_country") or "ZZ")] += b
    return out


def test_manifest_labels_inference_and_counts(study: tuple[Path, Path], tmp_path: Path) -> None:
    root, batch = study
    c = campaign([batch], manifest=root / "calls" / "study.csv", output=tmp_path / "c", workers=2,
                 diff="date=2026-01-05:2026-02-05")
    s = c.sessions.set_index("session")
    assert s.loc["jan", ["app", "vantage", "date", "label", "network"]].tolist() == ["zoom", "DE", "2026-01-05",
                                                                                      "first", "wifi"]
    # feb2 leaves the app empty: inferred from the capture; vantage and date come from the manifest.
    assert s.loc["feb2", "app"] == "zoom" and s.loc["feb2", "inferred"] == ["app"]
    # Not in the manifest: inferred from the capture (vantage country from its public address, UTC date).
    assert s.loc["us", ["app", "vantage", "date"]].tolist() == ["zoom", "US", "2020-04-04"]
    teams = json.loads((batch / "teams" / "report.json").read_text())
    assert s.loc["teams", "vantage"] == teams["vantage"]["country"] and s.loc["teams", "app"] == "teams"
    assert s.loc["teams", "report"] == os.path.relpath(batch / "teams" / "report.html", tmp_path / "c")

    # Countries per group and role: the same bytes as the reports' flows, shares within group+role.
    teams_exp = _expected_shares(teams, "teams")
    got = c.countries[c.countries["app"] == "teams"].set_index(["role", "country"])
    assert {k: int(v) for k, v in got["bytes"].items()} == {k: v for k, v in teams_exp.items() if v}
    role_total = sum(b for (r, _c), b in teams_exp.items() if r == "media")
    for (role, country), b in teams_exp.items():
        if role == "media" and b:
            assert got.loc[(role, country), "share"] == pytest.approx(b / role_total, abs=1e-6)
    feb = c.countries[(c.countries["date"] == "2026-02-05") & (c.countries["role"] == "key_exchange")]
    # Two February sessions: one keyed in CN (feb2), one in DE (feb); US in both.
    assert dict(zip(feb["country"], feb["sessions"], strict=True)) == {"CN": 1, "DE": 1, "US": 2}

    kx = c.key_exchange[c.key_exchange["date"] == "2026-01-05"]
    assert set(kx["country"]) == {"CN", "US"} and "zoombj41zc.zoom.us" in kx[kx["country"] == "CN"]["hostnames"].iloc[0]
    assert "location_confidence" in c.key_exchange.columns
    assert (c.media.query("app == 'zoom'")["ecb_like"] > 0).all()
    jan = json.loads((batch / "jan" / "report.json").read_text())
    jan_f = c.findings.query("date == '2026-01-05'")
    assert set(jan_f["code"]) == {f["code"] for f in jan["findings"]} and (jan_f["sessions"] == 1).all()

    # Consistency: zoom from DE keyed in {CN, US} twice and {DE, US} once.
    zk = c.consistency.set_index(["app", "vantage", "role"]).loc[("zoom", "DE", "key_exchange")]
    assert not zk["consistent"] and zk["sessions"] == 3 and zk["always"] == ["US"]
    assert zk["sometimes"] == {"CN": 2, "DE": 1}
    assert c.consistency.set_index(["app", "vantage", "role"]).loc[("zoom", "DE", "media"), "consistent"]

    # Diff January -> February: DE appeared for key exchange; CN stayed (feb2), so no change for it.
    d = c.diff
    row = d[(d["kind"] == "key_exchange") & (d["item"] == "DE")]
    assert row["change"].tolist() == ["appeared"] and row["sessions_b"].tolist() == [1]
    assert d[(d["item"] == "CN")].empty


def test_group_by_any_manifest_column_and_toml(study: tuple[Path, Path], tmp_path: Path) -> None:
    _root, batch = study
    toml = tmp_path / "study.toml"
    toml.write_text('[[captures]]\ncapture = "jan"\napp = "zoom"\nnetwork = "wifi"\n'
                    '[[captures]]\ncapture = "feb"\napp = "zoom"\nnetwork = "lte"\n', encoding="utf-8")
    assert [r["network"] for r in read_manifest(toml)] == ["wifi", "lte"]
    c = campaign([batch], manifest=toml, workers=1, by=["network"])
    nets = c.countries.groupby("network")["sessions"].max().to_dict()
    assert set(nets) == {"wifi", "lte", "unknown"}
    wifi_kx = c.countries.query("network == 'wifi' and role == 'key_exchange'")
    assert set(wifi_kx["country"]) == {"CN", "US"}
    assert c.diff.empty
    # A diff over a label that is not grouped on: wifi (jan, keyed in CN+US) -> lte (feb, DE+US).
    d = campaign([batch], manifest=toml, workers=1, by=["app"], diff="network=wifi:lte").diff
    kx = d[d["kind"] == "key_exchange"].set_index("item")["change"].to_dict()
    assert kx == {"CN": "disappeared", "DE": "appeared"}
    with pytest.raises(OptionError, match="no such label"):
        campaign([batch], workers=1, by=["colour"])
    with pytest.raises(OptionError, match="LABEL=A:B"):
        campaign([batch], workers=1, diff="date")
    bad = tmp_path / "bad.csv"
    bad.write_text("app,vantage\nzoom,DE\n", encoding="utf-8")
    with pytest.raises(OptionError, match="no 'capture'"):
        campaign([batch], manifest=bad, workers=1)


def test_outputs_schema_and_escaping(study: tuple[Path, Path], tmp_path: Path) -> None:
    root, batch = study
    out = tmp_path / "c"
    c = campaign([batch], manifest=root / "calls" / "study.csv", output=out, workers=1, diff="vantage=DE:US")
    doc = json.loads((out / "campaign.json").read_text())
    assert doc["schema"] == SCHEMA == "confscope.campaign/1"
    assert doc["totals"]["sessions"] == len(c.sessions) == 5
    assert len(doc["countries"]) == len(c.countries) and doc["group_by"] == ["app", "vantage", "date"]
    for t in ("sessions", "countries", "key_exchange", "media", "findings", "consistency", "diff"):
        assert pq.read_table(out / "tables" / f"{t}.parquet").num_rows == len(getattr(c, t))
    routes = pd.read_parquet(out / "tables" / "session_routes.parquet")
    assert set(routes["session"]) == set(c.sessions["session"])
    assert int(routes["bytes"].sum()) == int(c.countries["bytes"].sum())
    html = (out / "campaign.html").read_text()
    md = (out / "campaign.md").read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in md
    for href in set(re.findall(r'href="([^"]+)"', html)):
        assert (out / href).is_file(), href
    # Only the changes from DE to US: the US session's countries that no DE session reached.
    assert set(c.diff["change"]) <= {"appeared", "disappeared"} and len(c.diff) > 0


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "analyzer", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_cli_over_captures_with_manifest(tmp_path: Path) -> None:
    calls = _corpus(tmp_path / "calls")
    (tmp_path / "calls" / "study.csv").write_text(MANIFEST.format(hostile="x"), encoding="utf-8")
    (tmp_path / "calls" / "broken.pcap").write_bytes(b"nope" * 10)
    r = _cli(["campaign", "calls", "--manifest", "calls/study.csv", "-o", "camp", "--workers", "2",
              "--diff", "date=2026-01-05:2026-02-05"], tmp_path)
    assert r.returncode == 1, r.stderr  # broken.pcap failed; the campaign is still written
    assert "broken" in r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert re.match(rf"confscope campaign: {len(calls)} sessions, 1 captures failed, 0 unreadable reports, "
                    r"\d+ inconsistent app/vantage/role groups, \d+ changes; report: .*camp/campaign.html", last), last
    doc = json.loads((tmp_path / "camp" / "campaign.json").read_text())
    assert {s["session"] for s in doc["sessions"]} == set(calls)
    # Again over the batch folder it wrote: same sessions, exit 0.
    r2 = _cli(["campaign", "camp/batch", "-o", "camp2", "--by", "vantage"], tmp_path)
    assert r2.returncode == 0, r2.stderr
    doc2 = json.loads((tmp_path / "camp2" / "campaign.json").read_text())
    assert doc2["group_by"] == ["vantage"] and len(doc2["sessions"]) == len(calls)
    assert _cli(["campaign", "camp/batch", "-o", "x", "--by", "nope"], tmp_path).returncode == 2
    # The campaign folder itself stands for its batch.
    r3 = _cli(["campaign", "camp", "-o", "camp3"], tmp_path)
    assert r3.returncode == 0 and f"confscope campaign: {len(calls)} sessions" in r3.stdout


def test_campaign_on_dask_matches_local(study: tuple[Path, Path], tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    root, batch = study
    local = campaign([batch], manifest=root / "calls" / "study.csv", workers=1)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        remote = campaign([batch], manifest=root / "calls" / "study.csv", scheduler=cluster.scheduler_address,
                          chunk=1)
    key = ["app", "vantage", "date", "role", "country"]
    pd.testing.assert_frame_equal(local.countries.sort_values(key).reset_index(drop=True),
                                  remote.countries.sort_values(key).reset_index(drop=True))
    assert local.consistency.equals(remote.consistency)


def test_unreadable_report_is_listed_not_fatal(study: tuple[Path, Path], tmp_path: Path) -> None:
    _root, batch = study
    copy = tmp_path / "batch"
    shutil.copytree(batch, copy)
    (copy / "us" / "report.json").write_text('{"schema": "confscope.session/1", "flows": [1, {"app": 5}]')
    (copy / "jan" / "report.json").write_text(json.dumps({"schema": "something/1"}))
    c = campaign([copy], workers=1)
    assert set(c.failures["session"]) == {"us", "jan"}
    assert len(c.sessions) == 3
