"""`--anonymize KEY` (issue 7, section 4): the Crypto-PAn construction, its prefix-preserving
property, and anonymize_session() on real analyses of generated captures: no local address,
STUN USERNAME or key material survives in any output, while servers and countries stay right."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.api import analyze
from analyzer.scan.flows import community_id
from analyzer.session.anonymize import (
    PrefixPreservingAnonymizer,
    _Scrubber,
    anonymize_session,
    derive_keys,
    find_key_material,
    resolve_key,
)
from tests.test_hostile import (
    LOCAL,
    LOCAL_MAC,
    MAPPED,
    ROUTER,
    SDES_KEY,
    SIP_SERVER,
    STUN_SERVER,
    STUN_USERNAME,
    TLS_SERVERS,
    build_hostile_packets,
)

KEY = "correct horse battery staple"
LOCAL6 = ("2001:db8:1::9", "2001:db8:1::a")
REMOTE6 = "2a00:1450:4001:800::200e"  # a public (Google) IPv6 server: kept


# --- the construction -------------------------------------------------------------------------


def _reference(key: str, value: int, width: int) -> int:
    """Crypto-PAn written straight from its description, bit by bit on strings."""
    keys = derive_keys(key)
    pad = format(int.from_bytes(keys.pad, "big"), "0128b")
    bits = format(value, f"0{width}b")
    out = ""
    for i in range(width):
        block = int(bits[:i] + pad[i:], 2).to_bytes(16, "big")
        enc = Cipher(algorithms.AES(keys.aes), modes.ECB()).encryptor()
        first_bit = (enc.update(block) + enc.finalize())[0] >> 7
        out += str(int(bits[i]) ^ first_bit)
    return int(out, 2)


def _common_prefix(a: int, b: int, width: int) -> int:
    x = a ^ b
    return width if x == 0 else width - x.bit_length()


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_matches_reference_ipv4(value: int) -> None:
    assert PrefixPreservingAnonymizer(KEY).map_int(value, 32) == _reference(KEY, value, 32)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**128 - 1))
def test_matches_reference_ipv6(value: int) -> None:
    assert PrefixPreservingAnonymizer(KEY).map_int(value, 128) == _reference(KEY, value, 128)


_ANON = PrefixPreservingAnonymizer(KEY)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_prefix_preserving_ipv4(a: int, b: int) -> None:
    ma, mb = _ANON.map_int(a, 32), _ANON.map_int(b, 32)
    assert _common_prefix(ma, mb, 32) == _common_prefix(a, b, 32)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**128 - 1), st.integers(0, 128), st.integers(0, 2**128 - 1))
def test_prefix_preserving_ipv6(a: int, k: int, noise: int) -> None:
    # Random pairs almost never share long prefixes; derive b from a to cover every length.
    keep = ((1 << 128) - 1) ^ ((1 << (128 - k)) - 1)
    b = (a & keep) | (noise & ~keep & ((1 << 128) - 1))
    ma, mb = _ANON.map_int(a, 128), _ANON.map_int(b, 128)
    assert _common_prefix(ma, mb, 128) == _common_prefix(a, b, 128)


def test_stable_across_instances_and_pinned() -> None:
    # Pinned values: a change here breaks comparability with reports anonymised earlier.
    anon = PrefixPreservingAnonymizer("confscope test key")
    assert anon.anonymize_ip("192.0.2.1") == "83.96.114.126"
    assert anon.anonymize_ip("2001:db8::1") == "d30e:4e80:ff:ffff:f8c6:380:7ef8:302"
    assert anon.anonymize_ip("::ffff:192.0.2.1") == "::ffff:83.96.114.126"
    again = PrefixPreservingAnonymizer("confscope test key")
    for ip in ("10.1.2.3", "fe80::1", "203.0.113.77"):
        assert again.anonymize_ip(ip) == anon.anonymize_ip(ip) != ip


def test_different_keys_give_different_outputs() -> None:
    a, b = PrefixPreservingAnonymizer("key one"), PrefixPreservingAnonymizer("key two")
    ips = [f"10.0.{i}.{i * 7 % 256}" for i in range(20)] + ["2001:db8::1", "fd00::5"]
    assert sum(a.anonymize_ip(ip) != b.anonymize_ip(ip) for ip in ips) == len(ips)
    assert len({a.anonymize_ip(ip) for ip in ips}) == len(ips)  # a permutation: no collisions


def test_usernames_and_macs() -> None:
    anon = PrefixPreservingAnonymizer(KEY)
    u = anon.anonymize_username("Ab12Cd34:Ef56Gh78")
    assert re.fullmatch(r"u[0-9a-f]{10}:u[0-9a-f]{10}", u)
    # The two directions of one ICE pair keep matching parts.
    assert anon.anonymize_username("Ef56Gh78:Ab12Cd34") == ":".join(reversed(u.split(":")))
    assert PrefixPreservingAnonymizer("other").anonymize_username("Ab12Cd34:Ef56Gh78") != u
    mac = anon.anonymize_mac("00:1A:2b:3c:4d:5e")
    assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", mac) and int(mac[:2], 16) & 0x03 == 0x02
    assert anon.anonymize_mac("00-1a-2b-3c-4d-5e", "-") == mac.replace(":", "-")


def test_text_mapping_inside_free_text() -> None:
    scrub = _Scrubber(PrefixPreservingAnonymizer(KEY), keep={"8.8.8.8"}, passphrase=KEY)
    anon = scrub.anon
    line = f"public-ip:192.0.2.7, peer [2001:db8::9]:443 via 8.8.8.8 mac 00:1a:2b:3c:4d:5e key {KEY}."
    out = scrub.text(line)
    assert f"public-ip:{anon.anonymize_ip('192.0.2.7')}," in out
    assert f"[{anon.anonymize_ip('2001:db8::9')}]:443" in out
    assert "8.8.8.8" in out and "00:1a:2b:3c:4d:5e" not in out and KEY not in out
    mapped = scrub.text("::ffff:192.0.2.7")
    assert mapped == anon.anonymize_ip("::ffff:192.0.2.7")  # the IPv4 tail is not mapped twice
    for keep in ("224.0.0.251", "ff02::fb", "127.0.0.1", "255.255.255.255", "TLS 1.2", "12:30:45", "v1.2.3"):
        assert scrub.text(keep) == keep
    assert scrub.text("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:QUJD|2^20") == (
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:REDACTED|2^20"
    )


def test_resolve_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFSCOPE_TEST_KEY", "from-env")
    assert resolve_key("env:CONFSCOPE_TEST_KEY") == "from-env"
    f = tmp_path / "key.txt"
    f.write_text("from-file\nsecond line\n")
    assert resolve_key(f"file:{f}") == "from-file"
    assert resolve_key("plain passphrase") == "plain passphrase"
    for bad in ("", "env:CONFSCOPE_NO_SUCH_VAR", f"file:{tmp_path / 'missing'}"):
        with pytest.raises(ValueError):
            resolve_key(bad)
    with pytest.raises(ValueError):
        derive_keys("")


# --- whole sessions -----------------------------------------------------------------------------


def _v6_packets(t0: float) -> list:
    from scapy.all import UDP, Ether, IPv6, Raw

    out = []
    for k, src in enumerate(LOCAL6):
        for j in range(3):
            p = (
                Ether(src="02:11:22:33:44:55", dst="02:aa:bb:cc:dd:ee")
                / IPv6(src=src, dst=REMOTE6)
                / UDP(sport=50500 + k, dport=443)
                / Raw(bytes([0x40 + j]) * 80)
            )
            p.time = t0 + k + j * 0.01
            out.append(p)
            r = (
                Ether(src="02:aa:bb:cc:dd:ee", dst="02:11:22:33:44:55")
                / IPv6(src=REMOTE6, dst=src)
                / UDP(sport=443, dport=50500 + k)
                / Raw(bytes([0x50 + j]) * 80)
            )
            r.time = t0 + k + j * 0.01 + 0.005
            out.append(r)
    return out


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from scapy.all import wrpcap

    packets = build_hostile_packets(long_value=2000)
    packets += _v6_packets(float(packets[-1].time) + 1)
    path = tmp_path_factory.mktemp("anon") / "anon.pcap"
    wrpcap(str(path), packets, linktype=1)
    return path


@pytest.fixture(scope="module")
def plain(capture: Path):
    return analyze(capture)


@pytest.fixture(scope="module")
def anon(plain):
    return anonymize_session(plain, KEY)


SECRETS = (LOCAL, ROUTER, MAPPED, *LOCAL6, "Ab12Cd34", "Ef56Gh78", KEY, SDES_KEY, LOCAL_MAC)


def _all_text(session) -> str:
    return "\n".join([json.dumps(session.report, default=str), session.flows.to_csv(), session.streams.to_csv()])


def test_plain_session_holds_what_anonymisation_must_remove(plain) -> None:
    """Non-vacuity: without anonymisation the local addresses and usernames are there."""
    text = _all_text(plain)
    for s in (LOCAL, ROUTER, MAPPED, *LOCAL6, "Ab12Cd34"):
        assert s in text, s


def test_no_local_identifier_survives(anon, tmp_path: Path) -> None:
    text = _all_text(anon)
    for s in SECRETS:
        assert s not in text, s
    written = anon.write(tmp_path)
    assert set(written) == {"json", "md", "html", "csv", "parquet", "streams_parquet", "stream_seconds_parquet"}
    for fmt, path in written.items():
        data = path.read_bytes()
        for s in SECRETS:
            assert s.encode() not in data, (fmt, s)
    assert find_key_material(anon.report) == [] and find_key_material(anon.flows) == []


def test_servers_and_geography_stay(plain, anon) -> None:
    text = json.dumps(anon.report, default=str)
    for server in (TLS_SERVERS[0], STUN_SERVER, SIP_SERVER, REMOTE6):
        assert server in text, server
    assert anon.report["countries"] == plain.report["countries"]
    assert anon.report["apps"] == plain.report["apps"]
    assert [k["country"] for k in anon.report["key_exchange"]] == [k["country"] for k in plain.report["key_exchange"]]
    for key in ("country", "latitude", "longitude"):
        assert anon.report["vantage"][key] == plain.report["vantage"][key]
    assert anon.report["vantage"]["public_ips"] == [PrefixPreservingAnonymizer(KEY).anonymize_ip(MAPPED)]
    assert anon.report["privacy"]["anonymized"] is True and anon.report["privacy"]["scope"]
    assert "privacy" not in plain.report and plain.flows["client_ip"].eq(LOCAL).any()  # input untouched


def test_consistent_prefix_preserving_mapping(anon) -> None:
    a = PrefixPreservingAnonymizer(KEY)
    local, router = a.anonymize_ip(LOCAL), a.anonymize_ip(ROUTER)
    assert set(anon.report["vantage"]["local_ips"]) >= {local}
    ends = set(anon.flows["client_ip"]) | set(anon.flows["server_ip"])
    assert {local, router, *(a.anonymize_ip(ip) for ip in LOCAL6)} <= ends
    n4 = _common_prefix(int(ipaddress.ip_address(LOCAL)), int(ipaddress.ip_address(ROUTER)), 32)
    m4 = _common_prefix(int(ipaddress.ip_address(local)), int(ipaddress.ip_address(router)), 32)
    assert n4 == m4 == 28
    v6 = [int(ipaddress.ip_address(a.anonymize_ip(ip))) for ip in LOCAL6]
    assert _common_prefix(*v6, 128) == _common_prefix(*(int(ipaddress.ip_address(ip)) for ip in LOCAL6), 128)
    mapped = [ip for v in anon.flows["stun_mapped"].dropna() for ip, _port in v]
    assert mapped and set(mapped) == {a.anonymize_ip(MAPPED)}


def test_usernames_pseudonymised(anon) -> None:
    names = {u for v in anon.flows["stun_usernames"].dropna() for u in v}
    assert names == {PrefixPreservingAnonymizer(KEY).anonymize_username(STUN_USERNAME)}


def test_flow_ids_recomputed(plain, anon) -> None:
    udp = anon.flows["transport"].isin(["udp", "tcp"])
    assert udp.all()
    for _, r in anon.flows.iterrows():
        proto = 6 if r["transport"] == "tcp" else 17
        expected = community_id(r["client_ip"], r["server_ip"], proto, int(r["client_port"]), int(r["server_port"]))
        assert r["community_id"] == expected
    assert not set(anon.flows["community_id"]) & set(plain.flows["community_id"])
    assert not set(anon.flows["flow_key"].tolist()) & set(plain.flows["flow_key"].tolist())
    assert anon.flows["flow_key"].is_unique
    by_id = {r["flow_id"]: r["community_id"] for r in anon.report["flows"]}
    assert by_id == dict(zip(anon.flows["flow_id"], anon.flows["community_id"], strict=True))


def test_stable_and_keyed(plain, anon) -> None:
    assert json.dumps(anonymize_session(plain, KEY).report, default=str) == json.dumps(anon.report, default=str)
    other = anonymize_session(plain, "another key")
    assert other.report["vantage"]["local_ips"] != anon.report["vantage"]["local_ips"]
    assert other.report["countries"] == anon.report["countries"]


def test_anonymize_servers(plain) -> None:
    full = anonymize_session(plain, KEY, anonymize_servers=True)
    text = _all_text(full)
    for ip in (*SECRETS, TLS_SERVERS[0], STUN_SERVER, SIP_SERVER, REMOTE6):
        assert ip not in text, ip
    assert full.report["countries"] == plain.report["countries"]
    assert full.report["privacy"]["servers"] == "pseudonymised"


def test_sdes_key_material_never_in_session(plain) -> None:
    assert find_key_material(plain.report) == [] and find_key_material(plain.flows) == []
    assert SDES_KEY not in _all_text(plain)
    planted = {"x": ["a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + SDES_KEY]}
    assert find_key_material(planted) == [".x[0]"]  # the check itself can fail


def test_streams_keep_joining_flows(tmp_path: Path) -> None:
    """With RTP streams (the demo call): stream flow_keys follow the flows' re-keyed flow_key."""
    from analyzer.capture.demo import write_demo_capture

    s = analyze(write_demo_capture(tmp_path / "demo.pcap"), region="north-america")
    a = anonymize_session(s, KEY)
    assert not a.streams.empty
    keys = dict(zip(a.flows["flow_id"], a.flows["flow_key"], strict=True))
    assert all(keys[fid] == fk for fid, fk in zip(a.streams["flow_id"], a.streams["flow_key"], strict=True))
    assert [f["code"] for f in a.report["findings"]] == [f["code"] for f in s.report["findings"]]
    assert a.exit_code == s.exit_code
    assert isinstance(a.flows, pd.DataFrame) and "192.168.1.23" not in _all_text(a)


def test_cli_anonymize_option(capture: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`confscope analyze --anonymize env:NAME` end to end (skips until the option is wired)."""
    from analyzer.cli.main import build_parser, main

    try:
        build_parser().parse_args(["analyze", str(capture), "--anonymize", "k"])
    except SystemExit:
        pytest.skip("confscope analyze has no --anonymize option yet")
    monkeypatch.setenv("CONFSCOPE_TEST_KEY", KEY)
    rc = main(["analyze", str(capture), "-o", str(tmp_path), "--anonymize", "env:CONFSCOPE_TEST_KEY"])
    assert rc in (0, 1)
    report = json.loads((tmp_path / "anon" / "report.json").read_text(encoding="utf-8"))
    assert report["privacy"]["anonymized"] is True
    for path in (tmp_path / "anon").iterdir():
        data = path.read_bytes()
        for s in SECRETS:
            assert s.encode() not in data, (path.name, s)


@pytest.mark.parametrize("name", ["stun.pcap", "princeton-test3.pcap", "teams.pcap", "zoom_p2p.pcapng"])
def test_real_captures_leak_no_local_address(name: str) -> None:
    from tests.conftest import real_capture

    plain = analyze(real_capture(name))
    mine = set(plain.report["vantage"]["local_ips"]) | set(plain.report["vantage"]["public_ips"])
    mine -= {"127.0.0.1", "::1", "0.0.0.0", "::"}  # well-known, deliberately kept
    assert mine
    anon = anonymize_session(plain, KEY)
    text = _all_text(anon)
    assert [ip for ip in mine if ip in text] == []
    assert anon.report["countries"] == plain.report["countries"]
    assert anon.report["vantage"]["country"] == plain.report["vantage"]["country"]
