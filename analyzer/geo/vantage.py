"""The capture's vantage point: where the capturing machine stood, as coordinates and a country.

`--vantage CC` means "somewhere in that country" and resolves to the centre of its largest
outline; `--vantage LAT,LON` is taken as given. Without either, the public address learnt from
STUN (or any public local address) is located like any other address.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from analyzer.errors import OptionError
from analyzer.geo.borders import country_at, country_centroid
from analyzer.geo.resolver import GeoResolver

_LATLON = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*,\s*([-+]?\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class Vantage:
    latitude: float | None
    longitude: float | None
    country: str | None
    source: str  # "option:country", "option:coordinates", "public-ip:<ip>", "unknown"

    @property
    def latlon(self) -> tuple[float, float] | None:
        if self.latitude is None or self.longitude is None:
            return None
        return self.latitude, self.longitude


def parse_vantage(text: str) -> Vantage:
    """Resolve a `--vantage` value; OptionError if it is neither a known country nor LAT,LON."""
    m = _LATLON.match(text or "")
    if m:
        lat, lon = float(m.group(1)), float(m.group(2))
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            raise OptionError("latitude must be in [-90, 90], longitude in [-180, 180]", "vantage", text)
        return Vantage(lat, lon, country_at(lat, lon), "option:coordinates")
    cc = (text or "").strip().upper()
    centre = country_centroid(cc) if re.fullmatch(r"[A-Z]{2}", cc) else None
    if centre is None:
        raise OptionError("expected an ISO country code (e.g. DE) or LAT,LON", "vantage", text)
    return Vantage(centre[0], centre[1], cc, "option:country")


def vantage_from_evidence(
    accepted: list[tuple[str, str]], resolver: GeoResolver,
) -> tuple[Vantage, list[dict[str, object]], str]:
    """(vantage, evidence, confidence) from the capturing host's public addresses and how each was
    learnt. Confidence: confirmed when two pieces agree (and none disagrees), likely with one,
    contested when they name different countries (multi-homed host, VPN), unknown without any."""
    evidence: list[dict[str, object]] = []
    seen: set[tuple[str, str]] = set()
    for ip, how in accepted:
        if (ip, how) in seen:
            continue
        seen.add((ip, how))
        r = resolver.lookup(ip)
        cc = r.country if r.country and r.country != "ZZ" else None
        evidence.append({"source": "stun-mapped" if how.startswith("STUN") else "local-address",
                         "ip": ip, "country": cc, "detail": how})
    v = vantage_from_ips(sorted({ip for ip, _ in accepted}), resolver)
    countries = {e["country"] for e in evidence if e["country"]}
    if v.country is None:
        confidence = "unknown"
    elif len(countries) > 1:
        confidence = "contested"
    elif sum(1 for e in evidence if e["country"] == v.country) >= 2:
        confidence = "confirmed"
    else:
        confidence = "likely"
    return v, evidence, confidence


def vantage_from_ips(public_ips: Iterable[str], resolver: GeoResolver) -> Vantage:
    """Vantage from the capture's own public addresses (e.g. STUN mapped addresses).

    Coordinates come from a user City database when it has them, else the country's centre;
    the most common country wins when the addresses disagree (multi-homed or VPN captures).
    """
    results = [resolver.lookup(ip) for ip in public_ips]
    located = [r for r in results if r.country and r.country != "ZZ"]
    if not located:
        return Vantage(None, None, None, "unknown")
    cc, _ = Counter(r.country for r in located).most_common(1)[0]
    best = next(r for r in located if r.country == cc)
    if best.latitude is not None and best.longitude is not None:
        return Vantage(best.latitude, best.longitude, cc, f"public-ip:{best.ip}")
    centre = country_centroid(cc)
    lat, lon = centre if centre else (None, None)
    return Vantage(lat, lon, cc, f"public-ip:{best.ip}")
