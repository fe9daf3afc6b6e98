"""Discord voice: the UDP IP discovery exchange and the keep-alive (protocols.md 2.5).

IP discovery is 74 bytes: type (1 request, 2 response), length 70, SSRC, a 64-byte NUL-padded
address and a port; the response's address is the client's public (reflexive) address, as a
STUN mapped address is. The keep-alive is 8 bytes starting 0x1337cafe. Pure functions.
"""

from __future__ import annotations

import ipaddress

from analyzer.dissect.spec import Dissector, FlowContext, PacketHook

DISCOVERY_LEN = 74
DISCOVERY_HEADS = (b"\x00\x01\x00\x46", b"\x00\x02\x00\x46")  # request, response; length 70
DISCOVERY_RESPONSE = 2
KEEPALIVE = b"\x13\x37\xca\xfe"
KEEPALIVE_LEN = 8


def discovery_address(p: bytes) -> str | None:
    """"ip:port" carried by an IP discovery message, or None when the address does not parse."""
    raw = p[8:72].split(b"\x00", 1)[0]
    try:
        ip = ipaddress.ip_address(raw.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None
    return f"{ip}:{int.from_bytes(p[72:74], 'big')}"


def _discovery(ctx: FlowContext, p: bytes, d: int, ts_ns: int) -> bool:
    # Runs before STUN: the discovery passes STUN's first-byte test but not its length check.
    if len(p) != DISCOVERY_LEN or p[:4] not in DISCOVERY_HEADS:
        return False
    f = ctx.facts
    f.proto("discord")
    # The fact is the public address from the first response that carries one, else True.
    if not isinstance(f.get("discord_ip_discovery"), str):
        address = discovery_address(p) if p[1] == DISCOVERY_RESPONSE else None
        f["discord_ip_discovery"] = address if address is not None else True
    return True


def _keepalive(ctx: FlowContext, p: bytes, d: int, ts_ns: int) -> bool:
    if len(p) == KEEPALIVE_LEN and p[:4] == KEEPALIVE:
        ctx.facts["discord_keepalive"] = True
        return True
    return False


DISSECTOR = Dissector(
    name="discord",
    facts=(("discord_ip_discovery", "str"), ("discord_keepalive", "bool")),
    labels=(("discord", 110),),
    udp_packet=(PacketHook(10, _discovery), PacketHook(11, _keepalive)),
)
