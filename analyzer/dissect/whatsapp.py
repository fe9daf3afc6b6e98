"""WhatsApp's chat/signalling connection: the prologue that opens its Noise handshake on TCP.

protocols.md 2.5: the client's first bytes are a 4-byte prologue, "ED" 0x00 0x01 in current
clients or "WA" + major/minor version in older ones (whatsapp_voice_and_message.pcap:
57 41 01 05). Pure functions, never raise.
"""

from __future__ import annotations

from analyzer.dissect.spec import Dissector, FlowContext, Hook

PROLOGUE_ED = b"ED\x00\x01"
PROLOGUE_WA = b"WA"


def prologue(c2s: bytes) -> str | None:
    """The prologue at the start of the client's stream as text ("ED 0.1", "WA 1.5"), or None."""
    if c2s.startswith(PROLOGUE_ED):
        return "ED 0.1"
    # Version digits below 10 and a few bytes after: "WA" alone starts many texts.
    if len(c2s) >= 8 and c2s[:2] == PROLOGUE_WA and c2s[2] < 10 and c2s[3] < 10:
        return f"WA {c2s[2]}.{c2s[3]}"
    return None


def _tcp(ctx: FlowContext) -> None:
    found = prologue(ctx.streams[0])
    if found is not None:
        ctx.facts["whatsapp_prologue"] = found
        ctx.facts.proto("whatsapp")


DISSECTOR = Dissector(
    name="whatsapp",
    facts=(("whatsapp_prologue", "str"),),
    labels=(("whatsapp", 100),),
    tcp_flow=(Hook(30, _tcp),),
)
