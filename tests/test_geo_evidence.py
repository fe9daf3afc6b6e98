"""Server locations from evidence: hostname rules, RTT constraints, pairwise RTT consistency,
anycast, the confidence scale, and a synthetic capture with chosen RTTs, names and TURN answers
located against a real mmdb built here with mmdb-writer."""

from __future__ import annotations

import ipaddress
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from analyzer.capture import writer as W
from analyzer.geo.anycast import known_anycast
from analyzer.geo.evidence import Evidence, Location, decide, gather, pairwise_conflicts
from analyzer.geo.hints import hostname_hints
from analyzer.geo.resolver import GeoResolver
from analyzer.session.build import analyze

S = pytest.importorskip("scapy.all")
mmdb_writer = pytest.importorskip("mmdb_writer")
netaddr = pytest.importorskip("netaddr")

REPO = Path(__file__).resolve().parents[1]
IT_CENTRE = (43.47, 12.22)


# --- hostname rules -------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "country", "rule"), [
    ("zoomam104zc.zoom.us", "NL", "zoom-datacenter"),
    ("zoomfr84zc.zoom.us", "DE", "zoom-datacenter"),
    ("ZOOMAM105ZC.zoom.us.", "NL", "zoom-datacenter"),  # case and trailing dot do not matter
    ("us04web.sjc.zoom.us", "US", "zoom-iata-label"),  # airportsdata: SJC = San Jose
    ("fra16s14-in-f14.1e100.net", "DE", "google-1e100"),  # airportsdata: FRA = Frankfurt
    ("mil04s24-in-f4.1e100.net", "IT", "google-1e100"),  # IATA metro code, not an airport
    ("ec2-3-7-35-1.ap-south-1.compute.amazonaws.com", "IN", "aws-region"),
    ("northeurope.notifications.teams.microsoft.com", "IE", "azure-region"),
])
def test_operator_naming_rules(name: str, country: str, rule: str) -> None:
    hints = hostname_hints(name)
    assert [(h.country, h.rule) for h in hints] == [(country, rule)]
    assert hints[0].source  # every rule names its source


@pytest.mark.parametrize("name", [
    "framework.zoom.us",  # ordinary words are never read as codes
    "zoomxq12zc.zoom.us",  # unknown Zoom code: no guess
    "zoomfrn99mmr.zoom.us",  # 'frn' is not in Zoom's table (and IATA FRN is in Alaska): no guess
    "www.westeurope.example.com",  # a region name outside its operator's domain
    "fra16s14-in-f14.1e100.net.evil.example",  # pattern anchored at the operator's domain
    "*.zoom.us", "", "a" * 300,
])
def test_no_hint_outside_a_known_pattern(name: str) -> None:
    assert hostname_hints(name) == ()


def test_known_anycast_prefixes() -> None:
    assert known_anycast("8.8.8.8").operator == "Google Public DNS"
    assert known_anycast("2606:4700:4700::1111") is not None
    assert known_anycast("142.250.82.76") is None
    assert known_anycast("not an ip") is None


# --- decision and confidence ----------------------------------------------------------------------

def _db(cc: str, source: str = "dbip") -> Evidence:
    return Evidence(source, cc, "test", "database")


def test_two_kinds_agreeing_is_confirmed_and_registration_never_contests() -> None:
    ev = [_db("NL"), Evidence("registered", "GB", "test", "registered"),
          Evidence("hostname:zoom-datacenter", "NL", "test", "hostname")]
    loc = decide("213.19.144.104", ev, {})
    assert (loc.country, loc.confidence, loc.contradictions) == ("NL", "confirmed", [])


def test_one_source_is_likely_and_disagreeing_location_sources_are_contested() -> None:
    assert decide("192.0.2.1", [_db("FR")], {}).confidence == "likely"
    loc = decide("192.0.2.1", [_db("NL"), Evidence("hostname:zoom-datacenter", "DE", "t", "hostname")], {})
    # The operator's own facility label comes first; the database's answer competes.
    assert (loc.country, loc.confidence, loc.competing) == ("DE", "contested", ["NL"])
    assert loc.contradictions == ["dbip says NL"]
    assert decide("192.0.2.1", [], {}).confidence == "unknown"


def test_rtt_rules_a_country_out() -> None:
    # 142.250.82.76 at 22.5 ms from Italy cannot be in the US (research/locations.md, Meet example).
    ev, ruled, anycast = gather("142.250.82.76", [("dbip", "database", "US"), ("registered", "registered", "US")],
                                [], 22.5, IT_CENTRE, "IT")
    assert set(ruled) == {"US"} and anycast is None
    rtt = [e for e in ev if e.source == "rtt"]
    assert rtt and "rules out US" in rtt[0].detail
    loc = decide("142.250.82.76", ev, ruled, anycast, 22.5)
    assert (loc.country, loc.confidence) == ("US", "contested")
    assert loc.contradictions[0].startswith("RTT rules out US")


def test_rtt_prefers_the_answer_it_leaves_possible() -> None:
    answers = [("dbip", "database", "US"), ("registered", "registered", "US")]
    ev, ruled, anycast = gather("142.250.82.76", answers, ["fra16s14-in-f14.1e100.net"], 15.0, IT_CENTRE)
    loc = decide("142.250.82.76", ev, ruled, anycast, 15.0)
    # US is ruled out, so it does not contest the hostname's DE; DE stands on one kind of evidence.
    assert (loc.country, loc.confidence) == ("DE", "likely")


def test_anycast_is_never_a_confident_country() -> None:
    ev, ruled, anycast = gather("8.8.8.8", [("dbip", "database", "US"), ("registered", "registered", "US")],
                                [], None, None)
    loc = decide("8.8.8.8", ev, ruled, anycast)
    assert loc.anycast and loc.confidence == "contested"
    assert any(e.source == "anycast" for e in loc.evidence)


def _loc(ip: str, cc: str, rtt: float) -> Location:
    return Location(ip, cc, "confirmed", [], min_rtt_ms=rtt)


def test_pairwise_rtt_inconsistency_without_a_vantage() -> None:
    # The Webex case: 2.3 ms "SG", 2.7 ms "NL", 3.0 ms "US" cannot hold together.
    locs = [_loc("114.29.204.49", "SG", 2.3), _loc("62.109.231.3", "NL", 2.7),
            _loc("209.197.222.159", "US", 3.0), _loc("64.68.105.98", "US", 4.0)]
    out = pairwise_conflicts(locs)
    assert {c["ip"] for c in out} == {"114.29.204.49", "62.109.231.3"}
    assert {c["vantage_hypothesis"] for c in out} == {"US"}
    assert all(c["other_country"] == "US" and c["distance_km"] > 1000 for c in out)
    # Claims that fit together are left alone.
    assert pairwise_conflicts([_loc("a", "NL", 5.0), _loc("b", "DE", 6.0), _loc("c", "BE", 4.0)]) == []


# --- a synthetic capture with chosen RTTs, names and STUN/TURN answers ----------------------------

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
CLIENT = "192.168.1.10"
PUBLIC_ME = "80.181.206.72"  # the client's public address (IT), learnt only from STUN answers
STUN_SRV = "74.125.247.128"
RELAY = "52.114.250.141"
FRA = "142.250.82.76"  # named fra16s14-in-f14.1e100.net in DNS, answers in 15 ms
AMS = "213.19.144.104"  # named zoomam104zc.zoom.us, answers in 30 ms
COOKIE = 0x2112A442


def _attr(t: int, v: bytes) -> bytes:
    return struct.pack(">HH", t, len(v)) + v + b"\0" * (-len(v) % 4)


def _xor(ip: str, port: int) -> bytes:
    raw = bytes(a ^ b for a, b in zip(ipaddress.IPv4Address(ip).packed, COOKIE.to_bytes(4, "big"), strict=True))
    return struct.pack(">BBH", 0, 1, port ^ (COOKIE >> 16)) + raw


def _plain(ip: str, port: int) -> bytes:
    return struct.pack(">BBH", 0, 1, port) + ipaddress.IPv4Address(ip).packed


def _stun(mtype: int, txid: bytes, attrs: bytes = b"") -> bytes:
    return struct.pack(">HHI", mtype, len(attrs), COOKIE) + txid + attrs


def _udp(src, dst, sport, dport, payload):
    return S.raw(S.IP(src=src, dst=dst) / S.UDP(sport=sport, dport=dport) / payload)


def _tcp(src, dst, sport, dport, flags, payload=b""):
    return S.raw(S.IP(src=src, dst=dst) / S.TCP(sport=sport, dport=dport, flags=flags) / payload)


def _dns_answer(name: str, ip: str):
    pkt = S.IP(src="192.168.1.1", dst=CLIENT) / S.UDP(sport=53, dport=5353) / S.DNS(
        id=1, qr=1, qd=S.DNSQR(qname=name), an=S.DNSRR(rrname=name, rdata=ip, ttl=60))
    return S.raw(pkt)


def synthetic_capture(hostile_name: str | None = None) -> bytes:
    frames = []
    t = T0
    for name, ip in (("fra16s14-in-f14.1e100.net", FRA), ("zoomam104zc.zoom.us", AMS)):
        frames.append((t, _dns_answer(name, ip)))
        t += MS
    if hostile_name:
        frames.append((t, _dns_answer(hostile_name, "8.8.4.4")))
        t += MS
    # STUN binding: request, then the answer from the server with the client's public address.
    tx = b"A" * 12
    frames.append((t, _udp(CLIENT, STUN_SRV, 50000, 3478, _stun(0x0001, tx))))
    answer = _stun(0x0101, tx, _attr(0x0020, _xor(PUBLIC_ME, 40000)))
    frames.append((t + 20 * MS, _udp(STUN_SRV, CLIENT, 3478, 50000, answer)))
    t += 30 * MS
    # TURN Allocate answer from the relay: the relayed address is the relay's, never the client.
    tx = b"B" * 12
    frames.append((t, _udp(CLIENT, RELAY, 50001, 3478, _stun(0x0003, tx))))
    allocate = _attr(0x0016, _xor(RELAY, 3480)) + _attr(0x0020, _xor(PUBLIC_ME, 40001))
    frames.append((t + 40 * MS, _udp(RELAY, CLIENT, 3478, 50001, _stun(0x0103, tx, allocate))))
    t += 50 * MS
    # MS-TURN Allocate answer (MS-Version present): MAPPED-ADDRESS is the allocated relay address,
    # the client's own address comes in 0x8020.
    tx = b"C" * 12
    frames.append((t, _udp(CLIENT, RELAY, 50002, 3479, _stun(0x0003, tx))))
    ms = _attr(0x8008, b"\0\0\0\x06") + _attr(0x0001, _plain(RELAY, 3481)) + _attr(0x8020, _xor(PUBLIC_ME, 40002))
    frames.append((t + 40 * MS, _udp(RELAY, CLIENT, 3479, 50002, _stun(0x0103, tx, ms))))
    t += 50 * MS
    # TCP handshakes with chosen round trips.
    for ip, rtt, port in ((FRA, 15, 51000), (AMS, 30, 51001), ("8.8.4.4", 5, 51002)):
        frames.append((t, _tcp(CLIENT, ip, port, 443, "S")))
        frames.append((t + rtt * MS, _tcp(ip, CLIENT, 443, port, "SA")))
        frames.append((t + (rtt + 1) * MS, _tcp(CLIENT, ip, port, 443, "A", b"x" * 50)))
        t += 100 * MS
    return W.pcap_bytes(frames, linktype=101)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("syn") / "evidence.pcap"
    p.write_bytes(synthetic_capture())
    return p


@pytest.fixture(scope="module")
def user_city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A City database that contradicts DB-IP and the hostname for the Amsterdam server."""
    w = mmdb_writer.MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="Test-GeoIP2-City",
                               languages=["en"], description={"en": "confscope test"})
    w.insert_network(netaddr.IPSet(["213.19.144.0/24"]), {"country": {"iso_code": "GB"}})
    p = tmp_path_factory.mktemp("mmdb") / "Test-City.mmdb"
    w.to_db_file(str(p))
    return p


def _endpoints(report: dict) -> dict[str, dict]:
    return {e["ip"]: e for e in report["endpoints"]}


def test_synthetic_vantage_comes_from_answers_not_relays(synthetic: Path) -> None:
    r = analyze(synthetic).report
    v = r["vantage"]
    assert v["country"] == "IT" and v["public_ips"] == [PUBLIC_ME]
    assert v["confidence"] == "confirmed"  # several answers agree
    assert {e["ip"] for e in v["evidence"]} == {PUBLIC_ME}
    rejected = {x["ip"] for x in v["rejected"]}
    assert RELAY in rejected  # XOR-RELAYED and MS-TURN MAPPED-ADDRESS are the relay's


def test_synthetic_locations_from_evidence(synthetic: Path) -> None:
    r = analyze(synthetic).report
    eps = _endpoints(r)
    fra = eps[FRA]
    # DB-IP and registration say US, but 15 ms from Italy rules the US out; the name says Frankfurt.
    assert (fra["country"], fra["confidence"]) == ("DE", "likely")
    assert fra["min_rtt_ms"] == pytest.approx(15.0, abs=0.01)
    assert "fra16s14-in-f14.1e100.net" in fra["hostnames"]
    sources = {e["source"] for e in fra["evidence"]}
    assert {"dbip", "registered", "hostname:google-1e100", "rtt"} <= sources
    ams = eps[AMS]
    assert (ams["country"], ams["confidence"]) == ("NL", "confirmed")
    assert ams["registered_country"] == "GB" and ams["asn"] == 3356
    anycast = eps["8.8.4.4"]
    assert anycast["anycast"] is True and anycast["confidence"] == "contested"
    # Flows carry the decided country and its confidence.
    flows = {f["server_ip"]: f for f in r["flows"]}
    assert flows[FRA]["server_country"] == "DE" and flows[FRA]["server_country_confidence"] == "likely"


def test_synthetic_user_database_is_evidence_and_can_contest(synthetic: Path, user_city: Path) -> None:
    r = analyze(synthetic, geoip=[str(user_city)]).report
    ams = _endpoints(r)[AMS]
    assert (ams["country"], ams["confidence"], ams["competing"]) == ("NL", "contested", ["GB"])
    assert {"source": "geoip:Test-City.mmdb", "country": "GB", "detail": "geoip:Test-City.mmdb: location database"} \
        in ams["evidence"]


def test_synthetic_policy_on_a_contested_location_needs_verification(synthetic: Path) -> None:
    r = analyze(synthetic, allow="IT").report
    viol = [v for v in r["policy"]["violations"] if v["remote_ip"] == "8.8.4.4"]
    assert viol and {v["confidence"] for v in viol} == {"needs-verification"}
    policy = [f for f in r["findings"] if f["code"].endswith("_OUTSIDE_POLICY")]
    for f in policy:
        if any(fid in f["flow_ids"] for fid in {v["flow_id"] for v in viol}):
            assert f.get("needs_verification") and f["confidence"] == "contested"
            assert "needs verification" in f["title"] and "anycast" in f["detail"]


def test_synthetic_reports_show_confidence_and_escape_hostile_names(tmp_path: Path) -> None:
    cap = tmp_path / "hostile.pcap"
    cap.write_bytes(synthetic_capture(hostile_name="x<script>alert(1)</script>|*[a](b).example"))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "analyzer", "analyze", str(cap), "-o", str(out), "--format", "json,md,html",
         "--allow", "IT", "--progress", "never"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stderr
    assert "Server locations" in proc.stdout and "contested" in proc.stdout and "confirmed" in proc.stdout
    md = (out / "hostile" / "report.md").read_text()
    assert "## Server locations" in md and "| 8.8.4.4 | US | **contested** |" in md
    html = (out / "hostile" / "report.html").read_text()
    assert 'id="endpoints"' in html and "<script>alert(1)" not in html
    report = json.loads((out / "hostile" / "report.json").read_text())
    assert all({"ip", "country", "confidence", "evidence", "registered_country", "asn", "org", "hostnames",
                "min_rtt_ms", "anycast"} <= set(e) for e in report["endpoints"])


def test_resolver_answers_name_every_source(tmp_path: Path, user_city: Path) -> None:
    res = GeoResolver(user_paths=[user_city], search_default_dirs=False, env={"CONFSCOPE_CACHE": str(tmp_path)})
    r = res.lookup(AMS)
    assert r.answers == (("geoip:Test-City.mmdb", "database", "GB"), ("dbip", "database", "NL"),
                         ("registered", "registered", "GB"))
