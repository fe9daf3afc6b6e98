"""SSDP (analyzer/dissect/ssdp.py): the parser, its payload kind in both twins, and the flow it
names on a real capture (checked against tshark's reading of the same datagram)."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from analyzer.classify import classify_scan
from analyzer.dissect import kinds as K
from analyzer.dissect import ssdp
from analyzer.dissect.flowfacts import dissect_one
from analyzer.dissect.spec import FlowContext, FlowMeta
from tests.conftest import real_capture

SEARCH = (
    b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\n"
    b"ST: urn:dial-multiscreen-org:service:dial:1\r\n\r\n"
)
NOTIFY = (
    b"NOTIFY * HTTP/1.1\r\nHost: 239.255.255.250:1900\r\nNT: upnp:rootdevice\r\nNTS: ssdp:alive\r\n"
    b"Server: Linux/5.4 UPnP/2.0 Cast/1.0\r\nLocation: http://192.168.1.20:8008/ssdp/device-desc.xml\r\n\r\n"
)
ANSWER = b"HTTP/1.1 200 OK\r\nST: urn:dial-multiscreen-org:service:dial:1\r\nSERVER: TV UPnP/1.0\r\n\r\n"
SIP_NOTIFY = b"NOTIFY sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n"


def test_parse_the_three_start_lines() -> None:
    s, n, a = ssdp.parse_ssdp(SEARCH), ssdp.parse_ssdp(NOTIFY), ssdp.parse_ssdp(ANSWER)
    assert (s.start, s.target, s.server) == ("M-SEARCH", "urn:dial-multiscreen-org:service:dial:1", None)
    assert (n.start, n.target, n.server) == ("NOTIFY", "upnp:rootdevice", "Linux/5.4 UPnP/2.0 Cast/1.0")
    assert n.location == "http://192.168.1.20:8008/ssdp/device-desc.xml"
    assert (a.start, a.target, a.server) == ("200", "urn:dial-multiscreen-org:service:dial:1", "TV UPnP/1.0")


def test_not_ssdp_and_hostile_text() -> None:
    assert ssdp.parse_ssdp(SIP_NOTIFY) is None
    assert ssdp.parse_ssdp(SEARCH[:-4]) is None  # no end of the header block
    assert ssdp.parse_ssdp(b"HTTP/1.1 2x0 OK\r\n\r\n") is None
    evil = ssdp.parse_ssdp(b"NOTIFY * HTTP/1.1\r\nNT: \x1b[2J\xff\r\n\r\n")
    assert evil is not None and evil.target == "?[2J?"
    for cut in range(len(NOTIFY)):
        ssdp.parse_ssdp(NOTIFY[:cut])  # never raises


def _kinds(rows: list[tuple[bytes, int, int]]) -> tuple[list[str], list[str]]:
    buf = np.frombuffer(b"".join(p for p, _, _ in rows), np.uint8)
    lens = np.array([len(p) for p, _, _ in rows])
    off = np.concatenate(([0], np.cumsum(lens)[:-1]))
    proto = np.full(len(rows), 17, np.uint8)
    sport = np.array([s for _, s, _ in rows])
    dport = np.array([d for _, _, d in rows])
    args = (buf, off, lens, proto, sport, dport)
    names = [K.kind_name(int(k)) for k in K.payload_kinds(*args)]
    return names, [K.kind_name(int(k)) for k in K.payload_kinds_numpy(*args)]


def test_payload_kind_in_both_twins() -> None:
    rows = [
        (SEARCH, 50000, 1900),
        (NOTIFY, 1900, 1900),
        (ANSWER, 1900, 50000),
        (NOTIFY, 5060, 5060),  # not on SSDP's port: the SIP rule's port match keeps it
        (SEARCH, 50000, 1901),  # an M-SEARCH elsewhere is nothing known
        (SIP_NOTIFY, 1900, 5060),  # SIP's own NOTIFY stays SIP even on port 1900
    ]
    compiled, numpy = _kinds(rows)
    assert compiled == numpy == ["ssdp", "ssdp", "ssdp", "sip", "other", "sip"]


def test_flow_facts() -> None:
    meta = FlowMeta("udp", 50000, 1900, "192.168.1.2", "239.255.255.250")
    ctx = FlowContext(meta, [1, 2], [0, 1], [-1, -1], [SEARCH, ANSWER])
    dissect_one(ctx)
    assert ctx.facts["protocols"] == ["ssdp"]
    assert ctx.facts["ssdp_targets"] == ["urn:dial-multiscreen-org:service:dial:1"]
    assert ctx.facts["ssdp_server"] == "TV UPnP/1.0"


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_zoom_capture_search_for_cast_receivers() -> None:
    path = real_capture("zoom.pcap")
    fields = ("-e", "ip.src", "-e", "udp.srcport", "-e", "udp.payload")
    out = subprocess.run(
        ["tshark", "-r", str(path), "-Y", "ssdp", "-T", "fields", *fields],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    assert len(out) == 3  # tshark sees one SSDP datagram in this capture
    src, sport, payload = out[0], int(out[1]), bytes.fromhex(out[2].replace(":", ""))
    target = re.search(rb"\r\nST: *([^\r]*)", payload).group(1).decode()
    from analyzer.scan.scanner import scan_capture

    table = classify_scan(scan_capture(path))
    row = table[(table["client_ip"] == src) & (table["client_port"] == sport)].iloc[0]
    assert row["protocol"] == "ssdp" and row["ssdp_targets"] == [target]
    assert row["bytes_by_role"] == {"other": row["bytes"]}
    # Only that flow is SSDP.
    assert (table["protocol"] == "ssdp").sum() == 1
