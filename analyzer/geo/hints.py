"""Hostname hints: the facility an operator encodes in its servers' names, as location evidence.

Rules live in analyzer/data/hostname_hints.toml, one per operator naming convention, each with its
source. A code is only read inside a rule's pattern (never as a substring of an ordinary word), and
resolved either through the rule's own table or, for airport codes, through the maintained PyPI
dataset airportsdata (its airports and its IATA multi-airport city codes). An unknown code gives
no hint rather than a guess.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class HostnameHint:
    hostname: str
    rule: str
    operator: str
    code: str
    country: str
    place: str
    source: str

    @property
    def detail(self) -> str:
        return f"{self.hostname}: '{self.code}' = {self.place} ({self.operator} naming rule {self.rule})"


@dataclass(frozen=True)
class _Rule:
    name: str
    operator: str
    pattern: re.Pattern[str]
    codes: str
    source: str


@cache
def _data() -> tuple[tuple[_Rule, ...], dict[str, dict[str, Any]]]:
    text = resources.files("analyzer.data").joinpath("hostname_hints.toml").read_text(encoding="utf-8")
    raw = tomllib.loads(text)
    rules = tuple(
        _Rule(r["name"], r["operator"], re.compile(r["pattern"]), r["codes"], r["source"]) for r in raw["rule"]
    )
    return rules, raw.get("codes", {})


def _airport_text(name: str) -> str:
    """A data file of PyPI airportsdata as text ("" without the package)."""
    try:
        return resources.files("airportsdata").joinpath(name).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        return ""


@cache
def _iata_table() -> dict[str, tuple[str, str]]:
    """IATA code -> (country, place): airports, then IATA multi-airport city codes (MIL, LON).

    Built by one regex pass over airportsdata's CSV text (about 0.1 s; its own csv loader takes
    0.26 s) and kept in the cache directory per airportsdata version, so an `analyze` that meets
    an airport-coded name reads a small JSON file instead.
    """
    import importlib.metadata
    import json

    from analyzer.geo.embedded import cache_dir

    try:
        version = importlib.metadata.version("airportsdata")
        cached = cache_dir() / f"iata-{version}.json"
    except (importlib.metadata.PackageNotFoundError, OSError):
        return _build_iata_table()
    try:
        return {k: (v[0], v[1]) for k, v in json.loads(cached.read_text(encoding="utf-8")).items()}
    except (OSError, ValueError, TypeError, IndexError, AttributeError):
        pass
    table = _build_iata_table()
    tmp = cached.with_suffix(f".{os.getpid()}.part")
    try:  # written whole and renamed, so a parallel run never reads half a file
        tmp.write_text(json.dumps(table), encoding="utf-8")
        os.replace(tmp, cached)
    except OSError:
        tmp.unlink(missing_ok=True)
    return table


def _build_iata_table() -> dict[str, tuple[str, str]]:
    table: dict[str, tuple[str, str]] = {}
    # iata_macs.csv: "Country","City Code","City Name",...
    for cc, code, city in re.findall(r'^"([A-Z]{2})","([A-Z]{3})","([^"\n]*)"', _airport_text("iata_macs.csv"), re.M):
        table.setdefault(code, (cc, f"{city} (IATA city code {code})"))
    # airports.csv: "icao","iata","name","city","subd","country",...
    rows = re.findall(r'^"[^"\n]*","([A-Z]{3})","([^"\n]*)","([^"\n]*)","[^"\n]*","([A-Z]{2})"',
                      _airport_text("airports.csv"), re.M)
    for code, name, city, cc in rows:
        table[code] = (cc, f"{city or name} airport {code}")
    return table


def _airport(code: str) -> tuple[str, str] | None:
    return _iata_table().get(code.upper())


def _resolve(table: str, code: str, codes: dict[str, dict[str, Any]]) -> tuple[str, str] | None:
    if table == "iata":
        return _airport(code)
    entry = codes.get(table, {}).get(code)
    if not isinstance(entry, dict) or not entry.get("country"):
        return None
    return str(entry["country"]).upper(), str(entry.get("place", code))


@lru_cache(maxsize=65536)  # bounded: a batch run meets many captures' (hostile) names
def hostname_hints(hostname: str) -> tuple[HostnameHint, ...]:
    """Every rule's reading of one name (usually none, at most one per rule)."""
    name = (hostname or "").strip().lower().rstrip(".")
    if not name or len(name) > 253 or name.startswith("*"):
        return ()
    rules, codes = _data()
    out: list[HostnameHint] = []
    for rule in rules:
        m = rule.pattern.search(name)
        if m is None:
            continue
        code = m.group("code")
        hit = _resolve(rule.codes, code, codes)
        if hit is not None:
            out.append(HostnameHint(name, rule.name, rule.operator, code, hit[0], hit[1], rule.source))
    return tuple(out)
