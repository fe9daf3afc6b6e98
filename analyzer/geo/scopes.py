"""Address scopes: which addresses have no country at all and must never be looked up.

A private, CGNAT, loopback, link-local, multicast, broadcast, documentation or reserved address
says nothing about where a call travelled; giving it a country (some databases do) would put the
capture's own LAN on the map. `address_scope()` returns "public" for everything else.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

PUBLIC = "public"
SCOPES = (
    "public", "private", "cgnat", "loopback", "link-local", "multicast", "broadcast",
    "documentation", "reserved", "unspecified", "invalid",
)

_V4: list[tuple[ipaddress.IPv4Network, str]] = [
    (ipaddress.IPv4Network(net), scope)
    for net, scope in [
        ("255.255.255.255/32", "broadcast"),
        ("0.0.0.0/32", "unspecified"),
        ("0.0.0.0/8", "reserved"),  # "this network" (RFC 791)
        ("10.0.0.0/8", "private"),  # RFC 1918
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("100.64.0.0/10", "cgnat"),  # RFC 6598 shared address space
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("192.0.0.0/24", "reserved"),  # IETF protocol assignments (RFC 6890)
        ("192.0.2.0/24", "documentation"),  # TEST-NET-1..3 (RFC 5737)
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("198.18.0.0/15", "reserved"),  # benchmarking (RFC 2544)
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # future use (RFC 1112)
    ]
]

_V6: list[tuple[ipaddress.IPv6Network, str]] = [
    (ipaddress.IPv6Network(net), scope)
    for net, scope in [
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "private"),  # local-use NAT64 (RFC 8215)
        ("100::/64", "reserved"),  # discard-only (RFC 6666)
        ("2001:db8::/32", "documentation"),  # RFC 3849
        ("3fff::/20", "documentation"),  # RFC 9637
        ("2001::/23", "reserved"),  # IETF protocol assignments (RFC 2928)
        ("fc00::/7", "private"),  # unique local addresses (RFC 4193)
        ("fe80::/10", "link-local"),
        ("fec0::/10", "reserved"),  # deprecated site-local
        ("ff00::/8", "multicast"),
    ]
]

# (network address, netmask, scope) as integers: a masked compare is much cheaper than `addr in net`.
_V4_INT = [(int(n.network_address), int(n.netmask), s) for n, s in _V4]
_V6_INT = [(int(n.network_address), int(n.netmask), s) for n, s in _V6]
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def normalize_ip(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Parse an address; IPv4-mapped and well-known-prefix NAT64 IPv6 become the IPv4 they carry.

    The flows stage writes IPv4 as dotted quads, but other inputs (a user, a v6 socket dump) may
    use ::ffff:a.b.c.d; a NAT64 address 64:ff9b::a.b.c.d reaches the IPv4 server it embeds, so that
    server is what gets located.
    """
    try:
        addr = ipaddress.ip_address(ip.strip().split("%", 1)[0])
    except (ValueError, AttributeError):
        return None
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        if addr in _NAT64:
            return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return addr


@lru_cache(maxsize=65536)
def address_scope(ip: str) -> str:
    """One of SCOPES; "invalid" when the text is not an IP address."""
    addr = normalize_ip(ip)
    if addr is None:
        return "invalid"
    value = int(addr)
    if isinstance(addr, ipaddress.IPv4Address):
        for net, mask, scope in _V4_INT:
            if value & mask == net:
                return scope
        return PUBLIC
    for net, mask, scope in _V6_INT:
        if value & mask == net:
            return scope
    # Outside 2000::/3 nothing is allocated for global unicast (::/8 leftovers, 4000::/2, ...).
    return PUBLIC if addr in _GLOBAL_UNICAST else "reserved"
