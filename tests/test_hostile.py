"""Hostile strings end to end (issue 7, section 3): a capture whose SNI, certificate name, DNS
names, SIP headers, STUN SOFTWARE/USERNAME and file name carry markup, formulas, terminal escapes,
bidi overrides, NUL bytes and very long values goes through `confscope analyze` (a real
subprocess); every output must stay inert and stay inside `-o DIR`.

The capture builders here are reused by tests/test_anonymize.py and test_hostile_inprocess.py.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import re
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

scapy_all = pytest.importorskip("scapy.all")
from scapy.all import DNS, DNSQR, DNSRR, IP, TCP, UDP, Ether, Raw, wrpcap  # noqa: E402

from analyzer.capture.demo import server_flight  # noqa: E402

LOCAL = "192.168.7.9"
LOCAL_MAC = "02:11:22:33:44:55"
ROUTER = "192.168.7.1"
ROUTER_MAC = "02:aa:bb:cc:dd:ee"
STUN_SERVER = "74.125.250.129"
SIP_SERVER = "81.2.69.160"
MAPPED = "81.2.69.199"  # the capturing side's public address as the STUN server saw it
TLS_SERVERS = ("151.101.1.1", "151.101.2.2", "151.101.65.3", "151.101.129.4", "151.101.193.5")
DNS_TARGET = "151.101.66.6"
SDES_KEY = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"
STUN_USERNAME = "Ab12Cd34:Ef56Gh78"

# Host names go through the dissectors' host-name filter (ASCII, printable, no spaces), so the
# hostile names are written within those rules; free text (SIP, STUN) carries everything else.
HOSTILE_SNIS = (
    "<script>alert(1)</script>.evil.example",
    '"><img/src=x/onerror=alert(1)>',
    "javascript:alert(document.domain)//",
    "[click](javascript:alert(1))",
    '=hyperlink("http://evil.example","x")',
)
HOSTILE_DNS = "@sum(1+1)*cmd|'/c'!a0.<svg/onload=alert(1)>.evil"
HOSTILE_CN = "+1<iframe/src=javascript:alert(1)>"
ESCAPES = "\x1b[2J\x1b]8;;http://evil.example/\x07click\x1b]8;;\x07\x07\x1b]0;pwned\x07"
HOSTILE_TEXT = (
    "<script>alert('ua')</script>\"><img src=x onerror=alert(2)> javascript:alert(3) "
    "[md](javascript:alert(4)) ![img](http://evil.example/t.png) " + ESCAPES + " \u202etxt.exe \x00nul"
)
CSV_STARTS = ("=cmd|' /C calc'!A0", "+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0")
HOSTILE_FILE_NAME = "=cmd|' C calc'!A0 <script>alert(1)<\u2044script> \x1b[2J\x07\u202eevil\x1b]8;;x\x07.pcap"
LONG = 100_000


class _Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0
        self.packets: list = []

    def add(self, pkt, gap: float = 0.001) -> None:
        self.t += gap
        pkt.time = self.t
        self.packets.append(pkt)


def _l2(src: str, dst: str):
    out = src in (LOCAL, ROUTER) and dst not in (LOCAL,)
    return Ether(src=LOCAL_MAC if out else ROUTER_MAC, dst=ROUTER_MAC if out else LOCAL_MAC) / IP(src=src, dst=dst)


def _udp(c: _Clock, src: str, sport: int, dst: str, dport: int, payload: bytes) -> None:
    c.add(_l2(src, dst) / UDP(sport=sport, dport=dport) / Raw(payload))


def _tcp_conversation(c: _Clock, server: str, port: int, sport: int, client_data: bytes, server_data: bytes) -> None:
    cs, ss = 1000, 5000
    c.add(_l2(LOCAL, server) / TCP(sport=sport, dport=port, flags="S", seq=cs))
    c.add(_l2(server, LOCAL) / TCP(sport=port, dport=sport, flags="SA", seq=ss, ack=cs + 1), 0.02)
    c.add(_l2(LOCAL, server) / TCP(sport=sport, dport=port, flags="A", seq=cs + 1, ack=ss + 1))
    seq = cs + 1
    for off in range(0, len(client_data), 1400):
        chunk = client_data[off : off + 1400]
        c.add(_l2(LOCAL, server) / TCP(sport=sport, dport=port, flags="PA", seq=seq, ack=ss + 1) / Raw(chunk))
        seq += len(chunk)
    if server_data:
        c.add(_l2(server, LOCAL) / TCP(sport=port, dport=sport, flags="PA", seq=ss + 1, ack=seq) / Raw(server_data))


def client_hello(sni: str, seed: int) -> bytes:
    """A minimal, well-formed TLS 1.2 ClientHello record with one SNI extension."""
    host = sni.encode("utf-8")
    server_name = b"\x00" + struct.pack("!H", len(host)) + host
    sni_ext = struct.pack("!HH", 0, len(server_name) + 2) + struct.pack("!H", len(server_name)) + server_name
    body = b"\x03\x03" + hashlib.sha256(bytes([seed])).digest() + b"\x00"
    body += struct.pack("!HHH", 4, 0xC02B, 0xC02F) + b"\x01\x00" + struct.pack("!H", len(sni_ext)) + sni_ext
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def stun_message(msg_type: int, txid: bytes, attrs: list[tuple[int, bytes]]) -> bytes:
    """An RFC 5389 message (magic cookie, 4-byte attribute padding)."""
    body = b""
    for typ, value in attrs:
        body += struct.pack("!HH", typ, len(value)) + value + b"\x00" * (-len(value) % 4)
    return struct.pack("!HHI", msg_type, len(body), 0x2112A442) + txid + body


def xor_mapped(ip: str, port: int) -> bytes:
    packed = bytes(int(x) for x in ip.split("."))
    xaddr = bytes(a ^ b for a, b in zip(packed, struct.pack("!I", 0x2112A442), strict=True))
    return struct.pack("!BBH", 0, 1, port ^ 0x2112) + xaddr


def sip_invite(user_agent: str, display: str, call_id: str, with_sdes: bool = True) -> bytes:
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
        "m=audio 40000 RTP/SAVP 0\r\n"
        + (f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{SDES_KEY}|2^20|1:32\r\n" if with_sdes else "")
    ).format(ip=LOCAL)
    head = (
        f"INVITE sip:bob@{SIP_SERVER} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {LOCAL}:5060;branch=z9hG4bK776asdhds\r\n"
        f'From: "{display}" <sip:alice@{LOCAL}>;tag=1928301774\r\n'
        f"To: <sip:bob@{SIP_SERVER}>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
        f"User-Agent: {user_agent}\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(sdp.encode())}\r\n\r\n"
    )
    return head.encode("utf-8", "surrogatepass") + sdp.encode()


def build_hostile_packets(long_value: int = LONG) -> list:
    c = _Clock()
    for i, (sni, server) in enumerate(zip(HOSTILE_SNIS, TLS_SERVERS, strict=True)):
        _tcp_conversation(c, server, 443, 40000 + i, client_hello(sni, i), server_flight(HOSTILE_CN, i))
    # DNS answer naming a server the capture then talks to without SNI: the hostile name becomes
    # that flow's hostname.
    q = DNS(id=7, rd=1, qd=DNSQR(qname=HOSTILE_DNS))
    _udp(c, LOCAL, 53001, ROUTER, 53, bytes(q))
    a = DNS(id=7, qr=1, aa=1, rd=1, ra=1, qd=DNSQR(qname=HOSTILE_DNS), an=DNSRR(rrname=HOSTILE_DNS, rdata=DNS_TARGET))
    _udp(c, ROUTER, 53, LOCAL, 53001, bytes(a))
    for k in range(4):
        _udp(c, LOCAL, 45000, DNS_TARGET, 4000, bytes([0x42]) * (60 + k))
        _udp(c, DNS_TARGET, 4000, LOCAL, 45000, bytes([0x43]) * (60 + k))
    # STUN with hostile SOFTWARE and USERNAME, answered with the mapped (public) address.
    for k, text in enumerate((HOSTILE_TEXT, *CSV_STARTS)):
        txid = bytes([k]) * 12
        attrs = [(0x0006, STUN_USERNAME.encode()), (0x8022, text.encode("utf-8"))]
        _udp(c, LOCAL, 50000 + k, STUN_SERVER, 19302, stun_message(0x0001, txid, attrs))
        _udp(c, STUN_SERVER, 19302, LOCAL, 50000 + k, stun_message(0x0101, txid, [(0x0020, xor_mapped(MAPPED, 50000))]))
    # SIP: hostile User-Agent, display name and Call-ID; SDES key in the SDP; one very long UA.
    for k, ua in enumerate((HOSTILE_TEXT, *CSV_STARTS)):
        msg = sip_invite(ua, HOSTILE_TEXT.replace('"', "'"), f"{k}-<script>x</script>@{LOCAL}")
        _udp(c, LOCAL, 5060 + k, SIP_SERVER, 5060, msg)
    _udp(c, LOCAL, 5090, SIP_SERVER, 5060, sip_invite("A" * min(long_value, 60_000), "x", "long@x"))
    # A 100 kB header over TCP (HTTP Host and a giant path): bounded work, bounded output.
    http = b"GET /" + b"<script>" * (long_value // 8) + b" HTTP/1.1\r\nHost: " + b"h" * 5000 + b"\r\n\r\n"
    _tcp_conversation(c, TLS_SERVERS[0], 80, 41000, http, b"HTTP/1.1 200 OK\r\n\r\n")
    return c.packets


def write_hostile_capture(path: str | Path, long_value: int = LONG) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrpcap(str(path), build_hostile_packets(long_value), linktype=1)
    return path


# --- the end-to-end run -------------------------------------------------------------------------


def _snapshot(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("hostile")
    work = root / "a" / "b"
    work.mkdir(parents=True)
    # Path traversal in the argument the user passes, and a hostile file name of its own.
    traversal = root / "etc" / "x.pcap"
    write_hostile_capture(traversal)
    weird = root / "etc" / HOSTILE_FILE_NAME
    weird.write_bytes(traversal.read_bytes())
    dotty = root / "etc" / "...pcap"
    dotty.write_bytes(traversal.read_bytes())
    before = _snapshot(root)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORCE_COLOR", "CLICOLOR"))}
    env["COLUMNS"] = "200"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "analyzer",
            "analyze",
            "../../etc/x.pcap",
            str(weird),
            "../../etc/...pcap",
            "-o",
            "out",
            "--format",
            "json,md,html,csv",
        ],
        cwd=work,
        capture_output=True,
        timeout=240,
        env=env,
    )
    out = work / "out"
    return {
        "proc": proc,
        "out": out,
        "root": root,
        "new": _snapshot(root) - before,
        "dirs": sorted(p for p in out.iterdir() if p.is_dir()) if out.is_dir() else [],
    }


def test_cli_finishes_with_contract_exit_code(hostile_run: dict) -> None:
    proc = hostile_run["proc"]
    assert proc.returncode in (0, 1), proc.stderr.decode(errors="replace")[-2000:]
    assert b"Traceback" not in proc.stderr
    assert len(hostile_run["dirs"]) == 3


def test_outputs_only_under_output_dir(hostile_run: dict) -> None:
    out = hostile_run["out"].resolve()
    created = [p.resolve() for p in hostile_run["new"]]
    outside = [p for p in created if p != out and out not in p.parents]
    assert not outside, outside
    names = [d.name for d in hostile_run["dirs"]]
    for name in names:
        assert re.fullmatch(r"[\w.-]+", name, flags=re.ASCII), name
        assert name not in (".", "..") and not name.startswith(".")
    assert "x" in names  # "../../etc/x.pcap" -> out/x, not out/../../etc
    for d in hostile_run["dirs"]:
        assert {p.name for p in d.iterdir()} <= {"report.json", "report.md", "report.html", "flows.csv"}


def _report_files(hostile_run: dict, name: str) -> list[Path]:
    return [d / name for d in hostile_run["dirs"]]


def test_hostile_strings_reached_the_reports(hostile_run: dict) -> None:
    """Guard against a vacuous pass: the hostile values are really in the outputs (made inert)."""
    x = next(d for d in hostile_run["dirs"] if d.name == "x")
    flows_csv = (x / "flows.csv").read_text(encoding="utf-8")
    assert "<script>alert(1)</script>.evil.example" in flows_csv
    assert "cmd|' /C calc'!A0" in flows_csv
    html = (x / "report.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.evil.example" in html
    report = json.loads((x / "report.json").read_text(encoding="utf-8"))
    hosts = {f.get("hostname") for f in report["flows"]}
    assert HOSTILE_SNIS[0] in hosts and HOSTILE_DNS.lower() in hosts


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._in_script: dict[str, str | None] | None = None
        self._buf: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        if tag == "script":
            self._in_script, self._buf = dict(attrs), []

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        if self._in_script is not None:
            self._buf.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._in_script is not None:
            self.scripts.append((self._in_script, "".join(self._buf)))
            self._in_script = None


def assert_html_inert(html: str, allowed_hrefs: tuple[str, ...] = ("https://db-ip.com",)) -> None:
    p = _Tags()
    p.feed(html)
    p.close()
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert csp, "the report lost its Content-Security-Policy"
    hashes = set(re.findall(r"'(sha256-[A-Za-z0-9+/=]+)'", csp.group(1).replace("&#x27;", "'")))
    executable = [(a, body) for a, body in p.scripts if a.get("type") != "application/json"]
    assert len(executable) == 1, f"{len(executable)} executable scripts"
    for _attrs, body in executable:
        digest = "sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert digest in hashes, "a script the CSP does not allow"
    for tag, attrs in p.tags:
        assert tag not in ("img", "iframe", "frame", "object", "embed", "base", "form", "link"), tag
        assert not (tag == "meta" and ("http-equiv", "refresh") in [(k, (v or "").lower()) for k, v in attrs])
        for k, v in attrs:
            assert not k.lower().startswith("on"), f"event handler attribute {k} on <{tag}>"
            val = (v or "").strip().lower().replace("\x00", "")
            assert not val.startswith(("javascript:", "vbscript:", "data:text/html")), f"{k}={v!r} on <{tag}>"
            if k.lower() in ("href", "src", "xlink:href", "action", "formaction"):
                assert val.startswith(allowed_hrefs) or val.startswith("#"), f"{k}={v!r} on <{tag}>"


def test_html_is_inert(hostile_run: dict) -> None:
    for path in _report_files(hostile_run, "report.html"):
        html = path.read_text(encoding="utf-8")
        assert "\x00" not in html
        assert_html_inert(html)
        # The embedded JSON must parse as JSON and cannot close its <script>.
        data = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S)
        assert data and "</" not in data.group(1) and "<!--" not in data.group(1)
        json.loads(data.group(1))


def test_html_has_no_control_or_bidi_characters(hostile_run: dict) -> None:
    for path in _report_files(hostile_run, "report.html"):
        text = path.read_text(encoding="utf-8")
        assert not _TERMINAL_BAD.search(text), (path.parent.name[:20], repr(_TERMINAL_BAD.search(text)))


def test_markdown_is_inert(hostile_run: dict) -> None:
    markdown_it = pytest.importorskip("markdown_it")
    # CommonMark with raw HTML on (as GitHub and most viewers render it) plus GFM tables.
    md = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table")
    for path in _report_files(hostile_run, "report.md"):
        text = path.read_text(encoding="utf-8")
        assert "\x1b" not in text and "\x00" not in text and "\u202e" not in text and "\x07" not in text
        html = md.render(text)
        p = _Tags()
        p.feed(html)
        assert not p.scripts
        assert not [t for t, _a in p.tags if t in ("img", "iframe", "svg", "object", "embed")]
        for tag, attrs in p.tags:
            for k, v in attrs:
                assert not k.lower().startswith("on"), (tag, k)
                if k in ("href", "src"):
                    assert (v or "").startswith(("https://", "#")) and "evil" not in (v or ""), (tag, k, v)


def test_checkers_catch_injected_markup(hostile_run: dict) -> None:
    """The inertness checks above are not vacuous: each injection below makes them fail."""
    html = (hostile_run["dirs"][0] / "report.html").read_text(encoding="utf-8")
    assert_html_inert(html)
    for evil in (
        "<img src=x onerror=alert(1)>",
        "<script>alert(1)</script>",
        '<a href="javascript:alert(1)">x</a>',
        '<a href="https://evil.example/">x</a>',
        "<svg onload=alert(1)></svg>",
    ):
        with pytest.raises(AssertionError):
            assert_html_inert(html.replace("</body>", evil + "</body>"))
    md = (hostile_run["dirs"][0] / "report.md").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert\\(1\\)" in md  # the hostile text is in there, escaped


def _looks_numeric(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def test_csv_cells_never_start_a_formula(hostile_run: dict) -> None:
    for path in _report_files(hostile_run, "flows.csv"):
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        assert len(rows) > 5
        width = len(rows[0])
        for row in rows:
            assert len(row) == width  # no captured CR/LF started a new row
            for cell in row:
                if cell and not _looks_numeric(cell):
                    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell[:80]


_TERMINAL_BAD = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def test_terminal_output_has_no_control_sequences(hostile_run: dict) -> None:
    proc = hostile_run["proc"]
    for stream in (proc.stdout, proc.stderr):
        text = stream.decode("utf-8", errors="strict")
        assert not _TERMINAL_BAD.search(text), repr(_TERMINAL_BAD.search(text))
    assert b"evil" in proc.stdout or b"script" in proc.stdout  # the summary did show captured names


def test_outputs_stay_bounded_for_100kb_values(hostile_run: dict) -> None:
    for d in hostile_run["dirs"]:
        for p in d.iterdir():
            assert p.stat().st_size < 5_000_000, (p.name, p.stat().st_size)
    assert len(hostile_run["proc"].stdout) < 200_000


def test_sdes_key_never_written(hostile_run: dict) -> None:
    assert SDES_KEY.encode() not in hostile_run["proc"].stdout + hostile_run["proc"].stderr
    for d in hostile_run["dirs"]:
        for p in d.iterdir():
            assert SDES_KEY.encode() not in p.read_bytes(), p.name
