"""analyze_many: the Dataset API, option checks, and the same task on a real Dask LocalCluster."""

from __future__ import annotations

import pandas as pd
import pytest

from analyzer.batch.run import analyze_many
from analyzer.errors import OptionError
from analyzer.session.build import analyze
from tests.conftest import real_capture


def test_dataset_tables_failures_and_summary(tmp_path) -> None:
    zoom, rtp = real_capture("zoom.pcap"), real_capture("rtp.pcapng")
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"\xd4\xc3\xb2\xa1" + b"\x00" * 3)  # a pcap magic and then nothing
    ds = analyze_many([zoom, rtp, bad], workers=2, region="north-america")
    assert ds.failures["capture"].tolist() == ["bad"]
    assert ds.failures["error"].str.len().min() > 0
    one = analyze(zoom, region="north-america")
    zf = ds.flows[ds.flows["capture"] == "zoom"].drop(columns="capture").reset_index(drop=True)
    assert zf["flow_id"].tolist() == one.flows["flow_id"].tolist()
    assert zf["bytes"].tolist() == one.flows["bytes"].tolist()
    for table in ("flows", "countries", "key_exchange", "media", "findings"):
        assert getattr(ds, table).columns[0] == "capture"
    assert set(ds.sessions["capture"]) == {"zoom", "rtp"}
    assert "zoom" in ds.sessions_with_violations and ds.exit_code == 1
    per_app = ds.countries_per_app.set_index("app")["countries"]
    expected = sorted(set(one.flows.loc[(one.flows["app"] == "zoom") & (one.flows["remote_scope"] == "public"),
                                        "remote_country"].fillna("ZZ")))
    assert per_app["zoom"] == expected
    fps = ds.findings_per_session.set_index("capture")
    assert fps.loc["zoom", "total"] == len(one.report["findings"])


def test_options_are_checked_before_any_work() -> None:
    with pytest.raises(OptionError, match="unknown option"):
        analyze_many([], workers=1, regoin="eu")
    with pytest.raises(OptionError):
        analyze_many(["/nonexistent.pcap"], workers=1, region="atlantis")
    with pytest.raises(OptionError):
        analyze_many([], workers=1, geoip=["/nonexistent.mmdb"])


def test_dask_local_cluster_gives_the_same_dataset() -> None:
    distributed = pytest.importorskip("distributed")
    paths = [real_capture("zoom.pcap"), real_capture("teams.pcap")]
    local = analyze_many(paths, workers=1)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        remote = analyze_many(paths, scheduler=cluster.scheduler_address)
        with distributed.Client(cluster) as client:
            pids = set(client.run(lambda: __import__("os").getpid()).values())
    assert len(pids) == 2
    key = ["capture", "flow_id"]
    a = local.flows.sort_values(key).reset_index(drop=True)
    b = remote.flows.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[["capture", "flow_id", "server_ip", "bytes", "app", "remote_country"]],
                                  b[["capture", "flow_id", "server_ip", "bytes", "app", "remote_country"]])
    assert local.summary["countries_per_app"] == remote.summary["countries_per_app"]


@pytest.mark.parametrize("module", ["analyzer.batch.run", "analyzer.batch.dataset", "analyzer.scan.split",
                                    "analyzer.session.multifile", "analyzer.scan.parallel", "analyzer.batch.summary",
                                    "analyzer.campaign.run"])
def test_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0
