"""Open geolocation databases (user-supplied or embedded) and answer lookups in one shape.

The kind of each file comes from its metadata `database_type`, because geoip2 picks its lookup
method by substring there (`city()` needs "City", `country()` "Country", `asn()` "GeoLite2-ASN",
`isp()` "GeoIP2-ISP") and raises TypeError on a mismatch. Files whose type matches none of these
(ip-location-db "country ipvAll", IPinfo, DB-IP flat layouts) are read with maxminddb and their flat
records adapted: `country_code`, `asn` ("AS123" or 123), `as_name`, `latitude`/`lat` ...
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geoip2.database
import geoip2.errors
import maxminddb

from analyzer.common.hashing import file_sha256
from analyzer.errors import GeoDatabaseError

DEFAULT_DIRS = (Path("/usr/share/GeoIP"), Path("/var/lib/GeoIP"))
ENV_VAR = "CONFSCOPE_GEOIP"

# Codes that some databases use for "a region" or "unknown" rather than a country: treat them as
# no answer so they never become a country on the map. XK (Kosovo) stays a country.
PSEUDO_COUNTRIES = frozenset({"EU", "AP", "A1", "A2", "O1", "ZZ", "XX", "--"})
_CC = re.compile(r"^[A-Z]{2}$")


@dataclass(frozen=True)
class DBAnswer:
    """What one database says about one address (None where it says nothing)."""

    country: str | None = None
    registered_country: str | None = None
    asn: int | None = None
    org: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    accuracy_radius_km: int | None = None


def clean_country(value: Any) -> str | None:
    """An ISO alpha-2 code, or None for anything else (pseudo codes, junk, non-strings)."""
    if not isinstance(value, str):
        return None
    cc = value.strip().upper()
    if not _CC.match(cc) or cc in PSEUDO_COUNTRIES:
        return None
    return cc


def _clean_asn(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value < 2**32 else None
    if isinstance(value, str):
        text = value.strip().upper().removeprefix("AS")
        if text.isdigit():
            return _clean_asn(int(text))
    return None


def _clean_str(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _clean_float(value: Any, limit: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if -limit <= value <= limit else None


def _sub(rec: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = rec.get(key)
    return value if isinstance(value, Mapping) else {}


def adapt_flat_record(rec: Any) -> DBAnswer:
    """Normalize a raw maxminddb record of any common layout (nested GeoIP2 or flat)."""
    if not isinstance(rec, Mapping):
        return DBAnswer()
    country = rec.get("country")
    if isinstance(country, str):  # IPinfo: "country": "US"
        cc = clean_country(country)
    else:
        cc = clean_country(_sub(rec, "country").get("iso_code"))
    cc = cc or clean_country(rec.get("country_code"))
    loc = _sub(rec, "location")
    lat = _clean_float(rec.get("latitude", rec.get("lat", loc.get("latitude"))), 90.0)
    lon = _clean_float(rec.get("longitude", rec.get("lng", rec.get("lon", loc.get("longitude")))), 180.0)
    asn = rec.get("autonomous_system_number", rec.get("asn"))
    org = None
    for key in ("autonomous_system_organization", "as_name", "asn_org", "as_org", "org", "organization"):
        org = _clean_str(rec.get(key))
        if org:
            break
    if isinstance(asn, Mapping):  # IPinfo "standard" layouts nest {"asn": {"asn": "AS1", "name": ...}}
        org = org or _clean_str(asn.get("name"))
        asn = asn.get("asn")
    return DBAnswer(
        country=cc,
        registered_country=clean_country(_sub(rec, "registered_country").get("iso_code")),
        asn=_clean_asn(asn),
        org=org,
        latitude=lat,
        longitude=lon if lat is not None else None,
    )


def detect_kind(database_type: str) -> str:
    """geoip2 method family for a `database_type`, or "flat" when only maxminddb can read it."""
    if "Enterprise" in database_type:
        return "Enterprise"
    if "City" in database_type:
        return "City"
    if "Country" in database_type:
        return "Country"
    if "GeoIP2-ISP" in database_type:
        return "ISP"
    if "GeoLite2-ASN" in database_type:
        return "ASN"
    return "flat"


@dataclass
class GeoDatabase:
    """One open database file."""

    name: str
    path: Path
    kind: str
    database_type: str
    build_date: str | None
    origin: str  # "user", "env", "default-dir" or "embedded"
    expected_sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _geoip: geoip2.database.Reader | None = None
    _raw: maxminddb.Reader | None = None
    _sha256: str | None = None

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = self.expected_sha256 or file_sha256(self.path)
        return self._sha256

    def lookup(self, ip: str) -> DBAnswer | None:
        """The database's answer, or None when the address is not in it."""
        try:
            if self._raw is not None:
                rec = self._raw.get(ip)
                return None if rec is None else adapt_flat_record(rec)
            assert self._geoip is not None
            return self._geoip_lookup(self._geoip, ip)
        except (geoip2.errors.AddressNotFoundError, ValueError, TypeError, maxminddb.InvalidDatabaseError):
            return None

    def _geoip_lookup(self, reader: geoip2.database.Reader, ip: str) -> DBAnswer:
        # traits.network is left alone on purpose: building it costs more than the lookup itself.
        if self.kind in ("ASN", "ISP"):
            m = reader.asn(ip) if self.kind == "ASN" else reader.isp(ip)
            org = m.autonomous_system_organization
            if self.kind == "ISP":
                org = org or getattr(m, "organization", None) or getattr(m, "isp", None)
            return DBAnswer(asn=_clean_asn(m.autonomous_system_number), org=_clean_str(org))
        if self.kind == "Country":
            c = reader.country(ip)
            return DBAnswer(
                country=clean_country(c.country.iso_code),
                registered_country=clean_country(c.registered_country.iso_code),
            )
        c = reader.enterprise(ip) if self.kind == "Enterprise" else reader.city(ip)
        lat = _clean_float(c.location.latitude, 90.0)
        return DBAnswer(
            country=clean_country(c.country.iso_code),
            registered_country=clean_country(c.registered_country.iso_code),
            asn=_clean_asn(getattr(c.traits, "autonomous_system_number", None)),
            org=_clean_str(getattr(c.traits, "autonomous_system_organization", None)),
            latitude=lat,
            longitude=_clean_float(c.location.longitude, 180.0) if lat is not None else None,
            accuracy_radius_km=c.location.accuracy_radius,
        )

    def provenance(self) -> dict[str, Any]:
        entry = {
            "name": self.name,
            "type": self.database_type,
            "kind": self.kind,
            "build_date": self.build_date,
            "sha256": self.sha256,
            "path": str(self.path),
            "origin": self.origin,
        }
        entry.update(self.extra)
        return entry

    def close(self) -> None:
        for reader in (self._geoip, self._raw):
            if reader is not None:
                reader.close()
        self._geoip = self._raw = None


def open_database(
    path: str | os.PathLike[str],
    origin: str = "user",
    name: str | None = None,
    expected_sha256: str | None = None,
    extra: dict[str, Any] | None = None,
) -> GeoDatabase:
    """Open one mmdb file and detect its kind; GeoDatabaseError if it is not a readable mmdb."""
    p = Path(path)
    try:
        raw = maxminddb.open_database(str(p))
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise GeoDatabaseError(f"cannot open geolocation database {p}: {exc}") from exc
    meta = raw.metadata()
    db_type = str(meta.database_type or "")
    epoch = meta.build_epoch
    build_date = dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d") if epoch else None
    kind = detect_kind(db_type)
    db = GeoDatabase(
        name=name or p.name,
        path=p,
        kind=kind,
        database_type=db_type,
        build_date=build_date,
        origin=origin,
        expected_sha256=expected_sha256,
        extra=dict(extra or {}),
    )
    if kind == "flat":
        db._raw = raw
    else:
        raw.close()
        # geoip2's Reader (C extension, mmap) builds the typed models the kind was chosen for.
        db._geoip = geoip2.database.Reader(str(p))
    return db


def _expand(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(q for q in path.iterdir() if q.suffix == ".mmdb" and q.is_file())
    return [path]


def user_database_paths(
    cli_paths: Iterable[str | os.PathLike[str]] = (),
    env: Mapping[str, str] | None = None,
    search_default_dirs: bool = True,
    default_dirs: Iterable[Path] = DEFAULT_DIRS,
) -> list[tuple[Path, str]]:
    """(path, origin) of every user database, in precedence order: --geoip, $CONFSCOPE_GEOIP, dirs.

    A path may be a directory (all *.mmdb in it). Named paths that do not exist raise
    GeoDatabaseError; the default directories are only searched when present.
    """
    environ = os.environ if env is None else env
    named: list[tuple[Path, str]] = [(Path(p).expanduser(), "user") for p in cli_paths]
    named += [(Path(p).expanduser(), "env") for p in environ.get(ENV_VAR, "").split(os.pathsep) if p.strip()]
    out: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for path, origin in named:
        if not path.exists():
            raise GeoDatabaseError(f"geolocation database {path} does not exist")
        for q in _expand(path):
            if q.resolve() not in seen:
                seen.add(q.resolve())
                out.append((q, origin))
    if search_default_dirs:
        for d in default_dirs:
            if d.is_dir():
                for q in _expand(d):
                    if q.resolve() not in seen:
                        seen.add(q.resolve())
                        out.append((q, "default-dir"))
    return out
