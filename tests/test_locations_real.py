"""Regression tests on the shared real captures (issue 12): evidence-based server locations,
vantage from STUN answers, findings that never rest on a contradicted location as certain,
key exchange observed vs inferred, and the data-age finding."""

from __future__ import annotations

from functools import cache

from analyzer.session.build import Session, analyze
from tests.conftest import real_capture


@cache
def session(name: str, **options: str) -> Session:
    return analyze(real_capture(name), **options)


def _endpoint(report: dict, ip: str) -> dict:
    return next(e for e in report["endpoints"] if e["ip"] == ip)


def test_zoom_zone_controllers_are_where_their_names_say() -> None:
    r = session("zoom.pcap").report
    am = _endpoint(r, "213.19.144.104")  # zoomam104zc: registered GB (Level 3), located NL
    assert (am["country"], am["confidence"], am["registered_country"]) == ("NL", "confirmed", "GB")
    assert "zoomam104zc.zoom.us" in am["hostnames"]
    fr = _endpoint(r, "213.244.140.84")  # zoomfr84zc: Frankfurt; DB-IP says NL, so contested
    assert fr["country"] == "DE" and fr["confidence"] == "contested" and fr["competing"] == ["NL"]
    kx = {k["server_ip"]: k for k in r["key_exchange"]}
    assert kx["213.19.144.104"]["country"] == "NL" and kx["213.19.144.104"]["location_confidence"] == "confirmed"


def test_zoom_key_exchange_on_a_name_is_inferred() -> None:
    kx = session("zoom.pcap").report["key_exchange"]
    assert kx and {k["key_exchange_status"] for k in kx} == {"inferred"}
    assert all(k["key_exchange_evidence"].startswith("rule: ") for k in kx)


def test_teams_vantage_is_the_client_not_a_relay() -> None:
    v = session("teams.pcap").report["vantage"]
    assert (v["country"], v["source"]) == ("IT", "public-ip:80.181.206.72")
    assert v["public_ips"] == ["80.181.206.72"] and v["confidence"] == "confirmed"
    assert "52.114.250.137" not in v["public_ips"] and "52.114.250.141" not in v["public_ips"]
    assert {"52.114.250.137", "52.114.250.141"} <= {x["ip"] for x in v["rejected"]}


def test_teams_contradicted_server_is_never_critical_and_certain() -> None:
    r = session("teams.pcap", allow="IT").report
    ep = _endpoint(r, "52.113.194.132")
    assert ep["confidence"] == "contested" and any("RTT rules out" in c for c in ep["contradictions"])
    flows = {v["flow_id"] for v in r["policy"]["violations"] if v["remote_ip"] == "52.113.194.132"}
    assert flows
    for v in r["policy"]["violations"]:
        if v["remote_ip"] == "52.113.194.132":
            assert v["confidence"] == "needs-verification"
    for f in r["findings"]:
        if f["severity"] == "critical" and set(f["flow_ids"]) & flows:
            raise AssertionError(f"critical finding rests on a contested location: {f}")


def test_meet_server_ruled_out_by_rtt_is_contested() -> None:
    r = session("stun_dtls_rtp.pcapng", allow="IT").report
    assert r["vantage"]["country"] == "IT"  # from the STUN answers (93.35.x), not stated
    ep = _endpoint(r, "142.250.82.76")
    assert ep["country"] == "US" and ep["confidence"] == "contested"
    assert ep["min_rtt_ms"] < 23 and "RTT rules out US" in ep["contradictions"][0]
    kx = [f for f in r["findings"] if f["code"] == "KEY_EXCHANGE_OUTSIDE_POLICY"]
    assert kx and all(f["severity"] != "critical" and f["needs_verification"] for f in kx)


def test_meet_key_exchange_is_observed() -> None:
    kx = session("stun_dtls_rtp.pcapng").report["key_exchange"]
    assert kx and kx[0]["key_exchange_status"] == "observed"
    assert "DTLS" in kx[0]["key_exchange_evidence"]


def test_webex_pairwise_rtt_inconsistency_without_vantage() -> None:
    r = session("webex.pcap").report
    assert r["vantage"]["country"] is None
    f = next(f for f in r["findings"] if f["code"] == "GEO_RTT_INCONSISTENT")
    assert {"114.29.204.49", "62.109.231.3"} <= set(f["addresses"])  # 2.3 ms "SG", 2.7 ms "NL"
    assert "209.197.222.159" not in f["addresses"]  # 3.0 ms "US" fits the most claims
    assert _endpoint(r, "114.29.204.49")["confidence"] == "contested"


def test_old_captures_get_the_data_age_finding() -> None:
    r = session("zoom.pcap").report
    f = next(f for f in r["findings"] if f["code"] == "GEO_DATA_AGE")
    assert "2019-09-26" in f["detail"] and "--geoip" in f["detail"]


def test_data_age_compares_every_database_with_the_capture_date() -> None:
    from analyzer.session.findings import data_age_findings

    dbs = [{"name": "embedded-location", "data_date": "2026-06-01"},
           {"name": "GeoLite2-City.mmdb", "build_date": "2019-10-01"}]
    # 2019-09-26: only the 2026 data is far away; the user's 2019 database is of the right age.
    [f] = data_age_findings({"first_ts": 1569520466.0}, dbs)
    assert "embedded-location" in f["detail"] and "GeoLite2-City.mmdb" not in f["detail"]
    # A capture from May 2026: the embedded data is of its age, the 2019 database is not.
    [g] = data_age_findings({"first_ts": 1780000000.0}, dbs)
    assert "GeoLite2-City.mmdb" in g["detail"] and "embedded-location" not in g["detail"]
    assert data_age_findings({"first_ts": 1780000000.0}, dbs[:1]) == []
    assert data_age_findings({"first_ts": None}, dbs) == []  # no timestamps, no claim


def test_anonymised_vantage_evidence_hides_the_client_address() -> None:
    import json

    r = analyze(real_capture("teams.pcap"), anonymize="test-key").report
    text = json.dumps(r, default=str)
    assert "80.181.206.72" not in text  # not in public_ips, vantage evidence or any detail
    assert r["vantage"]["country"] == "IT" and r["vantage"]["evidence"]


def test_dtls_handshake_round_trip_is_an_rtt_source() -> None:
    s = session("stun_dtls_rtp.pcapng")
    row = s.flows[s.flows["server_ip"] == "142.250.82.76"].iloc[0]
    # First ClientHello to the answer: 24.9 ms, a little above the STUN round trip of 22.5 ms.
    assert 24.0 < float(row["dtls_rtt_ms"]) < 26.0 and float(row["dtls_rtt_ms"]) > float(row["stun_rtt_ms"])
    assert float(row["min_rtt_ms"]) == float(row["stun_rtt_ms"])
