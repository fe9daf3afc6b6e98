"""Roles, bytes_by_role, protocol and hostname on the ground-truth flows of protocols.md section 6,
plus the inheritance rules on synthetic flow tables."""

from __future__ import annotations

from functools import cache

import pandas as pd
import pytest

from analyzer.classify import CONTRACT_APPS, ROLES, classify_flows
from analyzer.classify.roles import channel_role, split_bytes
from analyzer.dissect import dissect_flows
from tests.conftest import real_capture

CONFERENCING = [
    "zoom.pcap", "zoom_p2p.pcapng", "teams.pcap", "skype-conference-call.pcap", "webex.pcap",
    "google_meet.pcapng", "whatsapp_voice_and_message.pcap", "signal.pcap", "telegram_videocall.pcapng",
    "discord.pcap", "stun.pcap", "stun_dtls_rtp.pcapng", "sip.pcap", "rtp.pcapng",
]


@cache
def classified(name: str) -> pd.DataFrame:
    from analyzer.scan.scanner import scan_capture

    r = scan_capture(real_capture(name))
    d = dissect_flows(r.flows, r.samples)
    return classify_flows(r.flows, d.facts, d.dns)


def _row(df: pd.DataFrame, server_ip: str, server_port: int, client_port: int | None = None) -> pd.Series:
    m = (df["server_ip"] == server_ip) & (df["server_port"] == server_port)
    if client_port is not None:
        m &= df["client_port"] == client_port
    rows = df[m]
    assert len(rows) == 1, f"{server_ip}:{server_port} -> {len(rows)} flows"
    return rows.iloc[0]


def _needs_kinds(df: pd.DataFrame) -> None:
    if not any(c.startswith("kind_bytes_") for c in df.columns):
        pytest.skip("per-packet kinds (analyzer.dissect.kinds) not wired into the scan yet")


@pytest.mark.parametrize("name", CONFERENCING)
def test_invariants_on_every_flow(name):
    df = classified(name)
    assert set(df["app"]) <= set(CONTRACT_APPS)
    assert df["app_confidence"].between(0, 1).all()
    for _, row in df.iterrows():
        split = row["bytes_by_role"]
        assert sum(split.values()) == row["bytes"], (row["flow_id"], split, row["bytes"])
        assert set(split) <= set(ROLES) and set(row["roles"]) <= set(ROLES)
        assert set(split) <= set(row["roles"])
        assert row["roles"], row["flow_id"]
        assert isinstance(row["app_evidence"], list)


def test_zoom_zone_controller_is_key_exchange_and_signaling():
    row = _row(classified("zoom.pcap"), "213.19.144.104", 443)  # ground truth #3
    assert row["app"] == "zoom" and row["app_confidence"] >= 0.9
    assert {"key_exchange", "signaling"} <= set(row["roles"])
    assert row["bytes_by_role"]["key_exchange"] > 0
    assert row["hostname"] == "zoomam104zc.zoom.us"
    assert any("zone controller" in e for e in row["app_evidence"])


def test_zoom_mmr_control_and_sfu_media():
    df = classified("zoom.pcap")
    mmr = _row(df, "109.94.160.99", 443)  # ground truth #2
    assert mmr["app"] == "zoom" and "key_exchange" in mmr["roles"]
    sfu = _row(df, "109.94.160.99", 8801, 58327)  # ground truth #1
    assert sfu["app"] == "zoom" and sfu["protocol"] == "zoom"
    assert "media" in sfu["roles"] and "key_exchange" not in sfu["roles"]
    # The SFU flow's IP was only learned from DNS (it is in neither published list).
    assert sfu["hostname"] == "zoomfrn99mmr.zoom.us"


def test_zoom_stun_and_p2p():
    stun = _row(classified("zoom.pcap"), "162.255.37.14", 3478)  # ground truth #4
    assert stun["app"] == "zoom" and stun["roles"] == ["nat_traversal"]
    p2p = _row(classified("zoom_p2p.pcapng"), "192.168.1.226", 46757)  # ground truth #7
    # Its 0x15 probes are filler, not media (issue 13): role `other`, with the kind as detail.
    assert p2p["app"] == "zoom" and p2p["roles"] == ["media", "other"]
    assert set(p2p["other_by_kind"]) == {"zoom_probe"}
    assert p2p["bytes_by_role"]["other"] == p2p["other_by_kind"]["zoom_probe"] > 0


def test_zoom_p2p_inherits_from_stun_without_payload_marker():
    # The same flow table with the P2P flow's Zoom payload facts removed: the STUN rule alone
    # (local port used for STUN to a Zoom server within 300 s) must still say zoom.
    from analyzer.scan.scanner import scan_capture

    r = scan_capture(real_capture("zoom_p2p.pcapng"))
    d = dissect_flows(r.flows, r.samples)
    fid = int(r.flows[(r.flows["server_ip"] == "192.168.1.226") & (r.flows["server_port"] == 46757)]["flow_id"].iloc[0])
    facts = d.facts.copy()
    for col in ("zoom_generation", "zoom_p2p_hello", "protocol", "protocols"):
        facts.at[fid, col] = None
    out = classify_flows(r.flows, facts, d.dns).set_index("flow_id")
    assert out.loc[fid, "app"] == "zoom"
    assert out.loc[fid, "app_evidence"][0].startswith("inherit:local 192.168.12.156:39065")
    # Outside the window the rule does not apply.
    late = r.flows.copy()
    late.loc[late["flow_id"] == fid, "first_ts"] += 10_000
    out2 = classify_flows(late, facts, d.dns).set_index("flow_id")
    assert out2.loc[fid, "app"] != "zoom"


def test_webrtc_bytes_split_across_roles():
    df = classified("stun_dtls_rtp.pcapng")
    _needs_kinds(df)
    row = _row(df, "142.250.82.76", 19305)
    split = row["bytes_by_role"]
    assert row["app"] == "meet" and row["protocol"] == "srtp"
    assert split["nat_traversal"] > 0 and split["key_exchange"] > 0 and split["media"] > 0
    assert sum(split.values()) == row["bytes"]
    assert split["key_exchange"] == row["kind_bytes_dtls_handshake"]
    assert split["nat_traversal"] == row["kind_bytes_stun"]


def test_turn_tcp_is_nat_traversal():
    row = _row(classified("stun_dtls_rtp.pcapng"), "142.250.82.249", 3478)  # ground truth #12
    assert row["app"] == "meet" and row["roles"] == ["nat_traversal"]


def test_meet_quic_signaling():
    row = _row(classified("google_meet.pcapng"), "173.194.73.101", 443, 59369)  # ground truth #10
    assert row["app"] == "meet" and row["protocol"] == "quic" and row["roles"] == ["signaling"]


def test_teams_relay_and_p2p():
    df = classified("teams.pcap")
    relay = _row(df, "52.114.250.137", 3478, 50036)  # ground truth #14
    assert relay["app"] == "teams"
    p2p = df[(df["client_ip"] == "93.71.110.205") & (df["client_port"] == 16332)].iloc[0]  # #13
    assert p2p["app"] == "teams" and "media" in p2p["roles"] and p2p["protocol"] == "srtp"
    fp = _row(df, "52.114.77.136", 443)
    assert fp["hostname"] == "api.flightproxy.teams.microsoft.com"
    assert "key_exchange" in fp["roles"]


def test_discord_media_and_telegram_relay():
    d = _row(classified("discord.pcap"), "66.22.196.173", 50004, 57955)  # ground truth #16
    assert d["app"] == "discord" and "media" in d["roles"]
    t = _row(classified("telegram_videocall.pcapng"), "91.108.9.35", 1400, 40643)  # #20
    assert t["app"] == "telegram" and any("realm telegram.org" in e for e in t["app_evidence"])


def test_sip_signaling_and_sdp_media():
    df = classified("sip.pcap")
    sig = _row(df, "200.68.120.81", 5060)  # ground truth #22
    assert sig["app"] == "sip" and sig["roles"] == ["signaling"]
    rtp = _row(df, "212.242.33.36", 40392)  # ground truth #23
    assert rtp["app"] == "sip" and rtp["protocol"] == "rtp" and rtp["roles"] == ["media"]
    assert "announced in SDP" in rtp["app_evidence"][0]


def test_dns_flows_get_dns_role_and_app():
    df = classified("zoom.pcap")
    dns = df[(df["server_port"] == 53) & (df["app"] == "zoom")]
    assert len(dns) >= 4
    assert all(r == ["dns"] for r in dns["roles"])


def test_split_bytes_exact_and_channel_roles():
    kb = {"none": 100, "stun": 300, "dtls_handshake": 500, "rtp": 1000, "other": 7}
    split = split_bytes(2000, kb, "media")
    assert split == {"key_exchange": 500, "media": 1200, "nat_traversal": 300}
    # Kinds that overcount are trimmed so the total still matches.
    assert sum(split_bytes(100, {"rtp": 80, "stun": 40}, "media").values()) == 100
    assert channel_role("tcp", "tls", ["tls"], "zoom", "key_delivery", False, {}) == "key_exchange"
    assert channel_role("tcp", "tls", ["tls"], "unknown", None, False, {}) == "other"
    assert channel_role("udp", "sip", ["sip"], "sip", None, True, {}) == "key_exchange"
    assert channel_role("udp", "stun", ["stun"], "telegram", None, False, {"stun": 10, "other": 900}) == "media"


def test_sdes_sip_flow_is_key_exchange():
    invite = (
        b"INVITE sip:bob@example.org SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060\r\nCall-ID: abc@10.0.0.1\r\n"
        b"CSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: 141\r\n\r\n"
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/SAVP 0\r\n"
        b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n"
    )
    flows = pd.DataFrame({"flow_id": [0], "transport": ["udp"], "client_ip": ["10.0.0.1"], "client_port": [5060],
                          "server_ip": ["10.0.0.2"], "server_port": [5060], "bytes": [len(invite) + 42],
                          "first_ts": [1.0], "last_ts": [1.0], "first_ts_ns": [10**9]})
    samples = pd.DataFrame({"flow_id": [0], "frame": [1], "ts_ns": [10**9], "dir": [0], "transport": ["udp"],
                            "tcp_seq": [-1], "tcp_flags": [0], "payload": [invite]})
    d = dissect_flows(flows, samples)
    assert d.facts.loc[0, "sdp_key_exchange"] == ["crypto"]
    out = classify_flows(flows, d.facts, d.dns).iloc[0]
    assert out["app"] == "sip"
    assert out["roles"] == ["signaling", "key_exchange"]
    assert out["bytes_by_role"] == {"key_exchange": len(invite) + 42}
