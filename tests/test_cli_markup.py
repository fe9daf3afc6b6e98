"""A capture is hostile input: an SNI that holds markup or a spreadsheet formula must come out of
`confscope analyze` inert in report.html, report.md, report.json and flows.csv.

The capture is built here with scapy: TLS ClientHellos (bytes laid out by hand, RFC 8446 4.1.2 and
RFC 6066 section 3) to public addresses, each SNI a different attack.
"""

from __future__ import annotations

import csv
import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

XSS_SNI = '"><script>alert(1)</script><img src=x onerror=alert(1)>.example'
# The dissector drops names with spaces (not plausible DNS names), so the same attack without
# spaces is what actually reaches the report; HTML accepts "/" between attributes.
XSS_SNI_NO_SPACE = '"><script>alert(1)</script><img/src=x/onerror=alert(1)>.example'
FORMULA_SNIS = (
    '=HYPERLINK("http://evil.example","x").example',
    "+cmd|'/c'!A0.example",
    "-2+3+cmd.example",
    "@SUM(1+1)*cmd.example",
)
HOSTILE = (XSS_SNI, XSS_SNI_NO_SPACE, *FORMULA_SNIS)
CLIENT = "192.168.7.20"
PUBLIC_SERVERS = ("162.255.38.14", "170.114.52.2", "8.8.4.4", "1.1.1.1", "9.9.9.9", "208.67.222.222")


def client_hello(sni: str) -> bytes:
    host = sni.encode()
    server_name = struct.pack("!BH", 0, len(host)) + host
    sni_ext = struct.pack("!HHH", 0x0000, len(server_name) + 2, len(server_name)) + server_name
    body = b"\x03\x03" + bytes(range(32)) + b"\x00" + struct.pack("!HH", 2, 0x1301) + b"\x01\x00"
    body += struct.pack("!H", len(sni_ext)) + sni_ext
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def build_capture(path: Path) -> Path:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import wrpcap

    packets = []
    t = 1700000000.0
    for i, (sni, server) in enumerate(zip(HOSTILE, PUBLIC_SERVERS, strict=True)):
        sport, cseq, sseq = 50000 + i, 1000, 9000
        up = Ether() / IP(src=CLIENT, dst=server)
        down = Ether() / IP(src=server, dst=CLIENT)
        hello = client_hello(sni)
        steps = [
            (up / TCP(sport=sport, dport=443, flags="S", seq=cseq)),
            (down / TCP(sport=443, dport=sport, flags="SA", seq=sseq, ack=cseq + 1)),
            (up / TCP(sport=sport, dport=443, flags="A", seq=cseq + 1, ack=sseq + 1)),
            (up / TCP(sport=sport, dport=443, flags="PA", seq=cseq + 1, ack=sseq + 1) / Raw(hello)),
            (down / TCP(sport=443, dport=sport, flags="A", seq=sseq + 1, ack=cseq + 1 + len(hello))),
        ]
        for k, pkt in enumerate(steps):
            pkt.time = t + i + k * 0.02
            packets.append(pkt)
    wrpcap(str(path), packets)
    return path


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    work = tmp_path_factory.mktemp("markup")
    capture = build_capture(work / "markup.pcap")
    proc = subprocess.run(
        [sys.executable, "-m", "analyzer", "analyze", str(capture), "-o", str(work / "out")],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    return proc, work / "out" / "markup"


def test_the_hostile_names_reach_the_report(reports):
    proc, out = reports
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    # Without this the other tests would pass vacuously: the dissector must have read every SNI.
    names = {f["hostname"] for f in report["flows"]}
    assert {XSS_SNI_NO_SPACE, *(n.lower() for n in FORMULA_SNIS)} <= names


def test_html_is_inert(reports):
    html = (reports[1] / "report.html").read_text(encoding="utf-8")
    assert "<script>alert" not in html
    assert not re.search(r"<img[^>]*onerror", html, re.IGNORECASE)
    # onerror= may only survive as escaped text, never inside a live tag.
    for m in re.finditer(r"onerror\s*=", html, re.IGNORECASE):
        before = html[max(0, m.start() - 200) : m.start()]
        assert before.rfind("<") < before.rfind("&lt;") or "<" not in before, html[m.start() - 80 : m.end() + 20]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html or "\\u003cscript\\u003ealert" in html
    # The only script elements are the report's own.
    for tag in re.findall(r"<script\b[^>]*>", html, re.IGNORECASE):
        assert "src=" not in tag.lower(), tag


def test_markdown_has_no_raw_markup(reports):
    md = (reports[1] / "report.md").read_text(encoding="utf-8")
    assert "<script>" not in md.lower()
    assert "<img" not in md.lower()
    assert "alert(1)" in md.replace("\\", "")  # present, but as text


def test_csv_cells_never_start_a_formula(reports):
    with open(reports[1] / "flows.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == 1 + len(PUBLIC_SERVERS)
    cells = [c for row in rows for c in row]
    for cell in cells:
        if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
            # A plain number such as -3.5 is data, not a formula.
            float(cell)
    # The names are still there, only defused.
    joined = "\n".join(cells)
    for sni in FORMULA_SNIS:
        assert sni[1:12].lower() in joined, sni


def test_terminal_summary_has_no_escape_sequences(reports):
    proc = reports[0]
    assert "\x1b" not in proc.stdout  # not a terminal: rich must not emit colour codes
