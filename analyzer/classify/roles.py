"""Roles of a flow (signaling, key_exchange, media, nat_traversal, dns, other) and the exact
split of its bytes between them.

The split uses the per-packet payload kinds counted by the scan (`kind_bytes_<kind>` columns):
every kind has a fixed role (STUN -> nat_traversal, DTLS handshake -> key_exchange, RTP -> media,
...) except the "channel" kinds (TCP/TLS/QUIC/SIP bytes, empty packets, unrecognised payload),
whose role depends on what the channel is for (see `channel_role`). Whatever the kinds do not
cover goes to the channel role too, so the split always sums exactly to the flow's bytes.
"""

from __future__ import annotations

from analyzer.dissect import registry

ROLES = ("signaling", "key_exchange", "media", "nat_traversal", "dns", "other")

# The fixed role of each payload kind's bytes, declared by the protocol modules; kinds without
# one (TCP/TLS/QUIC/SIP bytes, empty packets, unrecognised payload) take the channel role.
KIND_ROLE: dict[str, str] = registry.KIND_ROLE
# Filler on the media path that carries no audio or video (issue 13; role `other` in the
# declarations of zoom.py and rtp.py): Zoom's bandwidth probes (inner type 0x15) and keep-alives
# (0x0a), and RTP packets that are all padding. `other_by_kind` says what a flow's such bytes were.
FILLER_KINDS = ("zoom_probe", "zoom_keepalive", "rtp_padding")

_MEDIA_PROTOCOLS = frozenset(("rtp", "srtp", "zoom", "dtls", "zrtp"))


def channel_role(transport: str, protocol: str | None, protocols: list[str], app: str, channel: str | None,
                 sdp_keys: bool, kind_bytes: dict[str, int]) -> str:
    """Role of the bytes that carry no per-packet signature of their own."""
    protos = set(protocols)
    if protocol == "dns" or "dns" in protos:
        return "dns"
    if protocol == "sip" or "sip" in protos:
        return "key_exchange" if sdp_keys else "signaling"
    if app == "unknown":
        return "other"
    if transport == "tcp" or protocol in ("tls", "quic", "http"):
        if channel == "key_delivery":
            return "key_exchange"
        if channel == "media_relay":
            return "media"
        if protos <= {"stun", "turn"} and protos:
            return "nat_traversal"
        return "signaling"
    if transport != "udp":
        return "other"
    if protos & _MEDIA_PROTOCOLS or not protos:
        return "media"
    # STUN/TURN seen in the samples: opaque datagrams that outweigh the STUN messages are the
    # call itself (Telegram's P2P encryption, Teams' relayed 0x06/0x07 datagrams).
    opaque = kind_bytes.get("other", 0) + kind_bytes.get("none", 0)
    return "media" if opaque > kind_bytes.get("stun", 0) else "nat_traversal"


def split_bytes(total: int, kind_bytes: dict[str, int], chan: str) -> dict[str, int]:
    """Bytes per role, summing exactly to `total`."""
    out: dict[str, int] = {}
    used = 0
    for kind, n in kind_bytes.items():
        if n <= 0:
            continue
        role = KIND_ROLE.get(kind, chan)
        out[role] = out.get(role, 0) + int(n)
        used += int(n)
    rest = int(total) - used
    if rest > 0:
        out[chan] = out.get(chan, 0) + rest
    elif rest < 0:
        # Kinds counted more than the flow's bytes (should not happen): trim the channel role
        # first, then the largest role, so the split still adds up.
        for role in sorted(out, key=lambda r: (r != chan, -out[r])):
            take = min(out[role], -rest)
            out[role] -= take
            rest += take
            if rest == 0:
                break
    ordered = {r: out[r] for r in ROLES if out.get(r, 0) > 0}
    return ordered


def roles_of(split: dict[str, int], chan: str, transport: str, channel: str | None, sdp_keys: bool) -> list[str]:
    roles = set(split)
    # A key-delivery control channel is signaling as well; so is SIP that carries SDP keys.
    if chan == "key_exchange" and (transport == "tcp" or channel == "key_delivery" or sdp_keys):
        roles.add("signaling")
    if not roles:
        roles.add(chan)
    return [r for r in ROLES if r in roles]


def other_by_kind(kind_bytes: dict[str, int]) -> dict[str, int]:
    """The protocol detail of a flow's `other` bytes that have a per-packet kind (probes,
    keep-alives, padding-only RTP): kind -> bytes, only the kinds present."""
    return {k: int(kind_bytes[k]) for k in FILLER_KINDS if kind_bytes.get(k, 0) > 0}
