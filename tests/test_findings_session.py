"""Findings from whole sessions: the demo's Citizen-Lab reproduction (keys handed out in China,
ECB-encrypted media), cleartext SDES keys that must never be reproduced, plain RTP, and the
pure finding builders on hand-made tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analyzer.api import Session, analyze
from analyzer.capture.demo import write_demo_capture
from analyzer.session.findings import SEVERITY_ORDER, capture_findings, policy_findings, sort_findings
from tests.conftest import real_capture

ZONE_CONTROLLER = ("zoombj41zc.zoom.us", "109.244.194.121")
SDES_KEY = "WVNfX19abV9ETVBTaGVBSDhDWG5ZZmFqT2VvTlVFZVJoWUZj"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Session:
    path = write_demo_capture(tmp_path_factory.mktemp("demo") / "demo.pcap")
    return analyze(path, region="north-america")


def _by_code(s: Session) -> dict[str, dict]:
    return {f["code"]: f for f in s.report["findings"]}


def test_demo_key_exchange_outside_policy_is_critical_for_china(demo):
    f = _by_code(demo)["KEY_EXCHANGE_OUTSIDE_POLICY"]
    assert f["severity"] == "critical"
    assert f["countries"] == ["CN"]
    kx = {k["flow_id"]: k for k in demo.report["key_exchange"]}
    assert len(f["flow_ids"]) == 1
    zc = kx[f["flow_ids"][0]]
    assert (zc["hostname"], zc["server_ip"]) == ZONE_CONTROLLER
    assert zc["country"] == "CN"
    assert zc["asn"] == 45090  # Tencent, as Citizen Lab reported
    assert "CN" in f["detail"] and "north-america" in f["detail"]
    assert demo.exit_code == 1


def test_demo_key_exchange_endpoints_are_the_zone_controller_and_the_mmr(demo):
    kx = demo.key_exchange
    assert sorted(kx["country"]) == ["CN", "US"]
    assert set(kx["protocol"]) == {"tls"}
    assert ZONE_CONTROLLER[0] in set(kx["hostname"])


def test_demo_media_stays_in_policy(demo):
    codes = set(_by_code(demo))
    assert "MEDIA_OUTSIDE_POLICY" not in codes
    assert {m["country"] for m in demo.report["media"]} == {"US"}


def test_demo_ecb_pattern_is_found_with_its_statistic(demo):
    f = _by_code(demo)["ECB_PATTERN"]
    media_ids = {m["flow_id"] for m in demo.report["media"]}
    assert f["severity"] == "high"
    assert f["flow_ids"] and set(f["flow_ids"]) <= media_ids
    assert f["statistic"] and f["threshold"]
    assert "random ciphertext" in f["detail"]
    streams = [s for m in demo.report["media"] for s in m["streams"]]
    assert streams and any(s["verdict"] == "ecb_like" for s in streams)
    assert {s["media_type"] for s in streams} >= {"audio", "video"}


def test_findings_are_sorted_by_severity(demo):
    ranks = [SEVERITY_ORDER[f["severity"]] for f in demo.report["findings"]]
    assert ranks == sorted(ranks)
    assert demo.report["findings"][0]["code"] == "KEY_EXCHANGE_OUTSIDE_POLICY"


def _sip_capture(path: Path) -> Path:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import wrpcap

    sdp = (
        "v=0\r\no=alice 1 1 IN IP4 192.168.1.23\r\ns=-\r\nc=IN IP4 192.168.1.23\r\nt=0 0\r\n"
        "m=audio 40000 RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{SDES_KEY}|2^20|1:32\r\n"
    )
    invite = (
        "INVITE sip:bob@sip.example.net SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.168.1.23:5060;branch=z9hG4bK776asdhds\r\n"
        "Max-Forwards: 70\r\nTo: Bob <sip:bob@sip.example.net>\r\n"
        "From: Alice <sip:alice@example.net>;tag=1928301774\r\n"
        "Call-ID: a84b4c76e66710@pc33\r\nCSeq: 314159 INVITE\r\nContact: <sip:alice@192.168.1.23>\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
    )
    pkt = Ether() / IP(src="192.168.1.23", dst="212.27.52.5") / UDP(sport=5060, dport=5060) / Raw(invite.encode())
    pkt.time = 1600000000.0
    wrpcap(str(path), [pkt])
    return path


def test_cleartext_sdes_keys_are_reported_but_never_written(tmp_path):
    s = analyze(_sip_capture(tmp_path / "sdes.pcap"))
    f = _by_code(s)["CLEARTEXT_KEYS"]
    assert f["severity"] == "critical"
    assert f["flow_ids"] == [0]
    assert s.exit_code == 1  # a critical finding fails the pipeline even without a policy
    written = s.write(tmp_path / "out")
    assert set(written) == {"json", "md", "html", "csv", "parquet", "streams_parquet", "stream_seconds_parquet"}
    for path in written.values():
        assert SDES_KEY.encode() not in Path(path).read_bytes(), path
    assert SDES_KEY not in s.to_json()
    assert SDES_KEY not in s.flows.to_string()


def test_plain_rtp_in_the_sip_capture_is_unencrypted_media():
    s = analyze(real_capture("sip.pcap"))
    f = _by_code(s)["UNENCRYPTED_MEDIA"]
    media_ids = {m["flow_id"] for m in s.report["media"]}
    assert f["flow_ids"] and set(f["flow_ids"]) <= media_ids
    assert "ECB_PATTERN" not in _by_code(s)


# Pure builders on small hand-made inputs


def _viol(flow_id: int, role: str, country: str, severity: str, confidence: str = "high") -> dict:
    return {
        "flow_id": flow_id,
        "role": role,
        "country": country,
        "severity": severity,
        "confidence": confidence,
        "app": "zoom",
        "remote_ip": "198.51.100.1",
    }


def test_policy_findings_map_roles_to_codes():
    out = policy_findings(
        [
            _viol(1, "key_exchange", "CN", "critical"),
            _viol(2, "media", "DE", "high"),
            _viol(2, "signaling", "DE", "medium"),
            _viol(3, "dns", "FR", "low"),
            _viol(4, "nat_traversal", "FR", "low"),
        ],
        "--region north-america",
    )
    got = {f["code"]: (f["severity"], f["flow_ids"]) for f in out}
    assert got == {
        "KEY_EXCHANGE_OUTSIDE_POLICY": ("critical", [1]),
        "MEDIA_OUTSIDE_POLICY": ("high", [2]),
        "SIGNALING_OUTSIDE_POLICY": ("medium", [2]),
        "OTHER_OUTSIDE_POLICY": ("low", [3, 4]),
    }


def test_policy_findings_mixed_confidence_keep_the_role_severity():
    out = policy_findings(
        [_viol(1, "key_exchange", "ZZ", "low", "low"), _viol(2, "key_exchange", "CN", "critical")], "--allow US"
    )
    assert [(f["code"], f["severity"]) for f in out] == [("KEY_EXCHANGE_OUTSIDE_POLICY", "critical")]
    assert "confidence is low" not in out[0]["detail"]
    assert out[0]["countries"] == ["CN", "ZZ"]


def test_capture_findings():
    assert capture_findings({"truncated": False, "skipped_by_reason": {"non_ip": 12}}) == []
    out = capture_findings(
        {
            "truncated": True,
            "warnings": ["capture truncated: the last record at byte 900 is incomplete (10 bytes ignored)"],
            "skipped_by_reason": {"truncated_record": 1, "non_ip": 2},
        }
    )
    codes = {f["code"]: f for f in out}
    assert set(codes) == {"TRUNCATED_CAPTURE", "UNDECODED_PACKETS"}
    assert "byte 900" in codes["TRUNCATED_CAPTURE"]["detail"]
    assert "non-IP" in codes["UNDECODED_PACKETS"]["detail"]
    many = capture_findings({"skipped_by_reason": {"unknown_linktype": 500}})
    assert many[0]["severity"] == "medium"


def test_sort_findings_orders_by_severity_then_code():
    items = [
        {"code": "B", "severity": "low"},
        {"code": "A", "severity": "critical"},
        {"code": "C", "severity": "medium"},
        {"code": "A", "severity": "low"},
    ]
    assert [(f["severity"], f["code"]) for f in sort_findings(items)] == [
        ("critical", "A"),
        ("medium", "C"),
        ("low", "A"),
        ("low", "B"),
    ]


def test_geo_implausible_finding_on_a_real_capture():
    s = analyze(real_capture("stun_dtls_rtp.pcapng"))
    f = _by_code(s).get("GEO_IMPLAUSIBLE")
    assert f is not None and f["flow_ids"]
    flagged = s.flows[s.flows["flow_id"].isin(f["flow_ids"])]
    assert bool(flagged["geo_implausible"].all())
    assert (pd.to_numeric(flagged["min_rtt_ms"]) > 0).all()
