"""Server locations from evidence: per remote address, every independent piece of evidence, a country
and a confidence (the scale is defined in docs/locations.md).

Evidence pieces are `{source, country, detail}`:
- `dbip`, `geoip:<file>`: location databases (kind "database");
- `registered`: the registration answer (whois/RIR; kind "registered"). Registration is not
  location, so it can back an answer but never contradicts one;
- `hostname:<rule>`: the facility an operator encodes in its server's name (kind "hostname");
- `rtt`: a round trip from the capture bounds the distance (~100 km per ms); a claimed country
  farther than that from the vantage is ruled out. Across servers, two claims whose distance
  exceeds what both RTTs allow cannot both hold, vantage known or not;
- `anycast`: the address lies in a prefix its operator announces from many sites.

Decision: the first answer not ruled out, hostnames first (the operator's own label of the
facility), then location databases in precedence order (the user's first), then registration.
Confidence: `confirmed` when two kinds agree and nothing contradicts; `likely` with one kind and
no contradiction; `contested` when a location source disagrees, an RTT rules the answer out, or
the address is anycast; `unknown` without any answer.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from analyzer.geo.anycast import known_anycast
from analyzer.geo.borders import country_distance_km
from analyzer.geo.hints import hostname_hints
from analyzer.geo.plausibility import KM_PER_MS_RTT, vantage_distance_km

CONFIDENCE_LEVELS = ("confirmed", "likely", "contested", "unknown")
UNKNOWN_COUNTRY = "ZZ"
_KIND_ORDER = {"hostname": 0, "database": 1, "registered": 2}


@dataclass(frozen=True)
class Evidence:
    source: str
    country: str | None
    detail: str
    kind: str  # "hostname", "database", "registered", "rtt", "anycast"

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "country": self.country, "detail": self.detail}


@dataclass
class Location:
    """The decided location of one remote address."""

    ip: str
    country: str | None
    confidence: str
    evidence: list[Evidence]
    contradictions: list[str] = field(default_factory=list)
    ruled_out: dict[str, str] = field(default_factory=dict)
    anycast: bool = False
    min_rtt_ms: float | None = None

    @property
    def competing(self) -> list[str]:
        """Other countries named by location sources (for contested endpoints)."""
        return sorted(
            {e.country for e in self.evidence if e.kind in ("hostname", "database") and e.country}
            - {self.country}
        )


def gather(
    ip: str,
    answers: Iterable[tuple[str, str, str]],
    hostnames: Iterable[str],
    min_rtt_ms: float | None,
    vantage_latlon: tuple[float, float] | None,
    vantage_label: str = "the vantage point",
) -> tuple[list[Evidence], dict[str, str], Any]:
    """(evidence, ruled-out countries with the reason, anycast prefix or None) for one address."""
    ev: list[Evidence] = []
    for source, kind, cc in answers:
        what = "location database" if kind == "database" else "registration (whois/RIR), not location"
        ev.append(Evidence(source, cc, f"{source}: {what}", kind))
    seen: set[tuple[str, str]] = set()
    for name in sorted({h for h in hostnames if h}):
        for hint in hostname_hints(name):
            if (hint.rule, hint.country) in seen:
                continue
            seen.add((hint.rule, hint.country))
            ev.append(Evidence(f"hostname:{hint.rule}", hint.country, hint.detail, "hostname"))
    ruled_out: dict[str, str] = {}
    rtt = min_rtt_ms if min_rtt_ms is not None and math.isfinite(min_rtt_ms) and min_rtt_ms >= 0 else None
    if rtt is not None and vantage_latlon is not None:
        claimed = sorted({e.country for e in ev if e.country})
        bound = rtt * KM_PER_MS_RTT
        for cc in claimed:
            dist = vantage_distance_km(float(vantage_latlon[0]), float(vantage_latlon[1]), cc)
            if math.isfinite(dist) and dist > bound:
                ruled_out[cc] = (
                    f"{rtt:.1f} ms RTT bounds the server to {bound:.0f} km of {vantage_label}, "
                    f"but {cc} is {dist:.0f} km away"
                )
        detail = f"min RTT {rtt:.1f} ms: within {rtt * KM_PER_MS_RTT:.0f} km of {vantage_label}"
        if ruled_out:
            detail += "; rules out " + ", ".join(sorted(ruled_out))
        ev.append(Evidence("rtt", None, detail, "rtt"))
    any_prefix = known_anycast(ip)
    if any_prefix is not None:
        ev.append(Evidence(
            "anycast", None,
            f"{any_prefix.network} is anycast ({any_prefix.operator}; {any_prefix.source})", "anycast",
        ))
    return ev, ruled_out, any_prefix


def decide(
    ip: str, evidence: list[Evidence], ruled_out: Mapping[str, str], anycast: Any = None,
    min_rtt_ms: float | None = None,
) -> Location:
    """Country and confidence from the evidence of one address (see the module docstring)."""
    claims = sorted(
        (e for e in evidence if e.kind in _KIND_ORDER and e.country),
        key=lambda e: _KIND_ORDER[e.kind],  # stable: keeps database precedence within a kind
    )
    if not claims:
        return Location(ip, None, "unknown", evidence, ruled_out=dict(ruled_out), anycast=anycast is not None,
                        min_rtt_ms=min_rtt_ms)
    viable = [e for e in claims if e.country not in ruled_out]
    chosen = (viable or claims)[0]
    country = chosen.country
    contradictions: list[str] = []
    if anycast is not None:  # the root cause when present: one address, many sites
        contradictions.append(f"anycast prefix {anycast.network} ({anycast.operator}): served from many places")
    if country in ruled_out:
        contradictions.append(f"RTT rules out {country}: {ruled_out[country]}")
    for e in claims:
        if e.kind != "registered" and e.country != country and e.country not in ruled_out:
            contradictions.append(f"{e.source} says {e.country}")
    kinds = {e.kind for e in claims if e.country == country}
    if contradictions:
        confidence = "contested"
    elif len(kinds) >= 2:
        confidence = "confirmed"
    else:
        confidence = "likely"
    return Location(ip, country, confidence, evidence, _dedupe(contradictions), dict(ruled_out),
                    anycast is not None, min_rtt_ms)


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def pairwise_conflicts(locations: Iterable[Location]) -> list[dict[str, Any]]:
    """Claims that cannot all hold from one vantage point, vantage known or not.

    Two servers answering in r1 and r2 ms are at most (r1 + r2) x 100 km apart (both lie within
    reach of the same capture point). When their countries are farther apart than that, at least
    one claim is wrong. The vantage country that keeps most claims possible is the working
    hypothesis; every location that contradicts it is returned with the pair that shows it.
    """
    located = [
        loc for loc in locations
        if loc.country and loc.country != UNKNOWN_COUNTRY and not loc.anycast
        and loc.min_rtt_ms is not None and math.isfinite(loc.min_rtt_ms)
    ]
    if len(located) < 2:
        return []
    best: dict[str, Location] = {}
    for loc in located:  # the fastest server of each country constrains most
        cur = best.get(loc.country)  # type: ignore[arg-type]
        if cur is None or loc.min_rtt_ms < cur.min_rtt_ms:  # type: ignore[operator]
            best[loc.country] = loc  # type: ignore[index]
    countries = sorted(best)
    conflicts: dict[str, list[tuple[Location, Location, float]]] = defaultdict(list)
    for i, a in enumerate(countries):
        for b in countries[i + 1:]:
            la, lb = best[a], best[b]
            dist = country_distance_km(a, b)
            reach = (la.min_rtt_ms + lb.min_rtt_ms) * KM_PER_MS_RTT  # type: ignore[operator]
            if math.isfinite(dist) and dist > reach:
                conflicts[a].append((la, lb, dist))
                conflicts[b].append((lb, la, dist))
    if not conflicts:
        return []
    # Hypothesis: the vantage is in (or next to) one of the claimed countries; keep the one that
    # leaves the most servers possible. Ties leave every conflicting claim in doubt.
    def possible(v: str, loc: Location) -> bool:
        d = country_distance_km(v, loc.country)  # type: ignore[arg-type]
        return not math.isfinite(d) or d <= loc.min_rtt_ms * KM_PER_MS_RTT  # type: ignore[operator]

    scores = {v: sum(possible(v, loc) for loc in located) for v in countries}
    top = max(scores.values())
    leaders = [v for v, s in scores.items() if s == top]
    out = []
    for loc in located:
        if len(leaders) == 1 and possible(leaders[0], loc):
            continue
        if len(leaders) > 1 and loc.country not in conflicts:
            continue
        pairs = conflicts.get(loc.country, [])  # type: ignore[arg-type]
        # Prefer the pair with the hypothesis' own country: it names the claim that holds.
        pairs = sorted(pairs, key=lambda t: t[1].country not in leaders[:1])
        other = pairs[0] if pairs else None
        if other is None:
            # Inconsistent with the hypothesis only: name the fastest server of the leader country.
            lead = best[leaders[0]]
            other = (loc, lead, country_distance_km(loc.country, lead.country))  # type: ignore[arg-type]
        _, o, dist = other
        out.append({
            "ip": loc.ip,
            "country": loc.country,
            "min_rtt_ms": loc.min_rtt_ms,
            "other_ip": o.ip,
            "other_country": o.country,
            "other_rtt_ms": o.min_rtt_ms,
            "distance_km": dist,
            "vantage_hypothesis": leaders[0] if len(leaders) == 1 else None,
            "detail": (
                f"{loc.ip} in {loc.country} ({loc.min_rtt_ms:.1f} ms) and {o.ip} in {o.country} "
                f"({o.min_rtt_ms:.1f} ms) cannot both hold: the countries are at least {dist:.0f} km apart, "
                f"light in fibre covers {(loc.min_rtt_ms + o.min_rtt_ms) * KM_PER_MS_RTT:.0f} km in both RTTs"
            ),
        })
    return out


def apply_conflicts(locations: dict[str, Location], conflicts: list[dict[str, Any]]) -> None:
    """Mark the locations named in pairwise conflicts as contested, with the pair as evidence."""
    for c in conflicts:
        loc = locations.get(c["ip"])
        if loc is None:
            continue
        loc.evidence.append(Evidence("rtt-pairwise", None, c["detail"], "rtt"))
        loc.contradictions.append(c["detail"])
        loc.confidence = "contested"
