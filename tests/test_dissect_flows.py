"""Per-flow dissection (analyzer.dissect.dissect_flows) on the shared real captures and on
synthetic, hostile samples."""

from __future__ import annotations

import itertools
import random
import time
from functools import cache

import pandas as pd
import pytest

from analyzer.dissect import FACT_COLUMNS, DissectResult, dissect_flows
from tests.conftest import real_capture


@cache
def _scan(name: str):
    from analyzer.scan.scanner import scan_capture

    return scan_capture(real_capture(name))


@cache
def _dissect(name: str) -> tuple[pd.DataFrame, DissectResult]:
    r = _scan(name)
    return r.flows, dissect_flows(r.flows, r.samples)


def _flow(flows: pd.DataFrame, server_ip: str, server_port: int, client_port: int | None = None) -> int:
    m = (flows["server_ip"] == server_ip) & (flows["server_port"] == server_port)
    if client_port is not None:
        m &= flows["client_port"] == client_port
    ids = flows.loc[m, "flow_id"].tolist()
    assert len(ids) == 1, f"expected one flow to {server_ip}:{server_port}, got {ids}"
    return int(ids[0])


def test_facts_frame_shape():
    flows, d = _dissect("zoom.pcap")
    assert list(d.facts.columns) == list(FACT_COLUMNS)
    assert d.facts.index.name == "flow_id"
    assert sorted(d.facts.index) == sorted(flows["flow_id"])
    assert list(d.dns.columns)[:4] == ["ip", "name", "ts_ns", "cname_chain"]


def test_zoom_zone_controller_tls_facts():
    flows, d = _dissect("zoom.pcap")
    f = d.facts.loc[_flow(flows, "213.19.144.104", 443)]
    assert f["protocol"] == "tls"
    assert f["sni"] == "zoomam104zc.zoom.us"
    assert f["tls_version"] == "TLS 1.2"
    assert f["cert_subject"] == "*.zoom.us"
    assert "zoom.us" in f["cert_sans"]


def test_zoom_sfu_and_stun_facts():
    flows, d = _dissect("zoom.pcap")
    sfu = d.facts.loc[_flow(flows, "109.94.160.99", 8801, 58327)]
    assert sfu["protocol"] == "zoom"
    assert sfu["zoom_generation"] == "A"
    assert sfu["zoom_setup_version"] == 2 and isinstance(sfu["zoom_setup_version"], int)
    stun = d.facts.loc[_flow(flows, "162.255.37.14", 3478)]
    assert stun["stun_classic"] is True
    assert {0x0101, 0x0103} <= set(stun["stun_attr_types"])
    # Zoom's 0x0103 response carries the client's reflexive address in clear.
    assert stun["stun_mapped"] and all(isinstance(p, int) for _, p in stun["stun_mapped"])


def test_zoom_p2p_hello_fact():
    flows, d = _dissect("zoom_p2p.pcapng")
    f = d.facts.loc[_flow(flows, "192.168.1.226", 46757)]
    assert f["zoom_generation"] == "p2p"
    assert f["zoom_p2p_hello"] == "192.168.1.226"
    assert f["rtp_ssrcs"]


def test_dns_answer_table_zoom():
    _, d = _dissect("zoom.pcap")
    rows = d.dns[d.dns["ip"] == "213.244.140.85"]
    assert "zoomfr85zc.zoom.us" in set(rows["name"])
    assert rows["ts_ns"].dtype.kind == "i" and (rows["ts_ns"] > 1.5e18).all()


def test_dns_cname_chain_teams():
    _, d = _dissect("teams.pcap")
    rows = d.dns[d.dns["ip"] == "52.114.77.136"]
    chain = rows["cname_chain"].iloc[0]
    assert chain[0] == "api.flightproxy.teams.microsoft.com"
    assert len(chain) == 3


def test_quic_meet_sni():
    flows, d = _dissect("google_meet.pcapng")
    f = d.facts.loc[_flow(flows, "173.194.73.101", 443, 59369)]
    assert f["protocol"] == "quic"
    assert f["sni"] == "meet.google.com"
    assert f["quic_version"] == "0x00000001"
    assert "h3" in f["alpn"]


def test_webrtc_stun_dtls_facts():
    flows, d = _dissect("stun_dtls_rtp.pcapng")
    udp = d.facts.loc[_flow(flows, "142.250.82.76", 19305)]
    assert udp["dtls_use_srtp"] is True and udp["dtls_handshake"] is True
    assert udp["dtls_cert"] == "hangouts"
    assert udp["stun_mapped"] == [("93.35.171.3", 61536)]
    tcp = d.facts.loc[_flow(flows, "142.250.82.249", 3478)]
    assert tcp["stun_realm"] == "turn.l.google.com"
    assert tcp["stun_relayed"] and tcp["stun_peers"]
    assert "turn" in tcp["protocols"]


def test_turn_channel_and_realm_messenger():
    flows, d = _dissect("stun.pcap")
    f = d.facts.loc[_flow(flows, "31.13.86.54", 40003)]
    assert f["stun_realm"] == "turner.facebook"
    assert f["stun_peers"]


def test_turn_channels_surface_as_facts():
    from analyzer.dissect.stun import parse_channel_data

    _flows, d = _dissect("stun.pcap")
    samples = _scan("stun.pcap").samples
    seen = d.facts["turn_channels"].dropna()
    assert len(seen) >= 1
    for fid, channels in seen.items():
        # The fact lists exactly the channel numbers of the flow's sampled ChannelData messages.
        payloads = samples.loc[samples["flow_id"] == fid, "payload"]
        expected = {cd[0] for p in payloads if (cd := parse_channel_data(bytes(p))) is not None}
        assert set(channels) == expected and channels == sorted(channels)
        assert "turn" in d.facts.loc[fid, "protocols"]


def test_discord_ip_discovery_address():
    flows, d = _dissect("discord.pcap")
    f = d.facts.loc[_flow(flows, "66.22.196.173", 50004, 57955)]
    assert f["discord_ip_discovery"] == "84.59.132.100:57955"
    assert 120 in f["rtp_payload_types"]
    assert f["srtp"] is True  # dynamic PT with near-random payload


def test_whatsapp_prologue():
    flows, d = _dissect("whatsapp_voice_and_message.pcap")
    f = d.facts.loc[_flow(flows, "173.192.222.189", 5222)]
    assert f["whatsapp_prologue"] == "WA 1.5"
    wa_stun = d.facts.loc[_flow(flows, "31.13.84.48", 3478)]
    assert 0x0800 in wa_stun["stun_msg_types"]


def test_sip_and_plain_rtp():
    flows, d = _dissect("sip.pcap")
    sip = d.facts.loc[_flow(flows, "200.68.120.81", 5060)]
    assert sip["protocol"] == "sip"
    assert sip["sip_call_id"] == "105090259-446faf7a@192.168.1.2"
    assert ("192.168.1.2", 30000) in sip["sdp_media"]
    rtp = d.facts.loc[_flow(flows, "212.242.33.36", 40392)]
    assert rtp["protocol"] == "rtp"
    assert rtp["srtp"] is False  # PCMA (static PT 8) in clear
    assert rtp["rtp_payload_types"] == [8]


def _samples(rows: list[tuple[int, int, int, bytes]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "flow_id": [r[0] for r in rows],
            "frame": list(range(1, len(rows) + 1)),
            "ts_ns": [1_700_000_000_000_000_000 + i for i in range(len(rows))],
            "dir": [r[1] for r in rows],
            "transport": ["tcp"] * len(rows),
            "tcp_seq": [r[2] for r in rows],
            "tcp_flags": [0x18] * len(rows),
            "payload": [r[3] for r in rows],
        }
    )


def _one_flow(transport: str, sport: int, dport: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "flow_id": [0], "transport": [transport], "client_ip": ["10.0.0.1"], "client_port": [sport],
            "server_ip": ["203.0.113.7"], "server_port": [dport], "bytes": [1000],
        }
    )


def test_tls_client_hello_over_reordered_segments():
    r = _scan("zoom.pcap")
    fid = _flow(r.flows, "213.19.144.104", 443)
    hello = r.samples[(r.samples["flow_id"] == fid) & (r.samples["dir"] == 0)]["payload"].iloc[0]
    assert len(hello) > 100
    base = 1_000_000
    cuts = [0, 40, 90, len(hello)]
    segs = [(0, 0, base + a, hello[a:b]) for a, b in itertools.pairwise(cuts)]
    shuffled = [segs[2], segs[0], segs[1], segs[0]]  # out of order, with a retransmission
    d = dissect_flows(_one_flow("tcp", 40000, 443), _samples(shuffled))
    assert d.facts.loc[0, "sni"] == "zoomam104zc.zoom.us"
    # A hole before the last segment leaves the ClientHello incomplete: no SNI, no exception.
    d2 = dissect_flows(_one_flow("tcp", 40000, 443), _samples([segs[0], segs[2]]))
    assert d2.facts.loc[0, "sni"] is None


def test_hostile_payloads_never_raise():
    rng = random.Random(7)
    prefixes = [
        b"\x16\x03\x01\xff\xff\x01", b"\x00\x01\x00\x46", b"\x00\x01\xff\xfc\x21\x12\xa4\x42",
        b"\x16\xfe\xfd\x00\x00", b"\x05\x00\x00\x00\x00\x00\x00\x00\x10", b"\x1f\x02\x01\x00",
        b"\x80\x60", b"\x81\xc8\x00\x06", b"\xc0\x00\x00\x00\x01\x08", b"INVITE sip:x SIP/2.0\r\n",
        b"\x40\x00\xff\xff", b"\xff\x10\x00\x20", b"\x10\x00\x00\x01ZRTP", b"WA\x01\x05", b"",
    ]
    flows_rows, sample_rows = [], []
    ports = [(40000, 443, "tcp"), (40001, 8801, "udp"), (40002, 3478, "udp"), (40003, 53, "udp"),
             (40004, 5060, "udp"), (40005, 443, "udp"), (40006, 53, "tcp"), (40007, 50004, "udp")]
    for fid in range(64):
        sport, dport, tr = ports[fid % len(ports)]
        flows_rows.append({"flow_id": fid, "transport": tr, "client_ip": "10.0.0.1", "client_port": sport,
                           "server_ip": "198.51.100.1", "server_port": dport, "bytes": 0})
        for k in range(6):
            body = rng.choice(prefixes) + rng.randbytes(rng.randrange(0, 120))
            sample_rows.append((fid, k % 2, rng.randrange(0, 2**32), body))
    samples = _samples(sample_rows)
    samples["transport"] = [flows_rows[f]["transport"] for f in samples["flow_id"]]
    d = dissect_flows(pd.DataFrame(flows_rows), samples)
    assert len(d.facts) == 64
    assert d.errors == {}, d.errors


def test_empty_inputs():
    d = dissect_flows(pd.DataFrame(columns=["flow_id", "transport"]), pd.DataFrame())
    assert d.facts.empty and d.dns.empty
    flows = _one_flow("udp", 1, 2)
    d = dissect_flows(flows, pd.DataFrame(columns=["flow_id", "frame", "ts_ns", "dir", "tcp_seq", "payload"]))
    assert d.facts.loc[0, "protocol"] is None


def test_dissection_is_fast_on_samples():
    r = _scan("teams.pcap")
    t = time.perf_counter()
    dissect_flows(r.flows, r.samples)
    assert time.perf_counter() - t < 2.0


@pytest.mark.parametrize(
    ("name", "sni", "version"),
    [("quic-29.pcap", "localhost", "0xff00001d"), ("quic-v2.pcapng", "test", "0x6b3343cf")],
)
def test_quic_draft29_and_v2_initials(name, sni, version):
    _, d = _dissect(name)
    q = d.facts[d.facts["protocol"] == "quic"]
    assert len(q) == 1
    assert q["sni"].iloc[0] == sni and q["quic_version"].iloc[0] == version
