"""Known anycast prefixes (analyzer/data/anycast.toml, each with its operator's statement)."""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from analyzer.geo.scopes import normalize_ip


@dataclass(frozen=True)
class AnycastPrefix:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    operator: str
    source: str


@cache
def anycast_prefixes() -> tuple[AnycastPrefix, ...]:
    text = resources.files("analyzer.data").joinpath("anycast.toml").read_text(encoding="utf-8")
    out = []
    for entry in tomllib.loads(text).get("prefix", []):
        for net in entry["networks"]:
            out.append(AnycastPrefix(ipaddress.ip_network(net), entry["operator"], entry["source"]))
    return tuple(out)


@cache
def _masks() -> tuple[tuple[int, int, int, AnycastPrefix], ...]:
    # (version, network, netmask) as integers: a masked compare is much cheaper than `addr in net`.
    return tuple(
        (p.network.version, int(p.network.network_address), int(p.network.netmask), p) for p in anycast_prefixes()
    )


def known_anycast(ip: str) -> AnycastPrefix | None:
    """The known anycast prefix holding this address, if any."""
    addr = normalize_ip(ip)
    if addr is None:
        return None
    value, version = int(addr), addr.version
    for v, net, mask, p in _masks():
        if v == version and value & mask == net:
            return p
    return None
