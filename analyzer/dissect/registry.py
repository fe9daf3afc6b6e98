"""The dissector registry: every per-protocol table derived from the protocol modules' declarations.

Each protocol module ends with `DISSECTOR = Dissector(...)` (see spec.py). This module lists the
modules once, in the order their fact columns appear, and derives from them:

- the payload kinds: names by code (`KIND_NAMES`), the role of each kind's bytes (`KIND_ROLE`),
  the kinds the scan samples as control traffic (`CONTROL_KINDS`), the protocol label of a kind
  (`KIND_LABEL`);
- the per-packet kind ladders (`LADDERS["udp"]`, `LADDERS["tcp"]`: rules by priority, first match
  wins), which kinds.py evaluates with numpy and _kinds.c mirrors rule by rule;
- the fact columns (`FACT_COLUMNS`, with their types in `FACT_TYPES`) and the order in which
  a flow's protocol labels name it (`PROTOCOL_ORDER`);
- the dissect hooks in the order flowfacts.py runs them.

The compiled kinds (_kinds.c) export their enum names and their two ladders; `compiled_mismatch`
compares them with the registry when kinds.py loads the extension. Adding a protocol:
docs/adding_a_protocol.md.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from analyzer.dissect import discord, dns, dtls, http, quic, rtp, sip, ssdp, stun, tls, whatsapp, zoom, zrtp
from analyzer.dissect.spec import Dissector, Hook, Kind, PacketHook, Rule

# Kinds that belong to no protocol: no payload, an unrecognised datagram, an unrecognised segment.
BASE_KINDS: tuple[Kind, ...] = (Kind("none", 0), Kind("other", 1), Kind("tcp", 2))
# In fact-column order: a new protocol goes at the end.
MODULES: tuple[ModuleType, ...] = (tls, quic, http, stun, dtls, rtp, zoom, sip, zrtp, whatsapp, discord, dns, ssdp)
DISSECTORS: tuple[Dissector, ...] = tuple(m.DISSECTOR for m in MODULES)
TRANSPORTS = ("udp", "tcp")
DEFAULT_KIND = {"udp": "other", "tcp": "tcp"}  # what a payload no rule matches is


class RegistryError(ValueError):
    """Two declarations contradict each other (a duplicate code, an unknown kind, ...)."""


def _kinds(dissectors: tuple[Dissector, ...]) -> tuple[Kind, ...]:
    kinds = sorted([*BASE_KINDS, *(k for d in dissectors for k in d.kinds)], key=lambda k: k.code)
    names = [k.name for k in kinds]
    if [k.code for k in kinds] != list(range(len(kinds))):
        raise RegistryError(f"kind codes must be 0..{len(kinds) - 1} without gaps or repeats: {names}")
    if len(set(names)) != len(names):
        raise RegistryError(f"kind names repeat: {names}")
    return tuple(kinds)


def _ladders(dissectors: tuple[Dissector, ...], names: set[str]) -> dict[str, tuple[Rule, ...]]:
    out = {}
    for transport in TRANSPORTS:
        rules = [r for d in dissectors for r in d.rules if r.transport == transport]
        priorities = [r.priority for r in rules]
        if len(set(priorities)) != len(priorities):
            raise RegistryError(f"two {transport} rules share a priority: {sorted(priorities)}")
        out[transport] = tuple(sorted(rules, key=lambda r: r.priority))
    for d in dissectors:
        for r in d.rules:
            if r.transport not in TRANSPORTS or not set(r.kinds) <= names:
                raise RegistryError(f"rule {r.name!r} of {d.name}: bad transport or unknown kind {r.kinds}")
    return out


# The columns every facts row has: the most specific protocol seen, every one recognised, and
# the parsers that failed on the flow.
BASE_FACTS: tuple[tuple[str, str], ...] = (("protocol", "str"), ("protocols", "list<str>"))
ERROR_FACT: tuple[str, str] = ("errors", "list<str>")


def _facts(dissectors: tuple[Dissector, ...]) -> dict[str, str]:
    """Fact column -> type, in column order."""
    cols = [*BASE_FACTS, *(c for d in dissectors for c in d.facts), ERROR_FACT]
    names = [c for c, _t in cols]
    if len(set(names)) != len(names):
        raise RegistryError(f"a fact column is declared twice: {names}")
    return dict(cols)


def _hooks(dissectors: tuple[Dissector, ...], attr: str) -> tuple[Any, ...]:
    hooks: list[Hook | PacketHook] = [h for d in dissectors for h in getattr(d, attr)]
    return tuple(sorted(hooks, key=lambda h: h.order))  # stable: ties keep registry order


KINDS = _kinds(DISSECTORS)
KIND_NAMES: tuple[str, ...] = tuple(k.name for k in KINDS)
KIND_CODES: dict[str, int] = {k.name: k.code for k in KINDS}
KIND_ROLE: dict[str, str] = {k.name: k.role for k in KINDS if k.role is not None}
CONTROL_KINDS: frozenset[str] = frozenset(k.name for k in KINDS if k.control)
KIND_LABEL: dict[str, str] = {k.name: k.label for k in KINDS if k.label is not None}
LADDERS = _ladders(DISSECTORS, set(KIND_NAMES))
FACT_TYPES: dict[str, str] = _facts(DISSECTORS)
FACT_COLUMNS: tuple[str, ...] = tuple(FACT_TYPES)
# When one flow carries several protocols (WebRTC: STUN, DTLS, SRTP on one 5-tuple) the flow's
# protocol is the first of these that was seen: the one that carries the payload.
PROTOCOL_ORDER: tuple[str, ...] = tuple(
    name for name, _rank in sorted((lab for d in DISSECTORS for lab in d.labels), key=lambda lab: lab[1])
)
UDP_FLOW: tuple[Hook, ...] = _hooks(DISSECTORS, "udp_flow")
UDP_PACKET: tuple[PacketHook, ...] = _hooks(DISSECTORS, "udp_packet")
UDP_FINISH: tuple[Hook, ...] = _hooks(DISSECTORS, "udp_finish")
TCP_FLOW: tuple[Hook, ...] = _hooks(DISSECTORS, "tcp_flow")


def compiled_mismatch(kind_names: tuple[str, ...], rules: dict[str, tuple[str, ...]]) -> str | None:
    """Why compiled kinds with this enum (`kind_names`) and these ladders (rule names per
    transport) cannot serve the registry, or None when they can.

    The C enum must name the registry's kinds with the same codes (it may lack kinds added
    since, at the end), and each C ladder must be the registry ladder's first rules in order:
    rules without a compiled twin then run in numpy on what the C left at the default kind.
    """
    if not kind_names or tuple(kind_names) != KIND_NAMES[: len(kind_names)]:
        return f"compiled kinds {tuple(kind_names)} do not match the registry's {KIND_NAMES}"
    for transport in TRANSPORTS:
        c_rules = tuple(rules.get(transport, ()))
        names = tuple(r.name for r in LADDERS[transport])
        if c_rules != names[: len(c_rules)]:
            return f"compiled {transport} rules {c_rules} are not the first of the registry's {names}"
    return None


def compiled_declarations(compiled: Any) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """(enum names, rule names per transport) that the compiled kinds module exports."""
    rules = {t: tuple(getattr(compiled, f"{t.upper()}_RULES", ())) for t in TRANSPORTS}
    return tuple(getattr(compiled, "KIND_NAMES", ())), rules


def numpy_only_rules(compiled_rules: tuple[str, ...], transport: str) -> tuple[Rule, ...]:
    """The ladder's rules the compiled kinds do not implement (they all come after the rest)."""
    return LADDERS[transport][len(compiled_rules) :]
