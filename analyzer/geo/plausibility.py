"""Speed-of-light check: can a server with this RTT really be in the country a database claims?

Light in fibre covers about 200 km per ms one way, so a round trip of t ms bounds the distance to
about 100 km * t (less in practice: paths are not straight, and queues only add delay). If the
vantage point is farther from the nearest border of the claimed country than that, the claim is
impossible: typically an anycast address, or a database that is wrong for this prefix.
"""

from __future__ import annotations

import math
from functools import lru_cache

from analyzer.geo.borders import distance_to_country_km

KM_PER_MS_RTT = 100.0


def min_distance_bound_km(rtt_ms: float) -> float:
    """Largest distance (km) a server answering with this round-trip time can be away."""
    return rtt_ms * KM_PER_MS_RTT


@lru_cache(maxsize=4096)
def vantage_distance_km(lat: float, lon: float, country: str) -> float:
    """distance_to_country_km, cached: a border distance costs tens of milliseconds and the same
    (vantage, country) pair is asked for by the per-flow check and the per-address evidence."""
    return distance_to_country_km(lat, lon, country)


def check_plausible(
    vantage_latlon: tuple[float, float] | None, country: str | None, rtt_ms: float | None,
) -> tuple[bool, float, float]:
    """(plausible, distance_km, bound_km) for a server claimed to be in `country`.

    Without a vantage, a known country or a finite RTT nothing can be refuted, so the answer is
    plausible with NaN for whatever is missing.
    """
    rtt = math.nan if rtt_ms is None else float(rtt_ms)
    bound = min_distance_bound_km(rtt) if math.isfinite(rtt) and rtt >= 0 else math.nan
    if vantage_latlon is None or not country:
        return True, math.nan, bound
    lat, lon = vantage_latlon
    distance = vantage_distance_km(float(lat), float(lon), country)
    if math.isnan(distance) or math.isnan(bound):
        return True, distance, bound
    return distance <= bound, distance, bound
