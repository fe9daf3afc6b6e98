"""A newcomer's first hour (issue 15): what a new user meets on the command line, in the terminal
summary, the API and the README, checked through real subprocesses on real captures.

All CLI runs start together from one module fixture (`python -m analyzer ...`, as a user starts
it), so the file costs a few interpreter start-ups in parallel rather than one after another.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from analyzer.errors import OptionError
from tests.conftest import REAL, REPO
from tests.terminal import run_on_pty

DEMO = REPO / "captures" / "demo-zoom-call.pcap"
ZOOM = REAL / "zoom.pcap"
HAVE_REAL = ZOOM.exists()
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "analyzer", *args],
        capture_output=True, text=True, timeout=240, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
    )


def one_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("newcomer")
    (d / "a-file").write_text("not a folder\n")
    (d / "int.toml").write_text("[default]\nallow = 5\n")
    (d / "xx.toml").write_text('[default]\nallow = ["US"]\n[roles.media]\nallow = ["XX"]\n')
    data = DEMO.read_bytes()
    (d / "cut.pcap").write_bytes(data[: len(data) // 2 + 7])  # the last record incomplete
    with gzip.open(d / "teams-call.pcap.gz", "wb") as fh:
        fh.write(data)
    (d / "empty.pcap").write_bytes(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))
    return d


@pytest.fixture(scope="module")
def runs(scratch: Path) -> dict[str, subprocess.CompletedProcess]:
    d = scratch
    cases: dict[str, tuple[str, ...]] = {
        "out_is_file": ("analyze", str(DEMO), "-o", str(d / "a-file")),
        "out_under_file": ("analyze", str(DEMO), "-o", str(d / "a-file" / "sub")),
        "flows_no_folder": ("flows", str(DEMO), "-o", str(d / "nope" / "x.csv")),
        "flows_out_folder": ("flows", str(DEMO), "-o", str(d)),
        "io_error": ("flows", "/proc/self/mem"),
        "policy_int": ("analyze", str(DEMO), "--policy", str(d / "int.toml"), "-o", str(d / "r1")),
        "policy_xx": ("analyze", str(DEMO), "--policy", str(d / "xx.toml"), "-o", str(d / "r1")),
        "allow_xx": ("analyze", str(DEMO), "--allow", "US,XX", "-o", str(d / "r1")),
        "allow_alias": ("analyze", str(DEMO), "--allow", "USA,uk", "--format", "json", "-o", str(d / "alias")),
        "geo_bad": ("geo", "not-an-ip", "1.1.1.1"),
        "geo_ok": ("geo", "1.1.1.1", "::1"),
        "bare": (),
        "verify_missing": ("verify", str(d / "missing.pcap")),
        "analyze_cut": ("analyze", str(d / "cut.pcap"), "--format", "json", "-o", str(d / "cut")),
        "flows_cut": ("flows", str(d / "cut.pcap"), "-o", str(d / "cut.csv")),
        "gz_name": ("analyze", str(d / "teams-call.pcap.gz"), "--format", "json", "-o", str(d / "gz")),
        "empty_native": ("flows", str(d / "empty.pcap")),
        "empty_scapy": ("flows", str(d / "empty.pcap"), "--engine", "scapy"),
        "demo_flows": ("flows", str(DEMO)),
        "demo_scapy": ("flows", str(DEMO), "--engine", "scapy"),
    }
    for cmd in ("analyze", "flows", "geo", "batch", "verify", "demo"):
        cases[f"help_{cmd}"] = (cmd, "--help")
    if shutil.which("tshark"):
        cases["empty_tshark"] = ("flows", str(d / "empty.pcap"), "--engine", "tshark")
        cases["demo_tshark"] = ("flows", str(DEMO), "--engine", "tshark")
    if HAVE_REAL:
        cases["zoom_flows"] = ("flows", str(ZOOM))
        if shutil.which("tshark"):
            cases["zoom_tshark"] = ("flows", str(ZOOM), "--engine", "tshark")
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(run, *args) for name, args in cases.items()}
        return {name: f.result() for name, f in futures.items()}


# ------------------------------------------------------------------ 2-7: exit codes and messages


@pytest.mark.parametrize(
    ("case", "names"),
    [
        ("out_is_file", "a-file"),
        ("out_under_file", "a-file"),
        ("flows_no_folder", "nope"),
        ("flows_out_folder", "newcomer"),
        ("io_error", "/proc/self/mem"),
        ("policy_int", "int.toml [default]"),
        ("policy_xx", "xx.toml [roles.media]"),
        ("allow_xx", "--allow US,XX"),
    ],
)
def test_user_errors_exit_2_with_one_line_naming_the_path_or_key(runs, case: str, names: str) -> None:
    proc = runs[case]
    assert proc.returncode == 2, (case, proc.stderr)
    line = one_line(proc)
    assert line.startswith("confscope: error: ") and names in line, line
    assert "internal error" not in line and "{" not in line


def test_unknown_iso_codes_refused_aliases_accepted(runs, scratch: Path) -> None:
    assert "'XX' is not an ISO 3166 country code" in runs["allow_xx"].stderr
    assert "'XX' is not an ISO 3166 country code" in runs["policy_xx"].stderr
    ok = runs["allow_alias"]
    assert ok.returncode == 1, ok.stderr  # the demo's zone controller is in China
    report = json.loads((scratch / "alias" / "demo-zoom-call" / "report.json").read_text())
    assert report["policy"]["allowed_countries"] == ["GB", "US"]


def test_geo_refuses_what_is_not_an_address(runs) -> None:
    bad = runs["geo_bad"]
    assert bad.returncode == 2 and bad.stdout == ""
    assert one_line(bad) == "confscope: error: not an IP address: not-an-ip"
    ok = runs["geo_ok"]
    assert ok.returncode == 0 and "1.1.1.1" in ok.stdout and "loopback" in ok.stdout


def test_bare_confscope_prints_usage_with_commands(runs) -> None:
    bare = runs["bare"]
    assert bare.returncode == 2 and "usage: confscope" in bare.stderr
    for cmd in ("analyze", "flows", "geo", "batch", "verify", "demo"):
        assert re.search(rf"^\s+{cmd}\s+\S", bare.stderr, re.M), cmd  # listed with its description


def test_one_message_style(runs) -> None:
    verify = runs["verify_missing"]
    assert verify.returncode == 2 and verify.stdout == ""
    assert one_line(verify).startswith("confscope: error: ") and "missing.pcap" in verify.stderr
    # A truncated capture warns on stderr the same way whichever command reads it.
    a, f = runs["analyze_cut"], runs["flows_cut"]
    assert a.returncode == 0 and f.returncode == 0, (a.stderr, f.stderr)
    warn = [ln for ln in a.stderr.splitlines() if "truncated" in ln and "warning" in ln]
    assert warn and warn == [ln for ln in f.stderr.splitlines() if "truncated" in ln and "warning" in ln]
    assert warn[0].startswith("confscope: warning: capture truncated")
    for proc in (a, f):
        for line in proc.stderr.splitlines():
            assert line.startswith(("confscope: warning: ", "confscope: note: ")), line
            assert "{" not in line and "(s)" not in line
            assert not re.search(r"\b1 packets\b", line)
    note = [ln for ln in f.stderr.splitlines() if "not in any flow" in ln]
    assert note and re.fullmatch(r"confscope: note: \d+ packets? not in any flow \(.+\)", note[0]), note


def test_help_describes_every_argument_and_default(runs) -> None:
    raw = {cmd: runs[f"help_{cmd}"].stdout for cmd in ("analyze", "flows", "geo", "batch", "verify", "demo")}
    text = {cmd: re.sub(r"\s+", " ", body) for cmd, body in raw.items()}
    assert all(runs[f"help_{c}"].returncode == 0 for c in text)
    analyze = text["analyze"]
    assert "(default: reports)" in analyze and "(default: json,md,html,csv,parquet)" in analyze
    assert "CAPTURE pcap or pcapng" in analyze and "CAPTURE pcap or pcapng" in text["flows"]
    assert "--progress {auto,always,never} progress bar" in analyze
    assert "(default: auto)" in analyze and "--anonymize KEY" in analyze
    assert "--workers N local worker processes" in text["batch"]
    assert "(default: standard output" in text["flows"] and "(default: native)" in text["flows"]
    assert "(default: table)" in text["geo"]
    # Every option and positional has a description: no line that is only an option name.
    for cmd, body in raw.items():
        section = body.split("\n\n", 1)[1]
        for line in section.splitlines():
            m = re.fullmatch(r"  (-\S.*|[A-Z][A-Z|.]*(?: \[.*\])?)", line)
            if m and "  " not in m.group(1).strip():
                nxt = section.splitlines()[section.splitlines().index(line) + 1]
                assert nxt.startswith(" " * 10), (cmd, line)  # the description is on the next line


def test_readme_documents_anonymize() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "--anonymize KEY" in readme and "--anonymize-servers" in readme


# ------------------------------------------------------------------ 14, 15: engines and names


def _header(proc: subprocess.CompletedProcess) -> list[str]:
    assert proc.returncode == 0, proc.stderr
    return next(csv.reader(io.StringIO(proc.stdout)))


def test_engines_give_the_same_columns_and_classification(runs) -> None:
    native = _header(runs["demo_flows"])
    assert {"app", "protocol", "roles", "hostname", "bytes_by_role"} <= set(native)
    engines = ["demo_scapy"] + (["demo_tshark"] if "demo_tshark" in runs else [])
    rows_native = {
        (r["client_ip"], r["client_port"], r["server_ip"], r["server_port"]): r
        for r in csv.DictReader(io.StringIO(runs["demo_flows"].stdout))
    }
    for name in engines:
        assert _header(runs[name]) == native, name
        matched = 0
        for r in csv.DictReader(io.StringIO(runs[name].stdout)):
            key = (r["client_ip"], r["client_port"], r["server_ip"], r["server_port"])
            if key in rows_native:
                matched += 1
                for col in ("app", "protocol", "roles", "hostname"):
                    assert r[col] == rows_native[key][col], (name, key, col)
        assert matched >= len(rows_native) - 2, name
    for name in ("empty_native", "empty_scapy", "empty_tshark"):
        if name in runs:
            assert _header(runs[name]) == native, name  # an empty capture gets the full header


@pytest.mark.skipif(not (HAVE_REAL and shutil.which("tshark")), reason="needs ../shared and tshark")
def test_tshark_engine_on_zoom_has_apps(runs) -> None:
    rows = list(csv.DictReader(io.StringIO(runs["zoom_tshark"].stdout)))
    native = list(csv.DictReader(io.StringIO(runs["zoom_flows"].stdout)))
    assert len(rows[0]) == len(native[0]) == 26
    assert sum(r["app"] == "zoom" for r in rows) == sum(r["app"] == "zoom" for r in native) > 10


def test_compressed_capture_report_folder_drops_extensions(runs, scratch: Path) -> None:
    from analyzer.report import capture_stem, report_dir

    proc = runs["gz_name"]
    assert proc.returncode == 0, proc.stderr
    assert (scratch / "gz" / "teams-call" / "report.json").is_file()
    assert "gz/teams-call/report.json" in proc.stdout
    assert capture_stem("teams.pcap.gz") == "teams" and capture_stem("a.PCAPNG") == "a"
    assert capture_stem("call.v2.pcap") == "call.v2" and capture_stem(".gz") == ".gz"
    assert report_dir("out", "x/teams.pcapng.xz", set()) == Path("out/teams")


# ------------------------------------------------------------------ 8-10: terminal summary


def _pty_run(args: list[str], columns: int) -> str:
    """Run the CLI on a pseudo-terminal `columns` wide (as a user's terminal) and return what it
    printed, escape sequences removed."""
    _code, out = run_on_pty(args, columns, timeout=240, term="xterm-256color")
    return ANSI.sub("", out.decode("utf-8", "replace")).replace("\r\n", "\n")


@pytest.mark.skipif(not HAVE_REAL, reason="needs ../shared/captures/real/zoom.pcap")
def test_terminal_summary_on_an_80_column_terminal(tmp_path: Path) -> None:
    out = _pty_run(["analyze", str(ZOOM), "--region", "north-america", "-o", str(tmp_path)], 80)
    report = json.loads((tmp_path / "zoom" / "report.json").read_text())
    lines = out.splitlines()
    assert lines and max(len(ln) for ln in lines) <= 80, max(lines, key=len)
    for k in report["key_exchange"]:  # never cut an address or a host name
        assert f"{k['server_ip']}:{k['server_port']}" in out and k["hostname"] in out
    for f in report["findings"]:
        assert f["code"] in out
    assert re.search(r"^vantage\s+IT( \(confirmed\))?, from the capture's public address 80\.180\.220\.239", out, re.M)
    assert re.search(r"^policy\s+--region north-america \(allowed: CA, MX, US\)", out, re.M)
    assert re.search(r"^apps\s+zoom \d+ flows", out, re.M)
    assert re.search(r"^local\s+12 flows, 2\.1 KiB to local addresses", out, re.M)
    assert "3.3 years" in out and "103924590" not in out
    assert re.search(rf"^{len(report['policy']['violations'])} policy violations$", out, re.M)


@pytest.mark.skipif(not HAVE_REAL, reason="needs ../shared/captures/real")
@pytest.mark.parametrize("width", [80, 100])
def test_summary_fits_a_narrow_console_without_cutting(width: int) -> None:
    from analyzer import analyze
    from analyzer.report import render_summary

    for name, kw in (("zoom.pcap", {"region": "eu"}), ("zoom_p2p.pcapng", {}), ("teams.pcap", {"allow": "US"})):
        report = analyze(REAL / name, **kw).report
        buf = io.StringIO()
        render_summary(report, Console(file=buf, width=width, force_terminal=False, highlight=False))
        out = buf.getvalue()
        assert max(len(ln) for ln in out.splitlines()) <= width, name
        assert "…" not in out, name  # rich's ellipsis: something was cut
        flat = re.sub(r"\s+", "", out)  # a value folded onto two lines is still all there
        for k in report["key_exchange"]:
            assert k["server_ip"] in out and (k["hostname"] or "") in flat, (name, k)
            assert all(word in out for word in (k["org"] or "").split()), (name, k["org"])
        for f in report["findings"]:
            assert f["code"] in out, (name, f["code"])
        if not kw:
            assert "no policy checked" in out  # findings such as GEO_DATA_AGE may still be there
            assert report["findings"] or "No findings (no policy was checked)." in out
            local = report["local"]
            assert re.search(rf"^local\s+{local['flows']} flows", out, re.M), out
            assert "not in the country table" in re.sub(r"\s+", " ", out)


@pytest.mark.skipif(not HAVE_REAL, reason="needs ../shared/captures/real/zoom.pcap")
def test_country_roles_and_policy_findings_tell_one_story() -> None:
    from analyzer import analyze
    from analyzer.report import common

    report = analyze(ZOOM, region="north-america").report
    flows = {f["flow_id"]: f for f in report["flows"]}
    countries = {c["country"]: c for c in report["countries"]}
    codes = {"KEY_EXCHANGE_OUTSIDE_POLICY": "key_exchange", "MEDIA_OUTSIDE_POLICY": "media",
             "SIGNALING_OUTSIDE_POLICY": "signaling"}
    checked = 0
    for f in report["findings"]:
        role = codes.get(f["code"])
        for fid in f["flow_ids"] if role else []:
            cc = flows[fid]["remote_country"]
            assert common.role_cell(countries[cc], role), (f["code"], fid, cc)  # never an empty cell
            checked += 1
    assert checked >= 10
    # The zone controllers' TLS channels deliver keys and are signaling too: their bytes count once,
    # as key exchange, and signaling shows as "shared" for the countries they are in (NL and DE).
    shared = sorted(cc for cc, c in countries.items() if common.role_cell(c, "signaling") == "shared")
    assert {"NL", "DE"} <= set(shared), shared
    for cc in shared:
        c = countries[cc]
        assert c["bytes_by_role"]["key_exchange"] > 0 and "signaling" not in c["bytes_by_role"]
        assert sum(c["bytes_by_role"].values()) == c["bytes"]
    from analyzer.report import to_html, to_markdown

    md = to_markdown(report)
    assert "| shared |" in md and "Each byte is counted once" in md
    page = to_html(report)
    assert 'id="shared-roles"' in page and all(f"{cc}: signaling" in page for cc in shared)


# ------------------------------------------------------------------ 11: time


@pytest.mark.skipif(not HAVE_REAL, reason="needs ../shared/captures/real")
def test_time_gaps_and_impossible_timestamps_are_findings() -> None:
    from analyzer import analyze
    from analyzer.common.words import capture_time, human_duration

    zoom = analyze(ZOOM).report
    segs = zoom["capture"]["time_segments"]
    assert [s["flows"] for s in segs] == [33, 1] and not any(s["implausible"] for s in segs)
    gap = next(f for f in zoom["findings"] if f["code"] == "TIME_GAPS")
    assert gap["flow_ids"] == [33] and "3.3 years" in gap["detail"] and gap["confidence"] == "high"
    assert capture_time(zoom["capture"]) == "2 min 41 s active in 2 periods over 3.3 years"
    assert zoom["capture"]["active_s"] < 200 < zoom["capture"]["duration_s"]
    discord = analyze(REAL / "discord.pcap").report
    odd = next(f for f in discord["findings"] if f["code"] == "TIMESTAMP_OUTLIERS")
    assert odd["flow_ids"] == [0] and "1970-01-01" in odd["detail"]
    assert "impossible timestamps left out" in capture_time(discord["capture"])
    teams = analyze(REAL / "teams.pcap").report  # one period: no finding, plain duration
    assert not [f for f in teams["findings"] if f["code"].startswith("TIME")]
    assert capture_time(teams["capture"]) == "25.6 s"
    assert [human_duration(x) for x in (0.04, 6.51, 61, 3600, 7322, 90000, 3 * 86400, 2e8)] == [
        "0.0 s", "6.5 s", "1 min 1 s", "1 h", "2 h 2 min", "1 day", "3 days", "6.3 years"
    ]


# ------------------------------------------------------------------ 16: the Python API


def test_session_repr_vantage_datetimes_dtypes_and_parquet_map(tmp_path: Path) -> None:
    import pandas as pd

    from analyzer import analyze

    s = analyze(DEMO, region="north-america")
    text = repr(s)
    assert len(text) < 300 and text.startswith("Session(capture='demo-zoom-call.pcap'")
    assert f"flows={len(s.flows)}" in text and "vantage='US'" in text and "violations=2" in text
    html = s._repr_html_()
    assert html.startswith("<div>") and "KEY_EXCHANGE_OUTSIDE_POLICY" in html and len(html) < 5000
    assert s.vantage == s.report["vantage"] and s.vantage["country"] == "US"
    first = s.flows["first_time"]
    assert str(first.dt.tz) == "UTC"
    assert (first.astype("int64") == s.flows["first_ts_ns"]).all()
    assert list(s.flows.columns).index("first_time") == list(s.flows.columns).index("first_ts_ns") + 1
    text_cols = [c for c in s.flows.columns if s.flows[c].dropna().map(type).eq(str).all() and s.flows[c].notna().any()]
    assert {"transport", "app", "protocol", "client_ip", "hostname"} <= set(text_cols)
    assert len({str(s.flows[c].dtype) for c in text_cols}) == 1, {c: str(s.flows[c].dtype) for c in text_cols}
    written = s.write(tmp_path / "demo", ["parquet", "csv"])
    table = pq.read_table(written["parquet"])
    t = table.schema.field("bytes_by_role").type
    assert pa.types.is_map(t) and t.item_type == pa.int64()
    assert pa.types.is_timestamp(table.schema.field("first_time").type)
    back = table.to_pandas()
    assert dict(back["bytes_by_role"].iloc[0]) == s.flows["bytes_by_role"].iloc[0]
    assert isinstance(back["first_time"].iloc[0], pd.Timestamp)


def test_api_errors_speak_of_parameters_and_cli_of_flags() -> None:
    from analyzer import analyze

    for kw, api, flag in (
        ({"allow": "XX"}, "allow='XX': ", "--allow XX: "),
        ({"vantage": "Mars"}, "vantage='Mars': ", "--vantage Mars: "),
        ({"region": "moon"}, "region='moon': ", "--region moon: "),
        ({"geoip": "/nonexistent.mmdb"}, "geoip='/nonexistent.mmdb': ", "--geoip /nonexistent.mmdb: "),
    ):
        with pytest.raises(OptionError) as info:
            analyze(DEMO, **kw)
        assert str(info.value).startswith(api) and "--" not in str(info.value), str(info.value)
        assert info.value.cli_message().startswith(flag)


# ------------------------------------------------------------------ 17: the README's flows example


def test_readme_flows_example_reads_csv_and_matches_a_real_run() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split("`confscope flows` prints the flow table", 1)[1].split("```", 2)[1]
    command, *shown = block.strip("\n").splitlines()
    assert command.startswith("$ confscope flows ") and "| cut" not in command
    args = command.split()[2:]
    proc = run(*args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.replace("\r\n", "\n").splitlines() == shown  # the README shows a real run
    # Read as CSV, the roles cell holding a comma stays one value.
    rows = list(csv.DictReader(io.StringIO("\n".join(shown))))
    assert len(rows) == len(shown) - 1 and all(len(r) == len(rows[0]) and None not in r for r in rows)
    assert json.loads(next(r for r in rows if r["flow_id"] == "4")["roles"]) == ["signaling", "key_exchange"]


def test_time_segments_on_synthetic_flows() -> None:
    import pandas as pd

    from analyzer.session.timing import GAP_S, time_segments, timing_findings

    base = 1.7e9
    flows = pd.DataFrame(
        {
            "flow_id": [0, 1, 2, 3, 4],
            # flow 1 spans the quiet hour of flow 2's start: one period; flow 3 is 2 h later
            "first_ts": [base, base + 10, base + 3000, base + 3000 + 2 * GAP_S, 42.0],
            "last_ts": [base + 5, base + 2000, base + 3100, base + 3001 + 2 * GAP_S, 43.0],
            "packets": [1, 2, 3, 4, 5],
        }
    )
    segs = time_segments(flows)
    assert [(s["flow_ids"], s["packets"], s["implausible"]) for s in segs] == [
        ([4], 5, True), ([0, 1, 2], 6, False), ([3], 4, False)
    ]
    assert segs[1]["duration_s"] == 3100
    codes = {f["code"]: f for f in timing_findings(segs)}
    assert codes["TIMESTAMP_OUTLIERS"]["flow_ids"] == [4]
    assert codes["TIME_GAPS"]["flow_ids"] == [3] and "a gap of 1 h 58 min" in codes["TIME_GAPS"]["detail"]
    many = pd.DataFrame({"flow_id": range(9), "first_ts": [base + i * 2 * GAP_S for i in range(9)],
                         "last_ts": [base + i * 2 * GAP_S + 1 for i in range(9)], "packets": [1] * 9})
    detail = timing_findings(time_segments(many))[0]["detail"]
    assert "9 periods" in detail and "and 4 more periods" in detail
    assert time_segments(flows.iloc[:0]) == []
