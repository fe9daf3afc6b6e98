"""annotate_flows on a flow table, and the `confscope geo` renderings."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd
import pytest

from analyzer.cli.geo import run_geo
from analyzer.errors import OptionError
from analyzer.geo.annotate import annotate_flows
from analyzer.geo.resolver import GeoResolver


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {"CONFSCOPE_CACHE": str(tmp_path_factory.mktemp("cache"))}


@pytest.fixture(scope="module")
def res(cache_env: dict[str, str]) -> GeoResolver:
    return GeoResolver(search_default_dirs=False, env=cache_env)


def _flows() -> pd.DataFrame:
    return pd.DataFrame({
        "flow_id": [0, 1, 2, 3, 4],
        "transport": ["tcp", "udp", "udp", "tcp", "udp"],
        "client_ip": ["192.168.1.10", "100.64.3.4", "8.8.8.8", "::1", "192.168.1.10"],
        "server_ip": ["162.255.37.14", "10.0.0.1", "109.244.194.121", "2001:4860:4860::8888",
                      "162.255.37.14"],
    })


def test_annotate_flows_columns_and_values(res: GeoResolver) -> None:
    flows = _flows()
    out = annotate_flows(flows, res)
    assert list(flows.columns) == ["flow_id", "transport", "client_ip", "server_ip"]  # input untouched
    for col in ("server_country", "server_asn", "server_org", "server_scope", "registered_country",
                "geo_sources", "geo_disagreement", "client_country", "client_asn"):
        assert col in out.columns
    # 2001:4860:4860::8888: DB-IP (the default location database) says CA, registration US.
    assert out["server_country"].tolist() == ["US", None, "CN", "CA", "US"]
    assert out["server_scope"].tolist() == ["public", "private", "public", "public", "public"]
    assert out["server_asn"].dtype == "Int64"
    assert out["server_asn"].tolist()[:1] == [30103] and pd.isna(out["server_asn"].iloc[1])
    assert out["server_org"].iloc[2].startswith("Shenzhen Tencent")
    assert out["registered_country"].tolist() == ["US", None, "CN", "US", "US"]
    assert "country=embedded-location" in out["geo_sources"].iloc[0]
    assert out["geo_sources"].iloc[1] == ""
    assert out["geo_disagreement"].dtype == bool and not out["geo_disagreement"].any()
    # Only the public client (8.8.8.8) gets a country and an ASN.
    assert out["client_country"].tolist() == [None, None, "US", None, None]
    assert out["client_asn"].iloc[2] == 15169 and out["client_asn"].isna().sum() == 4


def test_annotate_flows_flags_disagreement(tmp_path: Path, cache_env: dict[str, str]) -> None:
    from tests.test_geo_resolver import build_city

    city = build_city(tmp_path / "city.mmdb")
    r = GeoResolver(user_paths=[str(city)], search_default_dirs=False, env=cache_env)
    out = annotate_flows(_flows(), r)
    assert out["server_country"].iloc[0] == "NL"
    # 2001:4860:4860::8888 is not in the test City DB: only iptocc answers, nothing to disagree with.
    assert out["geo_disagreement"].tolist() == [True, False, False, False, True]
    assert "country=city.mmdb" in out["geo_sources"].iloc[0]


def test_annotate_empty_and_odd_tables(res: GeoResolver) -> None:
    empty = annotate_flows(_flows().iloc[0:0], res)
    assert len(empty) == 0 and "server_country" in empty.columns and "client_asn" in empty.columns
    odd = pd.DataFrame({"client_ip": [None, "not an ip"], "server_ip": ["", None]})
    out = annotate_flows(odd, res)
    assert out["server_scope"].tolist() == ["invalid", "invalid"]
    assert out["server_country"].isna().all()


def test_run_geo_json(res: GeoResolver) -> None:
    rows = json.loads(run_geo(["162.255.37.14", "10.0.0.1"], "json", [], resolver=res))
    keys = {"ip", "country", "registered_country", "asn", "org", "scope", "sources"}
    assert [set(r) for r in rows] == [keys, keys]
    assert rows[0]["country"] == "US" and rows[0]["asn"] == 30103 and rows[0]["scope"] == "public"
    assert "asn=embedded-asn" in rows[0]["sources"]
    assert rows[1] == {"ip": "10.0.0.1", "country": None, "registered_country": None, "asn": None,
                       "org": None, "scope": "private", "sources": []}


def test_run_geo_csv_and_table(res: GeoResolver) -> None:
    text = run_geo(["109.244.194.121", "fe80::1"], "csv", [], resolver=res)
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert parsed[0]["country"] == "CN" and parsed[0]["asn"] == "45090"
    assert parsed[1]["scope"] == "link-local" and parsed[1]["country"] == ""
    table = run_geo(["109.244.194.121", "fe80::1"], "table", [], resolver=res).splitlines()
    assert table[0].split()[:4] == ["ip", "country", "registered", "asn"]
    assert table[1].split()[:4] == ["109.244.194.121", "CN", "CN", "45090"]
    # Columns are aligned: every row's country starts at the same offset as the header's.
    assert table[1].index("CN") == table[0].index("country") == table[2].index("-")
    with pytest.raises(OptionError):
        run_geo(["1.1.1.1"], "xml", [], resolver=res)


def test_run_geo_with_user_database_marks_disagreement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache_env: dict[str, str],
) -> None:
    from tests.test_geo_resolver import build_city

    monkeypatch.setenv("CONFSCOPE_CACHE", cache_env["CONFSCOPE_CACHE"])
    monkeypatch.delenv("CONFSCOPE_GEOIP", raising=False)
    city = build_city(tmp_path / "city.mmdb")
    table = run_geo(["162.255.37.14"], "table", [str(city)])
    assert "NL!" in table.splitlines()[1]
