"""GeoResolver: one address in, one GeoResult out, from user databases first and embedded data next.

Order of answers (research notes geodata.md section 1 and locations.md):
- located country: user City/Country/flat databases in precedence order; otherwise the embedded
  *location* database (DB-IP IP-to-Country Lite); only when no location database answers, the
  registration answer: the embedded geo-whois-asn mmdb for IPv4 and iptocc for IPv6 (the embedded
  IPv6 data labels many APNIC blocks AU). Registration is not location (cloud and CDN servers are
  registered in the owner's home country), so it is a second opinion, never a disagreement;
- registered country: always iptocc (RIR delegations), a user database's registered_country only
  when iptocc has none;
- ASN and organisation: user ASN/ISP/Enterprise/flat databases, then the embedded ASN mmdb;
- coordinates: only a user City database has them (country centroids are not coordinates).
Addresses with a non-public scope are never looked up. Nothing here opens a socket.
"""

from __future__ import annotations

import importlib.metadata
import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import iptocc

from analyzer.errors import GeoDatabaseError
from analyzer.geo.databases import (
    DEFAULT_DIRS,
    GeoDatabase,
    clean_country,
    open_database,
    user_database_paths,
)
from analyzer.geo.datafiles import manifest
from analyzer.geo.embedded import materialize
from analyzer.geo.scopes import PUBLIC, address_scope, normalize_ip

UNKNOWN_COUNTRY = "ZZ"
IPTOCC = "iptocc"
_EMBEDDED_NAMES = {
    "dbip-country.mmdb.xz": "embedded-location",
    "country.mmdb.xz": "embedded-country",
    "asn.mmdb.xz": "embedded-asn",
}
# Evidence source names (geo/evidence.py): the embedded location database and the registration answer.
DBIP_SOURCE = "dbip"
REGISTERED_SOURCE = "registered"


@dataclass(frozen=True)
class GeoResult:
    """Where one address is, according to which database.

    `country` is ISO alpha-2, "ZZ" for a public address no database places, None for non-public
    scopes. `sources` lists "field=database" for every field that got a value. `alternatives` holds
    (database, country) for every other answer; `disagreement` is True when a user database and the
    embedded data (or two user databases) name different countries.
    """

    ip: str
    scope: str
    country: str | None = None
    registered_country: str | None = None
    asn: int | None = None
    org: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    accuracy_radius_km: int | None = None
    sources: tuple[str, ...] = ()
    disagreement: bool = False
    alternatives: tuple[tuple[str, str], ...] = ()
    found: bool = False
    reason: str = ""
    # Every database's country as (evidence source, kind, country): kind "database" for location
    # databases (user files as "geoip:<file>", the embedded DB-IP as "dbip"), "registered" for the
    # registration answer. geo/evidence.py weighs them; `country` above is only the first answer.
    answers: tuple[tuple[str, str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sources"] = list(self.sources)
        d["alternatives"] = [{"source": s, "country": c} for s, c in self.alternatives]
        d["answers"] = [{"source": s, "kind": k, "country": c} for s, k, c in self.answers]
        return d


def _iptocc(ip: str) -> str | None:
    try:
        return clean_country(iptocc.country_code(ip))
    except (ValueError, TypeError):
        return None


def _iptocc_version() -> str | None:
    try:
        return importlib.metadata.version("iptocc")
    except importlib.metadata.PackageNotFoundError:
        return None


class GeoResolver:
    """Looks addresses up in user databases, then the embedded data; results cached per address."""

    def __init__(
        self,
        user_paths: Iterable[str | os.PathLike[str]] = (),
        use_embedded: bool = True,
        search_default_dirs: bool = True,
        env: Mapping[str, str] | None = None,
        default_dirs: Iterable[Path] = DEFAULT_DIRS,
    ) -> None:
        self.warnings: list[str] = []
        self.user_dbs: list[GeoDatabase] = []
        self.embedded_country: GeoDatabase | None = None
        self.embedded_location: GeoDatabase | None = None
        self.embedded_asn: GeoDatabase | None = None
        self.use_embedded = use_embedded
        self._cache: dict[str, GeoResult] = {}
        found = user_database_paths(
            user_paths, env=env, search_default_dirs=search_default_dirs, default_dirs=default_dirs,
        )
        for path, origin in found:
            try:
                self.user_dbs.append(open_database(path, origin=origin))
            except GeoDatabaseError as exc:
                if origin == "default-dir":
                    # Files in the system folders were not named by the user: skip, but say so.
                    self.warnings.append(str(exc))
                else:
                    self.close()
                    raise
        if use_embedded:
            self._open_embedded(env)

    def _open_embedded(self, env: Mapping[str, str] | None) -> None:
        files = manifest().get("files", {})
        for file_name, short in _EMBEDDED_NAMES.items():
            meta = files.get(file_name)
            path = materialize(file_name, dict(env) if env is not None else None) if meta else None
            if path is None:
                self.warnings.append(f"embedded geolocation file {file_name} is missing or failed its check")
                continue
            extra = {
                "source": meta.get("source"),
                "data_date": meta.get("data_date"),
                "licence": meta.get("licence"),
                "attribution": meta.get("attribution"),
            }
            db = open_database(
                path, origin="embedded", name=short, expected_sha256=meta.get("sha256"), extra=extra,
            )
            # The mmdb build_epoch is the conversion time; the manifest's build date is the same day,
            # but the data itself is older: data_date says how old.
            if meta.get("kind") == "ASN":
                self.embedded_asn = db
            elif meta.get("kind") == "Location":
                self.embedded_location = db
            else:
                self.embedded_country = db

    @property
    def databases(self) -> list[GeoDatabase]:
        embedded = (self.embedded_location, self.embedded_country, self.embedded_asn)
        return [*self.user_dbs, *(d for d in embedded if d is not None)]

    def provenance(self) -> list[dict[str, Any]]:
        """One entry per database in use: name, type, build_date, sha256, path (+ origin, source)."""
        out = [db.provenance() for db in self.databases]
        out.append({
            "name": IPTOCC,
            "type": "RIR delegated statistics (registered country)",
            "kind": "registered-country",
            "build_date": None,
            "sha256": None,
            "path": None,
            "origin": "embedded",
            "source": f"PyPI iptocc=={_iptocc_version()}",
            "licence": "MIT OR Apache-2.0; data from the RIRs (NRO)",
        })
        return out

    def lookup(self, ip: str) -> GeoResult:
        """Never raises: invalid text gets scope "invalid", unknown public addresses country "ZZ"."""
        key = ip if isinstance(ip, str) else str(ip)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._lookup(key)
            self._cache[key] = hit
        return hit

    def _lookup(self, ip: str) -> GeoResult:
        scope = address_scope(ip)
        if scope != PUBLIC:
            reason = "invalid-address" if scope == "invalid" else f"special-range:{scope}"
            return GeoResult(ip=ip, scope=scope, reason=reason)
        addr = normalize_ip(ip)
        assert addr is not None
        query = str(addr)
        sources: list[str] = []
        located: list[tuple[str, str]] = []  # (database, country) answers that count for disagreement
        second_opinions: list[tuple[str, str]] = []
        registration_only: list[tuple[str, str]] = []  # the registration answer when nothing locates
        asn: int | None = None
        org: str | None = None
        lat = lon = None
        radius = None
        user_registered: tuple[str, str] | None = None
        asn_source = ""
        coord_source = ""

        answers: list[tuple[str, str, str]] = []
        for db in self.user_dbs:
            ans = db.lookup(query)
            if ans is None:
                continue
            if ans.country:
                located.append((db.name, ans.country))
                answers.append((f"geoip:{db.name}", "database", ans.country))
            if ans.registered_country and user_registered is None:
                user_registered = (db.name, ans.registered_country)
            if ans.asn is not None and asn is None:
                asn, org, asn_source = ans.asn, ans.org, db.name
            if ans.latitude is not None and lat is None:
                lat, lon, radius, coord_source = ans.latitude, ans.longitude, ans.accuracy_radius_km, db.name

        registered = _iptocc(query)
        if self.use_embedded:
            loc = self.embedded_location.lookup(query) if self.embedded_location else None
            if loc is not None and loc.country and self.embedded_location:
                located.append((self.embedded_location.name, loc.country))
                answers.append((DBIP_SOURCE, "database", loc.country))
            emb = self.embedded_country.lookup(query) if self.embedded_country else None
            emb_cc = emb.country if emb else None
            # The registration answer: iptocc for IPv6 (the embedded IPv6 data has the AU bug),
            # the embedded geo-whois-asn mmdb for IPv4. It is the country only when no location
            # database answered; otherwise a second opinion.
            reg_answer: tuple[str, str] | None = None
            if isinstance(addr, ipaddress.IPv6Address):
                if registered:
                    reg_answer = (IPTOCC, registered)
                if emb_cc and self.embedded_country:
                    second_opinions.append((self.embedded_country.name, emb_cc))
            elif emb_cc and self.embedded_country:
                reg_answer = (self.embedded_country.name, emb_cc)
            if reg_answer is not None:
                answers.append((REGISTERED_SOURCE, "registered", reg_answer[1]))
                if located:
                    second_opinions.append(reg_answer)
                else:
                    registration_only.append(reg_answer)
            if asn is None and self.embedded_asn is not None:
                a = self.embedded_asn.lookup(query)
                if a is not None and a.asn is not None:
                    asn, org, asn_source = a.asn, a.org, self.embedded_asn.name

        disagreement = any(cc != located[0][1] for _, cc in located[1:])
        located = located or registration_only
        if located:
            country_source, country = located[0]
            sources.append(f"country={country_source}")
        else:
            country_source, country = "", UNKNOWN_COUNTRY
        if registered:
            sources.append(f"registered_country={IPTOCC}")
        elif user_registered:
            registered = user_registered[1]
            sources.append(f"registered_country={user_registered[0]}")
        if asn is not None:
            sources.append(f"asn={asn_source}")
        if lat is not None:
            sources.append(f"location={coord_source}")

        alternatives = tuple(
            (src, cc) for src, cc in (*located[1:], *second_opinions) if cc != country
        )
        found = bool(located) or asn is not None
        return GeoResult(
            ip=ip, scope=scope, country=country, registered_country=registered, asn=asn, org=org,
            latitude=lat, longitude=lon, accuracy_radius_km=radius, sources=tuple(sources),
            disagreement=disagreement, alternatives=alternatives, found=found,
            reason="found" if found else "not-found", answers=tuple(answers),
        )

    def close(self) -> None:
        for db in self.databases:
            db.close()

    def __enter__(self) -> GeoResolver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
