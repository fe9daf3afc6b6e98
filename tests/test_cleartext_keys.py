"""SDES keys sent in clear SIP/SDP: the finding is raised, and the key is written nowhere."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from analyzer.api import analyze

scapy_all = pytest.importorskip("scapy.all")

KEY = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVzcyBxdWFsaWZ5"  # 40 base64 chars: key + salt


def _sip_capture(tmp_path, key_line: str | None) -> str:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import wrpcap

    sdp = (
        "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=call\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
        "m=audio 49170 RTP/SAVP 0\r\n" + (f"{key_line}\r\n" if key_line else "")
    )
    invite = (
        "INVITE sip:bob@198.51.100.20 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds\r\n"
        "From: Alice <sip:alice@192.0.2.10>;tag=1928301774\r\nTo: Bob <sip:bob@198.51.100.20>\r\n"
        "Call-ID: a84b4c76e66710@192.0.2.10\r\nCSeq: 314159 INVITE\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
    )
    ok = "SIP/2.0 200 OK\r\nCall-ID: a84b4c76e66710@192.0.2.10\r\nCSeq: 314159 INVITE\r\nContent-Length: 0\r\n\r\n"
    pkts = [
        Ether() / IP(src="192.0.2.10", dst="198.51.100.20") / UDP(sport=5060, dport=5060) / Raw(invite.encode()),
        Ether() / IP(src="198.51.100.20", dst="192.0.2.10") / UDP(sport=5060, dport=5060) / Raw(ok.encode()),
    ]
    for i, p in enumerate(pkts):
        p.time = 1_700_000_000 + i * 0.05
    path = tmp_path / "sdes.pcap"
    wrpcap(str(path), pkts)
    return str(path)


def test_sdes_keys_in_clear_sip_raise_cleartext_keys_and_never_appear(tmp_path):
    capture = _sip_capture(tmp_path, f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:32")
    session = analyze(capture)
    findings = {f["code"]: f for f in session.report["findings"]}
    assert "CLEARTEXT_KEYS" in findings
    assert findings["CLEARTEXT_KEYS"]["severity"] == "critical"
    sip_flow = session.flows[session.flows["server_port"] == 5060]
    assert findings["CLEARTEXT_KEYS"]["flow_ids"] == sip_flow["flow_id"].tolist()
    assert "key_exchange" in sip_flow["roles"].iloc[0]

    written = session.write(tmp_path / "out")
    for fmt, path in written.items():
        raw = path.read_bytes()
        assert KEY.encode() not in raw, f"the SDES key leaked into {fmt}"
        assert KEY[:20].encode() not in raw
    assert KEY not in session.to_json()
    assert KEY not in json.dumps(session.report, default=str)
    for col in session.flows.columns:
        assert not session.flows[col].astype(str).str.contains(KEY[:20], regex=False).any(), col
    assert not pd.read_parquet(written["parquet"]).astype(str).apply(lambda c: c.str.contains(KEY[:20])).any().any()


def test_sip_without_keys_raises_no_cleartext_keys(tmp_path):
    session = analyze(_sip_capture(tmp_path, None))
    assert "CLEARTEXT_KEYS" not in {f["code"] for f in session.report["findings"]}
