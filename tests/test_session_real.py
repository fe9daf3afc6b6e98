"""The session stage end to end on every shared real capture: `analyze()` succeeds, the report
meets the confscope.session/1 contract, and the tables agree with each other.

Each capture is analysed once per test session (a cache), so the parametrized checks stay cheap.
"""

from __future__ import annotations

import ipaddress
import json
from functools import cache
from pathlib import Path

import pytest

from analyzer.api import Session, analyze
from analyzer.errors import CaptureFormatError
from analyzer.geo.datafiles import iso_numeric_to_alpha2
from analyzer.report import validate_report
from analyzer.session.build import SCHEMA
from tests.conftest import real_capture, real_captures

EMPTY = "WebattackXSS.pcap"  # zero bytes (ERF-named upstream): not a capture at all
FUZZ = "fuzz-2021-10-13.pcap"
READABLE = [p.name for p in real_captures() if p.name != EMPTY]
ROLES = {"signaling", "key_exchange", "media", "nat_traversal", "dns", "other"}


@cache
def analysed(name: str) -> Session:
    return analyze(real_capture(name))


@cache
def iso_codes() -> frozenset[str]:
    # XK (Kosovo) is the user-assigned code geolocation databases use; ZZ means "public, unknown".
    return frozenset(iso_numeric_to_alpha2().values()) | {"XK", "ZZ"}


def _not_a_country(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    return addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_multicast or addr.is_unspecified


def test_the_shared_captures_are_present():
    if not READABLE:
        pytest.skip("../shared/captures/real is absent")
    assert len(READABLE) >= 30
    assert "zoom.pcap" in READABLE


@pytest.mark.parametrize("name", READABLE)
def test_every_real_capture_meets_the_report_contract(name):
    s = analysed(name)
    report = json.loads(s.to_json())
    assert validate_report(report) == []
    assert report["schema"] == SCHEMA
    if name == "fuzz-2021-10-13.pcap":
        # 239 damaged bytes: the first record claims 524,501 bytes and no later offset holds a
        # header confirmed by the next one, so nothing is read; the report must say why.
        assert {"TRUNCATED_CAPTURE", "UNDECODED_PACKETS"} <= {f["code"] for f in report["findings"]}
    else:
        assert report["capture"]["packets"] > 0
    assert len(report["flows"]) == len(s.flows)


@pytest.mark.parametrize("name", READABLE)
def test_bytes_by_role_add_up_per_flow_and_per_country(name):
    r = analysed(name).report
    for f in r["flows"]:
        by_role = f["bytes_by_role"] or {}
        assert set(by_role) <= ROLES, (f["flow_id"], by_role)
        assert set(by_role) <= set(f["roles"]), (f["flow_id"], f["roles"], by_role)
        assert sum(by_role.values()) == f["bytes_c2s"] + f["bytes_s2c"], f["flow_id"]
    for c in r["countries"]:
        assert sum(c["bytes_by_role"].values()) == c["bytes"], c
    # Every flow is either abroad (a country) or local: nothing is lost or counted twice.
    total = sum(f["bytes_c2s"] + f["bytes_s2c"] for f in r["flows"])
    assert sum(c["bytes"] for c in r["countries"]) + r["local"]["bytes"] == total
    assert sum(c["flows"] for c in r["countries"]) + r["local"]["flows"] == len(r["flows"])


@pytest.mark.parametrize("name", READABLE)
def test_countries_are_iso_codes_and_never_private_peers(name):
    r = analysed(name).report
    codes = [c["country"] for c in r["countries"]]
    assert len(codes) == len(set(codes))
    assert set(codes) <= iso_codes(), codes
    for f in r["flows"]:
        if _not_a_country(f["remote_ip"]):
            assert f["remote_scope"] != "public", f
    public_flows = [f for f in r["flows"] if f["remote_scope"] == "public"]
    assert not any(_not_a_country(f["remote_ip"]) for f in public_flows)
    assert {f["remote_country"] or "ZZ" for f in public_flows} == set(codes)


def test_an_empty_capture_is_a_format_error_not_a_crash():
    with pytest.raises(CaptureFormatError, match="empty"):
        analyze(real_capture(EMPTY))


def test_the_fuzzed_capture_is_read_with_warnings_and_findings():
    s = analysed(FUZZ)
    cap = s.report["capture"]
    assert any("corrupt" in w for w in cap["warnings"])
    assert cap["skipped_packets"] > 0
    codes = {f["code"] for f in s.report["findings"]}
    assert "UNDECODED_PACKETS" in codes


def test_the_fuzzed_capture_is_reported_as_damaged():
    codes = {f["code"] for f in analysed(FUZZ).report["findings"]}
    assert "TRUNCATED_CAPTURE" in codes


def test_no_real_zoom_capture_triggers_ecb():
    for name in ("zoom.pcap", "zoom_p2p.pcapng"):
        codes = {f["code"] for f in analysed(name).report["findings"]}
        assert "ECB_PATTERN" not in codes, name


# zoom.pcap: a 2019 Zoom call (plus a later splice) with TLS zone controllers in Europe.


def test_zoom_reports_its_servers_countries():
    r = analysed("zoom.pcap").report
    zoom_countries = {c["country"] for c in r["countries"] if "zoom" in c["apps"]}
    # Located from evidence: zoomam1xxzc (Amsterdam) is NL, not its registration GB; zoomfr8xzc DE.
    assert {"NL", "DE", "US"} <= zoom_countries and "GB" not in zoom_countries
    apps = {a["app"]: a for a in r["apps"]}
    assert apps["zoom"]["flows"] >= 15


def test_zoom_zone_controller_is_a_key_exchange_endpoint():
    kx = analysed("zoom.pcap").report["key_exchange"]
    zc = [k for k in kx if k["server_ip"] == "213.19.144.104"]
    assert len(zc) == 1, kx
    zc = zc[0]
    assert zc["hostname"] == "zoomam104zc.zoom.us"
    assert zc["app"] == "zoom"
    assert zc["protocol"] == "tls"
    assert zc["server_port"] == 443
    assert zc["country"] in iso_codes() - {"ZZ"}
    assert isinstance(zc["asn"], int) and zc["asn"] > 0
    assert zc["org"]
    # Every zone controller the client reached by TLS is listed, with its place.
    zcs = {k["hostname"] for k in kx if k["hostname"] and k["hostname"].endswith("zc.zoom.us")}
    assert len(zcs) >= 4
    assert all(k["country"] and k["asn"] for k in kx if k["app"] == "zoom")


def test_zoom_udp_8801_flow_is_media():
    r = analysed("zoom.pcap").report
    udp = [
        f
        for f in r["flows"]
        if f["transport"] == "udp" and f["server_ip"] == "109.94.160.99" and f["server_port"] == 8801
    ]
    assert udp
    assert all("media" in f["roles"] and f["app"] == "zoom" for f in udp)
    media_ids = {m["flow_id"] for m in r["media"]}
    assert {f["flow_id"] for f in udp} <= media_ids
    biggest = max(udp, key=lambda f: f["bytes_c2s"] + f["bytes_s2c"])
    # Its bytes are mostly Zoom bandwidth probes (0x15 filler, issue 13): role `other` with the
    # kind as detail; what is left as media is the RTCP sender report.
    split = biggest["bytes_by_role"]
    assert split["media"] + split["other"] == biggest["bytes_c2s"] + biggest["bytes_s2c"]
    assert split["other"] == biggest["other_by_kind"]["zoom_probe"] > 10 * split["media"]


def test_zoom_calls_are_grouped_into_meetings():
    meetings = analysed("zoom.pcap").report["meetings"]
    zoom = [m for m in meetings if m["app"] == "zoom"]
    # The 2019 call and the 2023 splice are years apart: two meetings, not one.
    assert len(zoom) == 2
    first = min(zoom, key=lambda m: m["start_ts"])
    assert 25 in first["flow_ids"] and 30 in first["flow_ids"]
    assert first["duration_s"] < 60


# The Session API


def test_session_tables_are_dataframes_matching_the_report():
    s = analysed("zoom.pcap")
    assert len(s.flows) == len(s.report["flows"])
    assert list(s.countries["country"]) == [c["country"] for c in s.report["countries"]]
    assert "213.19.144.104" in set(s.key_exchange["server_ip"])
    assert {"flow_id", "streams", "country"} <= set(s.media.columns)
    assert list(s.findings.columns)[:5] == ["code", "severity", "title", "detail", "flow_ids"]
    assert s.exit_code == 0  # no policy given, no critical finding


def test_to_json_parses_with_the_schema():
    s = analysed("dtls.pcap")
    data = json.loads(s.to_json())
    assert data["schema"] == "confscope.session/1"
    assert data["tool"]["name"] == "confscope"
    assert len(data["capture"]["sha256"]) == 64


@pytest.mark.parametrize("name", ["dtls.pcap", "google_meet.pcapng"])
def test_bytes_and_file_objects_give_the_same_flows_as_the_path(name):
    path = real_capture(name)
    by_path = analysed(name).report["flows"]
    by_bytes = analyze(Path(path).read_bytes()).report["flows"]
    with open(path, "rb") as fh:
        by_file = analyze(fh).report["flows"]
    assert by_path and by_bytes == by_path and by_file == by_path


@pytest.mark.parametrize(
    "kwargs",
    [
        {"allow": "U.S.,CA"},
        {"allow": ""},
        {"region": "atlantis"},
        {"allow": "US", "region": "eu"},
        {"geoip": ["/nonexistent/GeoLite2-City.mmdb"]},
        {"policy": "/nonexistent/policy.toml"},
    ],
)
def test_bad_options_raise_option_error(kwargs):
    from analyzer.errors import OptionError

    with pytest.raises(OptionError):
        analyze(real_capture("dtls.pcap"), **kwargs)
