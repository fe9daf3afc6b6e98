"""GeoResolver with real (small) MaxMind-format databases built by mmdb-writer, and the embedded data.

The user databases below deliberately contradict the embedded data on real public prefixes
(Zoom's 162.255.37.0/24 is US in the embedded data; the test City DB says NL), so precedence and
the disagreement flag are visible. Documentation and private ranges are also put into the user DB
to show they are never looked up.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

import pytest

mmdb_writer = pytest.importorskip("mmdb_writer")
netaddr = pytest.importorskip("netaddr")

from analyzer.errors import GeoDatabaseError  # noqa: E402
from analyzer.geo.databases import (  # noqa: E402
    adapt_flat_record,
    detect_kind,
    open_database,
    user_database_paths,
)
from analyzer.geo.datafiles import manifest  # noqa: E402
from analyzer.geo.resolver import GeoResolver  # noqa: E402
from analyzer.geo.scopes import address_scope  # noqa: E402

MMDBWriter, MmdbU32, MmdbF64 = mmdb_writer.MMDBWriter, mmdb_writer.MmdbU32, mmdb_writer.MmdbF64
IPSet = netaddr.IPSet


def build_city(path: Path) -> Path:
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="Test-GeoIP2-City",
                   languages=["en"], description={"en": "confscope test"})
    w.insert_network(IPSet(["162.255.37.0/24"]), {
        "country": {"iso_code": "NL", "names": {"en": "Netherlands"}},
        "registered_country": {"iso_code": "US"},
        "city": {"names": {"en": "Amsterdam"}},
        "location": {"latitude": MmdbF64(52.37), "longitude": MmdbF64(4.89), "accuracy_radius": 100},
    })
    w.insert_network(IPSet(["109.244.194.0/24"]), {
        "country": {"iso_code": "CN"},
        "location": {"latitude": MmdbF64(39.9), "longitude": MmdbF64(116.4), "accuracy_radius": 50},
    })
    w.insert_network(IPSet(["2a03:2880:f003::/48"]), {"country": {"iso_code": "US"}})
    # Special ranges a careless database might "locate": they must never be used.
    w.insert_network(IPSet(["192.0.2.0/24", "10.0.0.0/8"]), {"country": {"iso_code": "NL"}})
    w.to_db_file(str(path))
    return path


def build_country(path: Path) -> Path:
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="Test-GeoLite2-Country")
    w.insert_network(IPSet(["162.255.37.0/24"]), {"country": {"iso_code": "FR"}})
    w.insert_network(IPSet(["109.244.194.0/24"]), {"country": {"iso_code": "CN"}})
    w.insert_network(IPSet(["5.0.0.0/16"]), {"country": {"iso_code": "EU"}})  # pseudo code
    w.to_db_file(str(path))
    return path


def build_asn(path: Path) -> Path:
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="Test-GeoLite2-ASN")
    w.insert_network(IPSet(["162.255.37.0/24"]), {
        "autonomous_system_number": MmdbU32(64496), "autonomous_system_organization": "Example AS"})
    w.to_db_file(str(path))
    return path


def build_flat(path: Path) -> Path:
    """ip-location-db / IPinfo style: flat records that geoip2's typed methods cannot read."""
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="country_asn ipvAll")
    w.insert_network(IPSet(["1.0.0.0/24"]), {"country_code": "SE"})
    w.insert_network(IPSet(["1.1.1.0/24"]), {"country": "JP", "asn": "AS64500", "as_name": "Flat Org"})
    w.to_db_file(str(path))
    return path


@pytest.fixture(scope="session")
def geo_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment with a private cache dir and no CONFSCOPE_GEOIP from the caller's shell."""
    return {"CONFSCOPE_CACHE": str(tmp_path_factory.mktemp("cache"))}


@pytest.fixture(scope="session")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("mmdb")
    return {
        "city": build_city(d / "Test-City.mmdb"),
        "country": build_country(d / "Test-Country.mmdb"),
        "asn": build_asn(d / "Test-ASN.mmdb"),
        "flat": build_flat(d / "flat.mmdb"),
    }


@pytest.fixture(scope="session")
def embedded(geo_env: dict[str, str]) -> GeoResolver:
    return GeoResolver(search_default_dirs=False, env=geo_env)


def resolver(paths: list[Path], geo_env: dict[str, str], **kw: object) -> GeoResolver:
    return GeoResolver(user_paths=[str(p) for p in paths], search_default_dirs=False, env=geo_env, **kw)


# --- kind detection and flat records -------------------------------------------------------------

@pytest.mark.parametrize(("db_type", "kind"), [
    ("GeoIP2-City", "City"), ("GeoLite2-City", "City"), ("DBIP-City-Lite", "City"),
    ("GeoLite2-Country", "Country"), ("GeoLite2-ASN", "ASN"),
    ("DBIP-ASN-Lite (compat=GeoLite2-ASN)", "ASN"), ("GeoIP2-ISP", "ISP"),
    ("GeoIP2-Enterprise", "Enterprise"), ("country ipvAll", "flat"), ("city ipv4", "flat"),
    ("ipinfo standard_location.mmdb", "flat"),
])
def test_detect_kind_from_database_type(db_type: str, kind: str) -> None:
    assert detect_kind(db_type) == kind


def test_open_database_detects_kinds(dbs: dict[str, Path]) -> None:
    kinds = {name: open_database(p).kind for name, p in dbs.items()}
    assert kinds == {"city": "City", "country": "Country", "asn": "ASN", "flat": "flat"}


def test_flat_record_layouts() -> None:
    a = adapt_flat_record({"country_code": "us", "latitude": 37.7, "longitude": -122.4})
    assert (a.country, a.latitude, a.longitude) == ("US", 37.7, -122.4)
    b = adapt_flat_record({"country": "JP", "asn": "AS15169", "as_name": "Google LLC"})
    assert (b.country, b.asn, b.org) == ("JP", 15169, "Google LLC")
    # Hostile or broken records degrade to "no answer", never an exception.
    assert adapt_flat_record(["not", "a", "map"]).country is None
    c = adapt_flat_record({"country_code": "EU", "asn": "ASx", "latitude": 999.0})
    assert (c.country, c.asn, c.latitude) == (None, None, None)


# --- user databases: precedence, disagreement, flat layouts --------------------------------------

def test_user_city_takes_precedence_and_flags_disagreement(
    dbs: dict[str, Path], geo_env: dict[str, str],
) -> None:
    r = resolver([dbs["city"]], geo_env).lookup("162.255.37.14")
    assert r.country == "NL"  # user City DB, not the embedded US
    assert (r.latitude, r.longitude, r.accuracy_radius_km) == (52.37, 4.89, 100)
    assert r.disagreement is True
    assert ("embedded-country", "US") in r.alternatives
    assert "country=Test-City.mmdb" in r.sources
    assert "location=Test-City.mmdb" in r.sources
    assert r.registered_country == "US"  # iptocc, not the located country
    assert (r.asn, r.org) == (30103, "Zoom Video Communications, Inc")  # embedded ASN fills the gap
    assert "asn=embedded-asn" in r.sources


def test_user_asn_takes_precedence(dbs: dict[str, Path], geo_env: dict[str, str]) -> None:
    r = resolver([dbs["city"], dbs["asn"]], geo_env).lookup("162.255.37.14")
    assert (r.asn, r.org) == (64496, "Example AS")
    assert "asn=Test-ASN.mmdb" in r.sources


def test_agreeing_sources_are_not_a_disagreement(dbs: dict[str, Path], geo_env: dict[str, str]) -> None:
    r = resolver([dbs["city"]], geo_env).lookup("109.244.194.121")
    assert r.country == "CN" and r.disagreement is False and r.alternatives == ()


def test_first_user_database_wins_and_others_are_kept(dbs: dict[str, Path], geo_env: dict[str, str]) -> None:
    r = resolver([dbs["country"], dbs["city"]], geo_env, use_embedded=False).lookup("162.255.37.14")
    assert r.country == "FR"
    assert r.disagreement is True
    assert r.alternatives == (("Test-City.mmdb", "NL"),)


def test_pseudo_country_codes_are_not_countries(dbs: dict[str, Path], geo_env: dict[str, str]) -> None:
    r = resolver([dbs["country"]], geo_env, use_embedded=False).lookup("5.0.1.1")
    assert r.country == "ZZ" and r.reason == "not-found"


def test_flat_databases_are_read(dbs: dict[str, Path], geo_env: dict[str, str]) -> None:
    res = resolver([dbs["flat"]], geo_env, use_embedded=False)
    assert res.lookup("1.0.0.7").country == "SE"
    r = res.lookup("1.1.1.1")
    assert (r.country, r.asn, r.org) == ("JP", 64500, "Flat Org")


def test_public_address_nobody_knows_is_zz(dbs: dict[str, Path], geo_env: dict[str, str]) -> None:
    r = resolver([dbs["city"]], geo_env, use_embedded=False).lookup("8.8.8.8")
    assert (r.scope, r.country, r.found, r.reason) == ("public", "ZZ", False, "not-found")
    assert r.asn is None


def test_special_ranges_in_user_db_are_never_used(dbs: dict[str, Path], geo_env: dict[str, str]) -> None:
    res = resolver([dbs["city"]], geo_env)
    for ip, scope in [("192.0.2.10", "documentation"), ("10.9.8.7", "private")]:
        r = res.lookup(ip)
        assert (r.scope, r.country, r.registered_country, r.sources) == (scope, None, None, ())
        assert r.reason == f"special-range:{scope}"


def test_env_variable_and_default_dirs(dbs: dict[str, Path], tmp_path: Path) -> None:
    env = {"CONFSCOPE_GEOIP": f"{dbs['asn']}{os.pathsep}{dbs['country']}",
           "CONFSCOPE_CACHE": str(tmp_path / "c")}
    (tmp_path / "sys").mkdir()
    build_city(tmp_path / "sys" / "GeoLite2-City.mmdb")
    (tmp_path / "sys" / "broken.mmdb").write_bytes(b"not a database")
    found = user_database_paths([dbs["flat"]], env=env, default_dirs=[tmp_path / "sys"])
    assert [(p.name, o) for p, o in found] == [
        ("flat.mmdb", "user"), ("Test-ASN.mmdb", "env"), ("Test-Country.mmdb", "env"),
        ("GeoLite2-City.mmdb", "default-dir"), ("broken.mmdb", "default-dir"),
    ]
    res = GeoResolver(env=env, default_dirs=[tmp_path / "sys"], use_embedded=False)
    # A broken file in a system folder is skipped with a warning, not fatal.
    assert any("broken.mmdb" in w for w in res.warnings)
    assert [d.name for d in res.user_dbs] == ["Test-ASN.mmdb", "Test-Country.mmdb", "GeoLite2-City.mmdb"]
    assert res.lookup("162.255.37.14").country == "FR"
    no_dirs = GeoResolver(env=env, search_default_dirs=False, use_embedded=False)
    assert [d.name for d in no_dirs.user_dbs] == ["Test-ASN.mmdb", "Test-Country.mmdb"]


def test_named_database_errors(tmp_path: Path, geo_env: dict[str, str]) -> None:
    with pytest.raises(GeoDatabaseError):
        GeoResolver(user_paths=[str(tmp_path / "missing.mmdb")], search_default_dirs=False, env=geo_env)
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(GeoDatabaseError):
        GeoResolver(user_paths=[str(junk)], search_default_dirs=False, env=geo_env)


def test_provenance_lists_every_database(dbs: dict[str, Path], geo_env: dict[str, str]) -> None:
    prov = resolver([dbs["city"]], geo_env).provenance()
    by_name = {p["name"]: p for p in prov}
    assert set(by_name) == {"Test-City.mmdb", "embedded-location", "embedded-country", "embedded-asn", "iptocc"}
    for p in prov:
        assert {"name", "type", "build_date", "sha256", "path"} <= set(p)
    assert by_name["Test-City.mmdb"]["sha256"] == hashlib.sha256(dbs["city"].read_bytes()).hexdigest()
    assert by_name["Test-City.mmdb"]["type"] == "Test-GeoIP2-City"
    files = manifest()["files"]
    assert by_name["embedded-asn"]["sha256"] == files["asn.mmdb.xz"]["sha256"]
    assert by_name["embedded-country"]["data_date"] == "2026-06-17"
    # The default location database is DB-IP Lite of June 2026, with its attribution.
    assert by_name["embedded-location"]["data_date"] == "2026-06-01"
    assert "db-ip.com" in by_name["embedded-location"]["attribution"]
    assert by_name["embedded-location"]["sha256"] == files["dbip-country.mmdb.xz"]["sha256"]
    json.dumps(prov)  # must be serialisable into report.json


# --- IPv6 ------------------------------------------------------------------------------------------

def test_ipv6_user_database(dbs: dict[str, Path], geo_env: dict[str, str]) -> None:
    r = resolver([dbs["city"]], geo_env).lookup("2a03:2880:f003::1")
    assert r.country == "US" and "country=Test-City.mmdb" in r.sources
    # DB-IP (a location database) agrees; iptocc's registration answer (IE, Facebook's Irish
    # allocation) is a second opinion, not a disagreement: registration is not location.
    assert r.disagreement is False and ("iptocc", "IE") in r.alternatives
    assert ("registered", "registered", "IE") in r.answers and ("dbip", "database", "US") in r.answers


def test_ipv6_embedded_uses_iptocc_not_the_au_bug(embedded: GeoResolver) -> None:
    # 2001:df0::/29 holds APNIC assignments the npm geo-whois-asn data labels AU (geodata.md §4);
    # 2001:df0::1 is the University of Auckland (NZ). DB-IP locates it; the registration answer
    # for IPv6 is iptocc (NZ), never the buggy mmdb, which stays a second opinion.
    r = embedded.lookup("2001:df0::1")
    assert r.country == "NZ" and "country=embedded-location" in r.sources
    assert ("registered", "registered", "NZ") in r.answers
    assert ("embedded-country", "AU") in r.alternatives
    assert r.disagreement is False


def test_registration_is_the_country_only_without_a_location_database(geo_env: dict[str, str]) -> None:
    res = GeoResolver(search_default_dirs=False, env=geo_env)
    res.embedded_location = None  # as if DB-IP were missing
    r = res.lookup("3.7.35.1")
    assert r.country == "IN" and "country=embedded-country" in r.sources
    assert r.answers == (("registered", "registered", "IN"),)


def test_ipv4_mapped_and_nat64_resolve_as_ipv4(embedded: GeoResolver) -> None:
    for ip in ("::ffff:162.255.37.14", "64:ff9b::a2ff:250e"):
        r = embedded.lookup(ip)
        assert (r.ip, r.country, r.asn) == (ip, "US", 30103)


# --- embedded data on known addresses (geodata.md §3.3 and §3.4) ----------------------------------

@pytest.mark.parametrize(("ip", "country", "registered", "asn", "org_word"), [
    ("162.255.37.14", "US", "US", 30103, "Zoom"),  # Zoom server, US in every source
    ("109.244.194.121", "CN", "CN", 45090, "Tencent"),  # Citizen Lab's "Beijing" Zoom server
    ("3.7.35.1", "IN", "US", 16509, "Amazon"),  # AWS Mumbai: located IN, registered US
    ("193.122.35.237", "DE", "US", 31898, "Oracle"),  # OCI Frankfurt: located DE, registered US
    ("149.154.167.51", "GB", "AG", 62041, "Telegram"),  # DB-IP 2026-06 says GB, iptocc AG
    ("2001:4860:4860::8888", "CA", "US", 15169, "Google"),  # IPv6: DB-IP CA (geodata.md 3.3), iptocc US
])
def test_embedded_known_addresses(embedded: GeoResolver, ip: str, country: str, registered: str,
                                  asn: int, org_word: str) -> None:
    r = embedded.lookup(ip)
    assert (r.scope, r.country, r.registered_country, r.asn) == ("public", country, registered, asn)
    assert org_word in (r.org or "")
    assert r.found and r.reason == "found"


def test_results_are_cached_per_address(embedded: GeoResolver) -> None:
    assert embedded.lookup("52.202.62.236") is embedded.lookup("52.202.62.236")


# --- special ranges ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("ip", "scope"), [
    ("10.1.2.3", "private"), ("172.16.5.4", "private"), ("172.31.255.255", "private"),
    ("192.168.1.1", "private"), ("fd12:3456::1", "private"), ("fc00::1", "private"),
    ("100.64.0.1", "cgnat"), ("100.127.255.254", "cgnat"),
    ("127.0.0.1", "loopback"), ("127.255.0.1", "loopback"), ("::1", "loopback"),
    ("169.254.10.20", "link-local"), ("fe80::1", "link-local"),
    ("224.0.0.251", "multicast"), ("239.255.255.250", "multicast"), ("ff02::fb", "multicast"),
    ("255.255.255.255", "broadcast"),
    ("192.0.2.1", "documentation"), ("198.51.100.7", "documentation"), ("203.0.113.9", "documentation"),
    ("2001:db8::1", "documentation"),
    ("240.0.0.1", "reserved"), ("0.1.2.3", "reserved"), ("198.18.0.1", "reserved"),
    ("192.0.0.8", "reserved"), ("4000::1", "reserved"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("::ffff:192.168.0.1", "private"), ("fe80::1%eth0", "link-local"),
    ("100.63.255.255", "public"), ("100.128.0.0", "public"), ("172.32.0.1", "public"),
    ("8.8.8.8", "public"), ("2606:4700::1111", "public"),
    ("", "invalid"), ("999.1.1.1", "invalid"), ("example.com", "invalid"),
])
def test_scopes(ip: str, scope: str, embedded: GeoResolver) -> None:
    assert address_scope(ip) == scope
    r = embedded.lookup(ip)
    assert r.scope == scope
    if scope != "public":
        assert r.country is None and r.asn is None and r.sources == ()
    else:
        assert r.country is not None


# --- no network ---------------------------------------------------------------------------------------

def test_no_socket_is_opened(monkeypatch: pytest.MonkeyPatch, dbs: dict[str, Path], tmp_path: Path) -> None:
    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("geolocation tried to use the network")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    # A fresh cache dir, so decompression and sha checks run under the guard as well.
    res = resolver([dbs["city"], dbs["asn"]], {"CONFSCOPE_CACHE": str(tmp_path)})
    for ip in ("162.255.37.14", "2001:4860:4860::8888", "10.0.0.1", "198.51.100.1", "1.1.1.1"):
        res.lookup(ip)
    assert res.lookup("162.255.37.14").country == "NL"
