"""Country outlines (world-atlas TopoJSON decoder), distances, plausibility and the vantage point."""

from __future__ import annotations

import importlib
import itertools
import math
import struct
from pathlib import Path

import pytest

from analyzer.errors import OptionError
from analyzer.geo.borders import (
    country_at,
    country_centroid,
    country_shapes,
    distance_to_country_km,
    great_circle_km,
    point_in_country,
)
from analyzer.geo.plausibility import check_plausible, min_distance_bound_km
from analyzer.geo.resolver import GeoResolver
from analyzer.geo.vantage import parse_vantage, vantage_from_ips

PARIS = (48.8566, 2.3522)
NEW_YORK = (40.7128, -74.0060)
BERLIN = (52.52, 13.405)
LONDON = (51.5074, -0.1278)


# --- shapes -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("resolution", ["110m", "50m"])
def test_shapes_are_closed_rings_inside_the_map(resolution: str) -> None:
    shapes = country_shapes(resolution)
    assert len(shapes) >= (170 if resolution == "110m" else 230)
    assert {"FR", "US", "CN", "RU", "FJ", "XK", "BR", "AU"} <= set(shapes)
    for cc, rings in shapes.items():
        for ring in rings:
            assert len(ring) >= 4 and ring[0] == ring[-1], cc
            for lon, lat in ring:
                assert -180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0, cc


@pytest.mark.parametrize("cc", ["RU", "FJ", "US"])
def test_antimeridian_rings_never_jump_across_the_map(cc: str) -> None:
    rings = country_shapes("50m")[cc]
    for ring in rings:
        for (x1, _), (x2, _) in itertools.pairwise(ring):
            assert abs(x2 - x1) <= 180.0
    # Russia's Chukotka lies on both sides of 180°: pieces exist on both edges of the map.
    if cc in ("RU", "FJ"):
        lons = [lon for ring in rings for lon, _ in ring]
        assert min(lons) < -170 and max(lons) > 170


def test_small_states_exist_only_at_50m_and_are_found() -> None:
    assert "SG" not in country_shapes("110m") and "SG" in country_shapes("50m")
    assert distance_to_country_km(1.3521, 103.8198, "SG") == 0.0
    assert country_centroid("SG") is not None


# --- centroids and containment -------------------------------------------------------------------

@pytest.mark.parametrize(("cc", "lat", "lon", "tol"), [
    ("FR", 46.6, 2.4, 2.0), ("US", 39.5, -98.9, 3.0), ("CN", 36.5, 103.8, 4.0), ("DE", 51.1, 10.3, 1.5),
])
def test_centroids_fall_in_the_main_territory(cc: str, lat: float, lon: float, tol: float) -> None:
    c = country_centroid(cc)
    assert c is not None
    assert abs(c[0] - lat) < tol and abs(c[1] - lon) < tol
    assert point_in_country(c[0], c[1], cc)


def test_country_at() -> None:
    assert country_at(*PARIS) == "FR"
    assert country_at(39.9042, 116.4074) == "CN"  # Beijing
    assert country_at(-33.8688, 151.2093) in ("AU", None)  # Sydney sits on the coast
    assert country_at(-25.0, 134.0) == "AU"
    assert country_at(0.0, -30.0) is None  # mid-Atlantic
    assert country_at(-29.6, 28.2) == "LS"  # Lesotho, a hole inside South Africa
    assert not point_in_country(-29.6, 28.2, "ZA")
    assert country_centroid("QQ") is None
    # Antarctica's ring goes round the pole: the land between its outline and the pole is inside.
    assert country_at(-86.0, 0.0) == "AQ" and country_at(-80.0, 100.0) == "AQ"
    assert point_in_country(-89.5, 45.0, "AQ", "110m")


# --- distances -------------------------------------------------------------------------------------------

def test_great_circle() -> None:
    assert great_circle_km(*PARIS, *NEW_YORK) == pytest.approx(5837, abs=25)
    assert great_circle_km(*PARIS, *PARIS) == pytest.approx(0.0, abs=1e-6)


def test_distance_to_country() -> None:
    assert distance_to_country_km(*PARIS, "FR") == 0.0
    assert distance_to_country_km(*NEW_YORK, "CN") > 9000  # nearest Chinese border is > 9,000 km away
    assert 100 < distance_to_country_km(*LONDON, "FR") < 300  # across the Channel
    assert 300 < distance_to_country_km(*BERLIN, "NL") < 500
    assert distance_to_country_km(*BERLIN, "PL") < 100  # Berlin is ~70 km from the Oder
    assert distance_to_country_km(*NEW_YORK, "US") < 20  # coast at 50m resolution
    assert math.isnan(distance_to_country_km(*PARIS, "ZZ"))


def test_distance_across_the_antimeridian() -> None:
    # A point in the Bering Strait west of 180° is close to Alaska (east of it in longitude terms).
    assert distance_to_country_km(65.5, 179.0, "US") < 500


# --- plausibility ---------------------------------------------------------------------------------------

def test_bound_is_100_km_per_ms() -> None:
    assert min_distance_bound_km(10.0) == 1000.0
    assert min_distance_bound_km(0.0) == 0.0


@pytest.mark.parametrize(("vantage", "cc", "rtt", "plausible"), [
    (NEW_YORK, "CN", 20.0, False),  # 20 ms cannot reach China from New York
    (NEW_YORK, "CN", 200.0, True),
    (BERLIN, "NL", 1.0, False),  # 100 km bound, NL border is > 300 km away
    (BERLIN, "NL", 5.0, True),
    (PARIS, "FR", 0.2, True),  # inside the claimed country: any RTT is fine
    (LONDON, "US", 30.0, False),  # a "US" server 30 ms from London: anycast or wrong DB
])
def test_check_plausible(vantage: tuple[float, float], cc: str, rtt: float, plausible: bool) -> None:
    ok, dist, bound = check_plausible(vantage, cc, rtt)
    assert ok is plausible
    assert bound == rtt * 100
    assert (dist > bound) is (not plausible)


def test_check_plausible_without_evidence() -> None:
    for args in [(None, "CN", 1.0), (NEW_YORK, None, 1.0), (NEW_YORK, "CN", None),
                 (NEW_YORK, "CN", float("nan")), (NEW_YORK, "ZZ", 1.0)]:
        ok, _dist, _bound = check_plausible(*args)
        assert ok is True


# --- vantage ------------------------------------------------------------------------------------------------

def test_parse_vantage() -> None:
    v = parse_vantage("de")
    assert (v.country, v.source) == ("DE", "option:country") and point_in_country(*v.latlon, "DE")
    v = parse_vantage(" 48.85, 2.35 ")
    assert (v.latitude, v.longitude, v.country, v.source) == (48.85, 2.35, "FR", "option:coordinates")
    for bad in ("XX", "91,0", "10,200", "hello", "", "US,"):
        with pytest.raises(OptionError):
            parse_vantage(bad)


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {"CONFSCOPE_CACHE": str(tmp_path_factory.mktemp("cache"))}


def test_vantage_from_public_ips(tmp_path: Path, cache_env: dict[str, str]) -> None:
    from tests.test_geo_resolver import build_city

    env = cache_env
    city = build_city(tmp_path / "city.mmdb")
    res = GeoResolver(user_paths=[str(city)], search_default_dirs=False, env=env)
    v = vantage_from_ips(["192.168.1.2", "162.255.37.14"], res)
    assert (v.country, v.latlon, v.source) == ("NL", (52.37, 4.89), "public-ip:162.255.37.14")
    plain = GeoResolver(search_default_dirs=False, env=env)
    v = vantage_from_ips(["109.244.194.121"], plain)  # no City DB: the country's centre
    assert v.country == "CN" and point_in_country(*v.latlon, "CN")
    assert vantage_from_ips(["10.0.0.1"], plain).latlon is None


# --- a synthetic capture with chosen RTTs ---------------------------------------------------------------

def _pcap(path: Path, packets: list[tuple[float, bytes]]) -> None:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for ts, frame in packets:
        sec, usec = int(ts), round((ts - int(ts)) * 1e6)
        out.append(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


def _tcp_frame(src: str, dst: str, sport: int, dport: int, flags: int) -> bytes:
    def ip4(a: str) -> bytes:
        return bytes(int(x) for x in a.split("."))

    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, ip4(src), ip4(dst))
    words = struct.unpack("!10H", hdr)
    s = sum(words)
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    hdr = hdr[:10] + struct.pack("!H", ~s & 0xFFFF) + hdr[12:]
    eth = b"\x02\x00\x00\x00\x00\x01" + b"\x02\x00\x00\x00\x00\x02" + b"\x08\x00"
    return eth + hdr + tcp


def test_speed_of_light_on_a_synthetic_capture(tmp_path: Path, cache_env: dict[str, str]) -> None:
    # build_flows is the documented entry point; scan_capture is the one-pass engine beneath it.
    build_flows = getattr(importlib.import_module("analyzer.scan.flows"), "build_flows", None)
    if build_flows is None:
        build_flows = getattr(importlib.import_module("analyzer.scan.scanner"), "scan_capture", None)
    if build_flows is None:
        pytest.skip("neither analyzer.scan.flows.build_flows nor analyzer.scan.scanner.scan_capture exists")
    client = "192.168.1.10"
    # Two servers the embedded data places in CN; the capture was taken in Berlin.
    handshakes = [("109.244.194.121", 4.0), ("109.244.194.122", 180.0)]
    packets: list[tuple[float, bytes]] = []
    t = 1_700_000_000.0
    for i, (server, rtt_ms) in enumerate(handshakes):
        sport = 50000 + i
        packets.append((t, _tcp_frame(client, server, sport, 443, 0x02)))
        packets.append((t + rtt_ms / 1000, _tcp_frame(server, client, 443, sport, 0x12)))
        packets.append((t + rtt_ms / 1000 + 0.0001, _tcp_frame(client, server, sport, 443, 0x10)))
        t += 1.0
    cap = tmp_path / "rtt.pcap"
    _pcap(cap, packets)
    flows = build_flows(str(cap)).flows
    res = GeoResolver(search_default_dirs=False, env=cache_env)
    vantage = parse_vantage(f"{BERLIN[0]},{BERLIN[1]}")
    verdicts = {}
    for row in flows.itertuples():
        country = res.lookup(row.server_ip).country
        assert country == "CN"
        plausible = check_plausible(vantage.latlon, country, row.tcp_rtt_ms)[0]
        verdicts[row.server_ip] = (round(row.tcp_rtt_ms), plausible)
    assert verdicts == {"109.244.194.121": (4, False), "109.244.194.122": (180, True)}
