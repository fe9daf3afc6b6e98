"""Load the application signatures (analyzer/data/signatures.toml) into matchers.

The data file is the only place where apps are described; this module only compiles it. A bad
entry (invalid regex or CIDR) raises SignatureError with its position, at load time, so a typo
can never silently disable a rule.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

CONTRACT_APPS = (
    "zoom", "teams", "webex", "meet", "jitsi", "whatsapp", "signal", "telegram", "discord", "skype",
    "facetime", "sip", "webrtc", "unknown",
)
HOST_FIELDS = ("sni", "dns", "cert", "http")


class SignatureError(ValueError):
    pass


@dataclass(frozen=True)
class HostRule:
    app: str
    label: str
    regex: re.Pattern[str]
    confidence: float
    fields: tuple[str, ...]
    channel: str | None  # "key_delivery", "media_relay" or None


@dataclass(frozen=True)
class PortRule:
    app: str
    label: str
    transport: str
    ranges: tuple[tuple[int, int], ...]
    confidence: float
    with_range: str | None
    webrtc_only: bool

    def matches(self, port: int) -> bool:
        return any(lo <= port <= hi for lo, hi in self.ranges)


@dataclass(frozen=True)
class StunRule:
    app: str
    label: str
    confidence: float
    attr_types: frozenset[int] = frozenset()
    attr_range: tuple[int, int] | None = None
    msg_types: frozenset[int] = frozenset()
    realm: tuple[str, ...] = ()
    software: tuple[str, ...] = ()


@dataclass(frozen=True)
class PayloadRule:
    app: str
    label: str
    fact: str
    confidence: float


@dataclass(frozen=True)
class RangeHit:
    app: str
    label: str
    confidence: float
    cidr: str
    source: str
    date: str


class _RangeTable:
    """Longest-prefix lookup over sorted integer intervals, one table per IP version."""

    def __init__(self) -> None:
        self._items: dict[int, list[tuple[int, int, int, RangeHit]]] = {4: [], 6: []}
        self._starts: dict[int, list[int]] = {4: [], 6: []}

    def add(self, net: ipaddress.IPv4Network | ipaddress.IPv6Network, hit: RangeHit) -> None:
        self._items[net.version].append(
            (int(net.network_address), int(net.broadcast_address), net.prefixlen, hit)
        )

    def freeze(self) -> None:
        for v in (4, 6):
            self._items[v].sort(key=lambda t: (t[0], -t[2]))
            self._starts[v] = [t[0] for t in self._items[v]]

    def lookup(self, ip: str) -> list[RangeHit]:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return []
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        v, x = addr.version, int(addr)
        items = self._items[v]
        pos = bisect.bisect_right(self._starts[v], x)
        hits: list[tuple[int, RangeHit]] = []
        # Ranges never nest deeply here, so a short backwards scan finds every cover.
        for i in range(pos - 1, max(pos - 64, -1), -1):
            lo, hi, plen, hit = items[i]
            if lo <= x <= hi:
                hits.append((plen, hit))
        hits.sort(key=lambda t: -t[0])
        return [h for _, h in hits]


@dataclass
class Signatures:
    hosts: list[HostRule] = field(default_factory=list)
    ports: list[PortRule] = field(default_factory=list)
    stun: list[StunRule] = field(default_factory=list)
    payload: list[PayloadRule] = field(default_factory=list)
    ranges: _RangeTable = field(default_factory=_RangeTable)
    inherit: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def host_matches(self, name: str | None, where: str) -> list[HostRule]:
        if not name:
            return []
        name = name.lower().rstrip(".")
        if where == "cert" and name.startswith("*."):
            name = name[2:]
        return [r for r in self.hosts if where in r.fields and r.regex.search(name)]

    def range_hits(self, ip: str) -> list[RangeHit]:
        return self.ranges.lookup(ip)


def _app(entry: dict[str, Any], where: str) -> str:
    app = entry.get("app")
    if app not in CONTRACT_APPS:
        raise SignatureError(f"{where}: unknown app {app!r}")
    return app


def _conf(entry: dict[str, Any], where: str) -> float:
    c = entry.get("confidence")
    if not isinstance(c, int | float) or not 0 <= c <= 1:
        raise SignatureError(f"{where}: confidence must be a number in [0, 1]")
    return float(c)


def parse_signatures(data: dict[str, Any]) -> Signatures:
    sig = Signatures(meta=dict(data.get("meta", {})))
    for i, e in enumerate(data.get("host", [])):
        where = f"host[{i}]"
        try:
            regex = re.compile(e["pattern"])
        except (KeyError, re.error) as exc:
            raise SignatureError(f"{where}: bad pattern: {exc}") from exc
        fields = tuple(e.get("fields", HOST_FIELDS))
        if not set(fields) <= set(HOST_FIELDS):
            raise SignatureError(f"{where}: fields must be among {HOST_FIELDS}")
        sig.hosts.append(
            HostRule(_app(e, where), e.get("label", e["pattern"]), regex, _conf(e, where), fields, e.get("channel"))
        )
    for i, e in enumerate(data.get("ip_range", [])):
        where = f"ip_range[{i}]"
        app, conf = _app(e, where), _conf(e, where)
        for cidr in e.get("cidrs", []):
            try:
                net = ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise SignatureError(f"{where}: bad CIDR {cidr!r}") from exc
            hit = RangeHit(app, e.get("label", app), conf, str(net), e.get("source", ""), e.get("date", ""))
            sig.ranges.add(net, hit)
    sig.ranges.freeze()
    for i, e in enumerate(data.get("port", [])):
        where = f"port[{i}]"
        ranges = tuple((int(lo), int(hi)) for lo, hi in e.get("ranges", []))
        sig.ports.append(
            PortRule(_app(e, where), e.get("label", ""), e.get("transport", "udp"), ranges, _conf(e, where),
                     e.get("with_range"), bool(e.get("webrtc_only", False)))
        )
    for i, e in enumerate(data.get("stun", [])):
        where = f"stun[{i}]"
        ar = e.get("attr_range")
        sig.stun.append(
            StunRule(
                _app(e, where), e.get("label", ""), _conf(e, where),
                attr_types=frozenset(int(x) for x in e.get("attr_types", [])),
                attr_range=(int(ar[0]), int(ar[1])) if ar else None,
                msg_types=frozenset(int(x) for x in e.get("msg_types", [])),
                realm=tuple(s.lower() for s in e.get("realm", [])),
                software=tuple(s.lower() for s in e.get("software", [])),
            )
        )
    for i, e in enumerate(data.get("payload", [])):
        where = f"payload[{i}]"
        sig.payload.append(PayloadRule(_app(e, where), e.get("label", ""), e["fact"], _conf(e, where)))
    sig.inherit = {k: float(v) for k, v in data.get("inherit", {}).items()}
    return sig


def load_signatures(path: str | Path | None = None) -> Signatures:
    """Signatures from a TOML file; the packaged analyzer/data/signatures.toml by default."""
    if path is None:
        return _default()
    from analyzer.common.files import SIGNATURES_MAX_BYTES, read_bounded

    return parse_signatures(tomllib.loads(read_bounded(path, SIGNATURES_MAX_BYTES, "signatures").decode("utf-8")))


@lru_cache(maxsize=1)
def _default() -> Signatures:
    text = resources.files("analyzer").joinpath("data/signatures.toml").read_bytes()
    return parse_signatures(tomllib.loads(text.decode("utf-8")))
