"""DNS messages (RFC 1035) over UDP and TCP, and the IP -> names map their answers imply.

The names a client resolved are how a flow to a bare IP gets a host name (and so an app), and
CDNs answer through CNAME chains: the IP must map back to the name the client asked for.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from analyzer.dissect.columns import Bytes, port_in
from analyzer.dissect.names import host_name
from analyzer.dissect.spec import Dissector, FlowContext, Hook, Kind, Rule

TYPE_A = 1
TYPE_CNAME = 5
TYPE_AAAA = 28

_MAX_JUMPS = 32  # compression pointers followed per name; more means a loop or an attack
_MAX_NAME = 255
_MAX_RECORDS = 512  # per section; a 64 KiB message cannot hold more meaningful records


@dataclass(frozen=True, slots=True)
class DnsQuestion:
    name: str
    qtype: int
    qclass: int


@dataclass(frozen=True, slots=True)
class DnsRecord:
    name: str
    rtype: int
    rclass: int
    ttl: int
    value: str | None  # address for A/AAAA, target name for CNAME, None for other types


@dataclass(frozen=True, slots=True)
class DnsMessage:
    id: int
    flags: int
    questions: tuple[DnsQuestion, ...]
    answers: tuple[DnsRecord, ...]
    complete: bool  # False when the answer section was cut short (truncated capture)

    @property
    def qr(self) -> bool:
        """True for a response."""
        return bool(self.flags & 0x8000)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def tc(self) -> bool:
        return bool(self.flags & 0x0200)

    @property
    def rcode(self) -> int:
        return self.flags & 0xF


class IpName(NamedTuple):
    ip: str
    name: str
    cname_chain: tuple[str, ...]  # queried name first, the A/AAAA owner last


class _Bad(Exception):
    pass


def _label_text(raw: bytes) -> str:
    # Labels are hostile bytes: keep them printable and unambiguous, compare case-insensitively.
    return raw.decode("ascii", "backslashreplace").lower()


def _name(msg: bytes, pos: int) -> tuple[str, int]:
    """Decode the name at pos; returns (name, position after the name in the original place)."""
    labels: list[str] = []
    total = 0
    jumps = 0
    end: int | None = None
    n = len(msg)
    while True:
        if pos >= n:
            raise _Bad
        length = msg[pos]
        if length == 0:
            pos += 1
            break
        kind = length & 0xC0
        if kind == 0xC0:
            if pos + 1 >= n:
                raise _Bad
            target = ((length & 0x3F) << 8) | msg[pos + 1]
            if end is None:
                end = pos + 2
            jumps += 1
            if jumps > _MAX_JUMPS or target >= n:
                raise _Bad
            pos = target
            continue
        if kind != 0:
            raise _Bad  # extended label types (RFC 6891 dropped them)
        if pos + 1 + length > n:
            raise _Bad
        total += length + 1
        if total > _MAX_NAME:
            raise _Bad
        labels.append(_label_text(msg[pos + 1 : pos + 1 + length]))
        pos += 1 + length
    return ".".join(labels), (end if end is not None else pos)


def _u16(msg: bytes, pos: int) -> int:
    if pos + 2 > len(msg):
        raise _Bad
    return int.from_bytes(msg[pos : pos + 2], "big")


def _rdata_value(msg: bytes, rtype: int, start: int, rdlen: int) -> str | None:
    rdata = msg[start : start + rdlen]
    if rtype == TYPE_A and rdlen == 4:
        return str(ipaddress.IPv4Address(rdata))
    if rtype == TYPE_AAAA and rdlen == 16:
        return str(ipaddress.IPv6Address(rdata))
    if rtype == TYPE_CNAME:
        try:
            return _name(msg, start)[0]
        except _Bad:
            return None
    return None


def _parse_one(msg: bytes) -> DnsMessage | None:
    if len(msg) < 12:
        return None
    ident = _u16(msg, 0)
    flags = _u16(msg, 2)
    qd, an = _u16(msg, 4), _u16(msg, 6)
    pos = 12
    questions: list[DnsQuestion] = []
    try:
        for _ in range(min(qd, _MAX_RECORDS)):
            name, pos = _name(msg, pos)
            questions.append(DnsQuestion(name, _u16(msg, pos), _u16(msg, pos + 2)))
            pos += 4
    except _Bad:
        return None  # without intact questions the message is not DNS (or not usable)
    answers: list[DnsRecord] = []
    complete = True
    try:
        for _ in range(min(an, _MAX_RECORDS)):
            name, pos = _name(msg, pos)
            rtype, rclass = _u16(msg, pos), _u16(msg, pos + 2)
            if pos + 10 > len(msg):
                raise _Bad
            ttl = int.from_bytes(msg[pos + 4 : pos + 8], "big")
            rdlen = _u16(msg, pos + 8)
            start = pos + 10
            if start + rdlen > len(msg):
                raise _Bad
            answers.append(DnsRecord(name, rtype, rclass, ttl, _rdata_value(msg, rtype, start, rdlen)))
            pos = start + rdlen
    except _Bad:
        complete = False  # keep the answers read so far: a snaplen cut is common
    return DnsMessage(ident, flags, tuple(questions), tuple(answers), complete and an <= _MAX_RECORDS)


def parse_dns_tcp(data: bytes) -> list[DnsMessage]:
    """All messages of a DNS-over-TCP byte stream (each prefixed by a 2-byte length)."""
    out: list[DnsMessage] = []
    try:
        data = bytes(data)
        pos = 0
        while pos + 2 <= len(data):
            length = int.from_bytes(data[pos : pos + 2], "big")
            body = data[pos + 2 : pos + 2 + length]
            msg = _parse_one(body)
            if msg is None:
                break
            out.append(msg)
            pos += 2 + length
    except MemoryError:
        raise  # out of memory is not bad input: never swallowed (issue 16)
    except Exception:
        return out
    return out


def parse_dns(data: bytes, tcp: bool = False) -> DnsMessage | None:
    """One DNS message: a UDP payload, or with tcp=True the first message of a TCP stream
    (use parse_dns_tcp for all of them)."""
    try:
        if tcp:
            msgs = parse_dns_tcp(data)
            return msgs[0] if msgs else None
        return _parse_one(bytes(data))
    except MemoryError:
        raise  # out of memory is not bad input: never swallowed (issue 16)
    except Exception:
        return None


def answers_to_ip_names(msgs: list[DnsMessage]) -> list[IpName]:
    """(ip, name, cname_chain) for every address answered, one row per name of its chain.

    The chain is followed backwards from the A/AAAA owner through CNAME records of the same
    message to the queried name, so the IP maps to the name the client asked for and to every
    alias in between. Only successful responses count.
    """
    out: list[IpName] = []
    seen: set[IpName] = set()
    for msg in msgs:
        try:
            if not msg.qr or msg.rcode != 0:
                continue
            alias_of: dict[str, str] = {}  # CNAME target -> owner
            for rec in msg.answers:
                if rec.rtype == TYPE_CNAME and rec.value and rec.value not in alias_of:
                    alias_of[rec.value] = rec.name
            for rec in msg.answers:
                if rec.rtype not in (TYPE_A, TYPE_AAAA) or rec.value is None:
                    continue
                chain = [rec.name]
                while chain[-1] in alias_of and alias_of[chain[-1]] not in chain:
                    chain.append(alias_of[chain[-1]])
                chain_t = tuple(reversed(chain))
                for name in chain_t:
                    row = IpName(rec.value, name, chain_t)
                    if row not in seen:
                        seen.add(row)
                        out.append(row)
        except MemoryError:
            raise  # out of memory is not bad input: never swallowed (issue 16)
        except Exception:
            continue
    return out


# --- Registration: kinds, rules and facts (analyzer/dissect/registry.py) ---------------------

UDP_PORTS = (53, 5353, 5355)  # DNS, mDNS (RFC 6762), LLMNR (RFC 4795)
TCP_PORTS = (53,)  # DNS over TCP (RFC 7766)


def _udp_rule(b: Bytes, sport: np.ndarray, dport: np.ndarray) -> np.ndarray:
    return port_in(sport, dport, UDP_PORTS)


def _tcp_rule(b: Bytes, sport: np.ndarray, dport: np.ndarray) -> np.ndarray:
    return port_in(sport, dport, TCP_PORTS)


def _facts(ctx: FlowContext, msgs: list[DnsMessage], ts_ns: int) -> None:
    for msg in msgs:
        for q in msg.questions[:4]:
            ctx.facts.add("dns_queries", host_name(q.name))
    for row in answers_to_ip_names(msgs):
        name = host_name(row.name)
        if name and len(ctx.dns_rows) >= ctx.budget.dns_rows:
            ctx.budget.cut("dns_rows")
        elif name:
            ctx.dns_rows.append((row.ip, name, int(ts_ns), tuple(row.cname_chain), ctx.fid))


def _udp(ctx: FlowContext) -> bool:
    # The flow's ports decide (as for the payload kind); the datagrams must still parse.
    if not ctx.meta.port_in(UDP_PORTS):
        return False
    msgs_ts = []
    parsed: dict[bytes, object] = {}  # retransmitted queries/answers parse once
    for p, t in zip(ctx.payloads, ctx.ts_ns, strict=True):
        msg = parsed[p] if p in parsed else parsed.setdefault(p, parse_dns(p))
        if msg is not None:
            msgs_ts.append((msg, t))
    if not msgs_ts:
        return False
    ctx.facts.proto("dns")
    for msg, t in msgs_ts:
        _facts(ctx, [msg], t)
    return True


def _tcp(ctx: FlowContext) -> bool:
    # All three ports, as for UDP: LLMNR also answers over TCP 5355 (RFC 4795 2.4), and the
    # messages must parse anyway. The payload kind counts TCP port 53 only (TCP_PORTS).
    if not ctx.meta.port_in(UDP_PORTS):
        return False
    first_ts = {0: ctx.first_ts(0), 1: ctx.first_ts(1)}
    found = False
    for d in (0, 1):
        msgs = parse_dns_tcp(ctx.streams[d])
        if msgs:
            ctx.facts.proto("dns")
            _facts(ctx, msgs, first_ts[d])
            found = True
    return found


DISSECTOR = Dissector(
    name="dns",
    kinds=(Kind("dns", 17, role="dns", control=True, label="dns"),),
    rules=(Rule("dns", "udp", 10, ("dns",), _udp_rule), Rule("dns_tcp", "tcp", 10, ("dns",), _tcp_rule)),
    facts=(("dns_queries", "list<str>"),),
    labels=(("dns", 140),),
    udp_flow=(Hook(10, _udp),),
    tcp_flow=(Hook(10, _tcp),),
)
