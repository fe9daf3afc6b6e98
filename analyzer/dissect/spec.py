"""What a protocol module declares to the registry, and the per-flow state its dissect hooks fill.

A protocol module (stun.py, zoom.py, ...) ends with one `DISSECTOR = Dissector(...)` that says:
- its payload kinds (`Kind`: name, fixed code, role, whether the scan samples it as control
  traffic, protocol label),
- its per-packet kind rules (`Rule`: transport, priority in the ladder, the kinds it emits, the
  numpy function; the compiled twin in _kinds.c implements the same rule under the same name),
- its fact columns with their types (the batch dataset's column types, batch/schema.py) and the
  hooks that fill them from a flow's payload samples (`FlowContext`),
- the protocol labels it sets and how specific each is (which one names a flow).

analyzer/dissect/registry.py collects the declarations and derives every table from them;
docs/adding_a_protocol.md walks through adding one. This module imports nothing from the
protocol modules, so they can all import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from analyzer.dissect.budget import Budget

MAX_LIST = 16  # cap on list-valued facts (usernames, SSRCs) so hostile flows stay small


@dataclass(frozen=True, slots=True)
class Kind:
    """One per-packet payload kind.

    `code` is the kind's fixed number (the C enum, the scan's counters); `role` is the flow role
    its bytes always have, or None when they take the flow's channel role (TCP/TLS/QUIC/SIP
    bytes, whose purpose depends on the channel); `control` asks the scan to keep every packet
    of the kind (up to its sample limit) for dissection; `label` names the flow's protocol when
    this kind dominates a flow whose samples said nothing.
    """

    name: str
    code: int
    role: str | None = None
    control: bool = False
    label: str | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """A per-packet kind rule: `fn(bytes, sport, dport)` returns one mask, or one mask per entry
    of `kinds` (first match wins inside the rule too). Lower `priority` is tried first."""

    name: str
    transport: str  # "udp" or "tcp"
    priority: int
    kinds: tuple[str, ...]
    fn: Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Hook:
    """A flow-level dissect step; returns True when the flow is fully explained (stop there)."""

    order: int
    fn: Callable[[FlowContext], bool | None]


@dataclass(frozen=True, slots=True)
class PacketHook:
    """A per-datagram dissect step `fn(ctx, payload, direction, ts_ns)`; True claims the datagram."""

    order: int
    fn: Callable[[FlowContext, bytes, int, int], bool]


@dataclass(frozen=True)
class Dissector:
    """Everything one protocol contributes. Hooks run in `order` across all dissectors."""

    name: str
    kinds: tuple[Kind, ...] = ()
    rules: tuple[Rule, ...] = ()
    # (column, type) with a type of batch/schema.TYPE_NAMES: "str", "bool", "i64", "f64",
    # "list<str>", "list<i64>", "list<addr>" (a list of (ip, port) pairs), "list<rtpmap>", ...
    facts: tuple[tuple[str, str], ...] = ()
    # Protocol labels this dissector may put in a flow's `protocols` and their rank: when a flow
    # carries several, the lowest rank (the one that carries the payload) names the flow.
    labels: tuple[tuple[str, int], ...] = ()
    udp_flow: tuple[Hook, ...] = ()  # before the datagrams (DNS claims its ports here)
    udp_packet: tuple[PacketHook, ...] = ()
    udp_finish: tuple[Hook, ...] = ()  # after the datagrams (flights, pooled statistics)
    tcp_flow: tuple[Hook, ...] = ()  # on the reassembled streams


class Facts(dict):
    """A facts row under construction; list-valued facts keep insertion order, no duplicates.
    Only keys in the registry's FACT_COLUMNS leave the dissection (state between hooks belongs in
    FlowContext.scratch)."""

    def add(self, key: str, value: object) -> None:
        if value is None:
            return
        items = self.setdefault(key, [])
        if value not in items and len(items) < MAX_LIST:
            items.append(value)

    def first(self, key: str, value: object) -> None:
        if value is not None and self.get(key) is None:
            self[key] = value

    def proto(self, name: str) -> None:
        self.add("protocols", name)


@dataclass(frozen=True)
class FlowMeta:
    transport: str
    client_port: int
    server_port: int
    client_ip: str
    server_ip: str

    def port_in(self, ports: Any) -> bool:
        return self.server_port in ports or self.client_port in ports


@dataclass
class FlowContext:
    """One flow being dissected: its endpoints, its samples, the facts row and the DNS answers.

    `scratch` holds per-dissector state between hooks (datagrams kept for a flight), keyed by the
    dissector's name; `packet` re-runs the datagram ladder on an inner payload (TURN ChannelData);
    `budget` is the session's memory budget (dissect/budget.py), shared by all flows.
    """

    meta: FlowMeta
    ts_ns: list[int]
    dirs: list[int]
    seqs: list[int]
    payloads: list[bytes]
    fid: int = 0
    facts: Facts = field(default_factory=Facts)
    dns_rows: list[tuple[str, str, int, tuple[str, ...], int]] = field(default_factory=list)
    scratch: dict[str, Any] = field(default_factory=dict)
    depth: int = 0
    packet: Callable[[FlowContext, bytes, int, int], None] | None = None
    streams: dict[int, bytes] = field(default_factory=dict)
    budget: Budget = field(default_factory=Budget)

    def first_ts(self, d: int) -> int:
        for t, x in zip(self.ts_ns, self.dirs, strict=True):
            if x == d:
                return t
        return self.ts_ns[0] if self.ts_ns else 0

    def state(self, name: str, factory: Callable[[], Any]) -> Any:
        value = self.scratch.get(name)
        if value is None:
            value = self.scratch[name] = factory()
        return value


def clean_text(text: str | None) -> str | None:
    """Captured text made safe to print: control and undecodable characters become '?'."""
    if text is None:
        return None
    return "".join(c if c.isprintable() and c != "\ufffd" else "?" for c in text[:256])
