"""SSDP, UPnP's discovery protocol (UPnP Device Architecture 2.0, section 1): HTTP-like text
over UDP 1900, multicast to 239.255.255.250 / ff02::c.

Conferencing clients send it to find screens to cast to: the Zoom client in zoom.pcap searches
for DIAL receivers (`ST: urn:dial-multiscreen-org:service:dial:1`). Before this module a NOTIFY
read as SIP (same method name) and an M-SEARCH as an unknown datagram. Facts: what was searched
for or announced (ST / NT) and the announcing device's SERVER string. Pure functions, never raise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analyzer.dissect.columns import Bytes, port_in
from analyzer.dissect.spec import Dissector, FlowContext, Kind, PacketHook, Rule, clean_text

PORT = 1900
# The three start lines: a search, an announcement, and the unicast answer to a search.
PREFIXES: tuple[bytes, ...] = (b"M-SEARCH * ", b"NOTIFY * ", b"HTTP/1.1 ")
_MAX_MESSAGE = 8192  # SSDP fits in one datagram; never split more text than that


@dataclass(frozen=True, slots=True)
class SsdpMessage:
    start: str  # "M-SEARCH", "NOTIFY" or the response status ("200")
    target: str | None  # ST (search, response) or NT (announcement)
    server: str | None  # SERVER: OS/version UPnP/2.0 product/version
    location: str | None  # LOCATION: where the device description lives


def parse_ssdp(data: bytes) -> SsdpMessage | None:
    """One SSDP datagram, or None when it does not start like one or has no header block end."""
    if not data.startswith(PREFIXES):
        return None
    head, sep, _ = data[:_MAX_MESSAGE].partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("ascii", "replace").split("\r\n")
    words = lines[0].split(" ")
    if data.startswith(b"HTTP/1.1 "):
        if len(words) < 2 or not (len(words[1]) == 3 and words[1].isdigit()):
            return None
        start = words[1]
    elif len(words) != 3 or words[2] != "HTTP/1.1":
        return None
    else:
        start = words[0]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, colon, value = line.partition(":")
        if colon:
            headers.setdefault(key.strip().upper(), value.strip())
    return SsdpMessage(
        start=start,
        target=clean_text(headers.get("ST") or headers.get("NT")),
        server=clean_text(headers.get("SERVER")),
        location=clean_text(headers.get("LOCATION")),
    )


# --- Registration: kinds, rules and facts (analyzer/dissect/registry.py) ---------------------


def _rule(b: Bytes, sport: np.ndarray, dport: np.ndarray) -> np.ndarray:
    # The port alone is not enough (anything can use 1900), the start line alone would take SIP's
    # NOTIFY: both must hold.
    return port_in(sport, dport, (PORT,)) & b.starts_with_any(PREFIXES)


def _packet(ctx: FlowContext, p: bytes, d: int, ts_ns: int) -> bool:
    if not ctx.meta.port_in((PORT,)):
        return False
    msg = parse_ssdp(p)
    if msg is None:
        return False
    f = ctx.facts
    f.proto("ssdp")
    f.add("ssdp_targets", msg.target)
    f.first("ssdp_server", msg.server)
    return True


DISSECTOR = Dissector(
    name="ssdp",
    # Discovery on the LAN: neither the call's signaling nor its media.
    kinds=(Kind("ssdp", 21, role="other", label="ssdp"),),
    rules=(Rule("ssdp", "udp", 105, ("ssdp",), _rule),),
    facts=(("ssdp_targets", "list<str>"), ("ssdp_server", "str")),
    labels=(("ssdp", 135),),
    udp_packet=(PacketHook(105, _packet),),
)
