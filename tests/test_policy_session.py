"""Geofence policy on real sessions: --allow, --region, per-role policy files, severities and the
low confidence of unknown (ZZ) countries. The demo capture (a North American Zoom call whose
zone controller is in China) and stun.pcap (one public peer no database places) are the inputs.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from analyzer.capture.demo import write_demo_capture
from analyzer.errors import OptionError
from analyzer.session.build import Session, analyze
from analyzer.session.policy import build_policy, expand, load_policy_file, regions, violations
from tests.conftest import real_capture

ZONE_CONTROLLER = "109.244.194.121"


@pytest.fixture(scope="module")
def demo_path(tmp_path_factory) -> Path:
    return Path(write_demo_capture(tmp_path_factory.mktemp("demo") / "demo.pcap"))


@pytest.fixture(scope="module")
def demo(demo_path) -> Session:
    return analyze(demo_path)


@cache
def stun() -> Session:
    return analyze(real_capture("stun.pcap"))


@cache
def stun_registration_only() -> Session:
    """stun.pcap located without the DB-IP location database: DB-IP answers even for unallocated
    space, so an address that no database places (ZZ) only exists with registration data."""
    from analyzer.geo.resolver import GeoResolver

    res = GeoResolver(search_default_dirs=False)
    res.embedded_location = None
    return analyze(real_capture("stun.pcap"), resolver=res)


def _triples(viol: list[dict]) -> set[tuple[int, str, str]]:
    return {(v["flow_id"], v["role"], v["country"]) for v in viol}


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "policy.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_regions_are_iso_lists():
    r = regions()
    assert r["north-america"] == frozenset({"US", "CA", "MX"})
    assert {"DE", "FR", "IE"} <= r["eu"] and "GB" not in r["eu"] and "NO" not in r["eu"]
    assert {"GB", "NO", "CH"} <= r["europe"]
    assert "CN" in r["asia-pacific"]
    assert all(len(cc) == 2 and cc.isupper() for codes in r.values() for cc in codes)


def test_allow_accepts_codes_regions_and_any():
    assert expand("us, ca", "--allow") == frozenset({"US", "CA"})
    assert expand("region:eu,GB", "--allow") == regions()["eu"] | {"GB"}
    assert expand("north-america", "--allow") == regions()["north-america"]
    assert expand("any", "x") is None
    for bad in ("", "XYZ1", "region:atlantis", "U S"):
        with pytest.raises(OptionError):
            expand(bad, "--allow")


def test_no_policy_means_no_violations(demo):
    assert demo.report["policy"]["violations"] == []
    assert demo.report["policy"]["allowed_countries"] is None
    assert build_policy() is None


def test_region_north_america_flags_the_chinese_zone_controller(demo):
    viol = violations(demo.flows, build_policy(region="North-America"))
    kx = [v for v in viol if v["role"] == "key_exchange"]
    assert len(kx) == 1
    assert kx[0]["country"] == "CN"
    assert kx[0]["remote_ip"] == ZONE_CONTROLLER
    assert kx[0]["severity"] == "critical"
    assert kx[0]["confidence"] == "high"
    # Nothing that stayed in the US is a violation.
    assert {v["country"] for v in viol} == {"CN"}


def test_allowing_china_clears_every_violation(demo):
    assert violations(demo.flows, build_policy(allow="US,CA,CN")) == []
    assert violations(demo.flows, build_policy(allow=["us", "cn"])) == []


def test_severity_follows_the_role(demo):
    # Allowing nowhere the call went makes every public flow role a violation.
    viol = violations(demo.flows, build_policy(allow="AQ"))
    sev = {v["role"]: v["severity"] for v in viol}
    assert sev["key_exchange"] == "critical"
    assert sev["media"] == "high"
    assert sev["signaling"] == "medium"
    assert sev["nat_traversal"] == "low"
    assert {v["confidence"] for v in viol} == {"high"}
    # Local peers (the home router's DNS) are never violations.
    local_ids = set(demo.flows.loc[demo.flows["remote_scope"] != "public", "flow_id"])
    assert local_ids and not local_ids & {v["flow_id"] for v in viol}


def test_policy_file_per_role_key_exchange_stricter_than_default(demo, tmp_path):
    path = _write(
        tmp_path,
        """
[default]
allow = ["region:north-america", "CN"]
[roles.key_exchange]
allow = ["US"]
""",
    )
    pol = load_policy_file(path)
    assert pol.allowed("signaling") == regions()["north-america"] | {"CN"}
    assert pol.allowed("key_exchange") == frozenset({"US"})
    viol = violations(demo.flows, pol)
    zc_flow = int(demo.flows.loc[demo.flows["remote_ip"] == ZONE_CONTROLLER, "flow_id"].iloc[0])
    # The zone controller's signaling is allowed in CN by default, its key exchange is not.
    assert _triples(viol) == {(zc_flow, "key_exchange", "CN")}
    assert viol[0]["severity"] == "critical"


def test_policy_file_through_analyze(demo_path, tmp_path):
    path = _write(tmp_path, '[default]\nallow = ["US", "CA"]\n[roles.key_exchange]\nallow = ["US"]\n')
    s = analyze(demo_path, policy=path)
    assert {(v["role"], v["country"]) for v in s.report["policy"]["violations"]} == {
        ("key_exchange", "CN"),
        ("signaling", "CN"),
    }
    assert s.report["policy"]["allowed_by_role"]["key_exchange"] == ["US"]
    assert s.report["options"]["policy"] == "policy.toml"
    assert s.exit_code == 1


def test_policy_file_any_for_dns(tmp_path):
    flows = analyze(real_capture("dns_fragmented.pcap")).flows
    strict = violations(flows, build_policy(allow="AQ"))
    assert strict and {v["role"] for v in strict} == {"dns"}  # public resolvers abroad
    path = _write(tmp_path, '[default]\nallow = ["AQ"]\n[roles.dns]\nallow = "any"\n')
    assert load_policy_file(path).allowed("dns") is None
    assert violations(flows, load_policy_file(path)) == []


def test_policy_file_without_default_allows_everything_else(demo, tmp_path):
    pol = load_policy_file(_write(tmp_path, '[roles.media]\nallow = ["CA"]\n'))
    viol = violations(demo.flows, pol)
    assert viol and {v["role"] for v in viol} == {"media"}
    assert {v["severity"] for v in viol} == {"high"}


@pytest.mark.parametrize(
    "text",
    [
        "[default\nallow = [",  # not TOML
        '[roles.keys]\nallow = ["US"]\n',  # unknown role
        "[roles.media]\nmode = 'strict'\n",  # no allow list
        '[default]\nallow = ["region:atlantis"]\n',
        "[default]\nallow = []\n",
    ],
)
def test_bad_policy_files_are_option_errors(tmp_path, text):
    with pytest.raises(OptionError):
        load_policy_file(_write(tmp_path, text))


def test_policy_file_that_is_not_utf8_is_an_option_error(tmp_path):
    p = tmp_path / "policy.toml"
    p.write_bytes(b"\xff\xfe[default]\x00")
    with pytest.raises(OptionError):
        load_policy_file(p)


def test_unknown_country_is_a_low_confidence_violation():
    s = stun_registration_only()
    zz = s.flows[(s.flows["remote_country"] == "ZZ") & (s.flows["remote_scope"] == "public")]
    assert len(zz) >= 1, "stun.pcap is expected to reach one public address no database places"
    others = sorted(set(s.flows.loc[s.flows["remote_scope"] == "public", "remote_country"]) - {"ZZ"})
    viol = violations(s.flows, build_policy(allow=others))
    assert viol and {v["country"] for v in viol} == {"ZZ"}
    assert {v["confidence"] for v in viol} == {"low"}
    assert {v["severity"] for v in viol} == {"low"}
    assert set(s.flows.loc[s.flows["remote_country"] == "ZZ", "server_country_confidence"]) == {"unknown"}


def test_zz_only_violations_give_low_findings():
    from analyzer.geo.resolver import GeoResolver

    s = stun_registration_only()
    others = ",".join(sorted(set(s.flows.loc[s.flows["remote_scope"] == "public", "remote_country"]) - {"ZZ"}))
    res = GeoResolver(search_default_dirs=False)
    res.embedded_location = None
    r = analyze(real_capture("stun.pcap"), allow=others, resolver=res).report
    policy_findings = [f for f in r["findings"] if f["code"].endswith("_OUTSIDE_POLICY")]
    assert policy_findings
    assert all(f["severity"] == "low" and "confidence is low" in f["detail"] for f in policy_findings)
