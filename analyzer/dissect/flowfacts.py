"""Per-flow dissection: run the protocol parsers over each flow's payload samples and collect one
row of facts per flow, plus the table of every DNS answer seen.

Only the samples are read (the first packets of each direction and the control packets that the
scan keeps), so the cost is bounded by the number of flows, not the number of packets. Every
parser used here is pure and returns None on malformed input; this module adds a guard per flow
so that one hostile flow can never stop the dissection of the others.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analyzer.dissect import dns as dns_mod
from analyzer.dissect import quic, sip, tcpstream, tls, zrtp
from analyzer.dissect import rtp as rtp_mod
from analyzer.dissect.budget import Budget
from analyzer.dissect.names import host_name

# The STUN, DTLS and Zoom parsers were written in parallel; the dissection degrades gracefully
# (fewer facts) if one of them is missing from an older tree.
try:
    from analyzer.dissect import stun as stun_mod
except ImportError:  # pragma: no cover
    stun_mod = None  # type: ignore[assignment]
try:
    from analyzer.dissect import dtls as dtls_mod
except ImportError:  # pragma: no cover
    dtls_mod = None  # type: ignore[assignment]
try:
    from analyzer.dissect import zoom as zoom_mod
except ImportError:  # pragma: no cover
    zoom_mod = None  # type: ignore[assignment]

FACT_COLUMNS: tuple[str, ...] = (
    "protocol",  # the most specific protocol seen (see _PROTOCOL_ORDER)
    "protocols",  # every protocol recognised in the samples
    "sni",
    "alpn",
    "tls_version",
    "cert_subject",
    "cert_issuer",
    "cert_sans",
    "quic_version",
    "http_host",
    "stun_software",
    "stun_realm",
    "stun_usernames",
    "stun_attr_types",
    "stun_msg_types",
    "stun_classic",
    "stun_mapped",  # reflexive address(es) in answers sent by the flow's server side (to the client)
    "stun_mapped_c2s",  # reflexive address(es) in answers sent by the client side (ICE checks, inbound flows)
    "stun_relayed",
    "stun_peers",
    "stun_rtt_ms",  # smallest request/answer round trip seen (ms)
    "dtls_rtt_ms",  # first DTLS ClientHello to the first HelloVerifyRequest/ServerHello answering it (ms)
    "dtls_handshake",
    "dtls_use_srtp",
    "dtls_srtp_profile",
    "dtls_alpn",
    "dtls_cert",
    "dtls_cert_issuer",
    "rtp_ssrcs",
    "rtp_payload_types",
    "rtp_packets",
    "rtcp_packets",
    "rtp_entropy",
    "srtcp_kind",
    "srtp",  # True when the RTP looks encrypted (DTLS on the flow, SRTCP trailer, entropy)
    "zoom_generation",
    "zoom_setup_version",
    "zoom_media_kinds",
    "zoom_p2p_hello",
    "sip_call_id",
    "sip_user_agent",
    "sip_methods",
    "sdp_key_exchange",
    "sdp_media",
    "sdp_rtpmap",  # (ip, port, media, pt, encoding, clock) per a=rtpmap of each m= section
    "zrtp",
    "zrtp_client",
    "whatsapp_prologue",
    "discord_ip_discovery",
    "discord_keepalive",
    "dns_queries",
    "errors",
)

# When one flow carries several protocols (WebRTC: STUN, DTLS, SRTP on one 5-tuple) the flow's
# protocol is the first of these that was seen: the one that carries the payload.
_PROTOCOL_ORDER = (
    "zoom", "srtp", "rtp", "zrtp", "dtls", "sip", "quic", "tls", "http", "whatsapp", "discord",
    "turn", "stun", "dns",
)
_TLS_VERSIONS = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}
_HTTP_METHODS = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"OPTIONS ", b"DELETE ", b"PATCH ", b"CONNECT ")
DNS_PORTS = frozenset((53, 5353, 5355))
# WhatsApp's Noise handshake opens with a 4-byte prologue: "ED" 0x00 0x01 (protocols.md 2.5) or,
# in older clients, "WA" + major/minor version (whatsapp_voice_and_message.pcap: 57 41 01 05).
WA_PROLOGUE_ED = b"ED\x00\x01"
# Discord voice IP discovery (protocols.md 2.5): type 1/2, length 70, SSRC, 64-byte address, port.
DISCORD_DISCOVERY_LEN = 74
DISCORD_KEEPALIVE = b"\x13\x37\xca\xfe"
SRTP_ENTROPY_BITS = 7.0  # bits/byte over the pooled RTP payloads; codecs in clear stay lower
_MAX_LIST = 16  # cap on list-valued facts (usernames, SSRCs) so hostile flows stay small
# STUN messages parsed per flow: ICE keep-alives and TURN refreshes repeat the same facts, and
# the scan keeps up to 200 control packets per direction.
_MAX_STUN = 48
_STREAM_LIMIT = 65536


@dataclass
class DissectResult:
    facts: pd.DataFrame  # index flow_id, columns FACT_COLUMNS
    dns: pd.DataFrame  # ip, name, ts_ns, cname_chain, flow_id
    errors: dict[str, int] = field(default_factory=dict)  # flows whose dissection failed, by reason
    cuts: dict[str, int] = field(default_factory=dict)  # what a bound dropped (dissect/budget.py)

    def warnings(self) -> list[str]:
        """Lines for the capture's warnings: bounds that cut something, flows whose parsers failed."""
        out = Budget(cuts=Counter(self.cuts)).warnings()
        out += [f"{n} flows not dissected: {reason}" for reason, n in sorted(self.errors.items())]
        return out


def empty_facts() -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series(dtype="object") for c in FACT_COLUMNS})
    df.index.name = "flow_id"
    return df


def empty_dns() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ip": pd.Series(dtype="object"),
            "name": pd.Series(dtype="object"),
            "ts_ns": pd.Series(dtype="int64"),
            "cname_chain": pd.Series(dtype="object"),
            "flow_id": pd.Series(dtype="int64"),
        }
    )


class _Facts(dict):
    """A facts row under construction; list-valued facts keep insertion order, no duplicates.
    `budget` is the session's (dissect/budget.py), shared by all flows."""

    budget: Budget = Budget()

    def add(self, key: str, value: object) -> None:
        if value is None:
            return
        items = self.setdefault(key, [])
        if value not in items and len(items) < _MAX_LIST:
            items.append(value)

    def first(self, key: str, value: object) -> None:
        if value is not None and self.get(key) is None:
            self[key] = value

    def proto(self, name: str) -> None:
        self.add("protocols", name)


def dissect_flows(flows: pd.DataFrame, samples: pd.DataFrame) -> DissectResult:
    """Facts per flow (index flow_id) and the DNS answer table, from the flows' payload samples."""
    if flows is None or flows.empty:
        return DissectResult(empty_facts(), empty_dns())
    ports = _flow_ports(flows)
    rows: dict[int, dict] = {}
    dns_rows: list[tuple[str, str, int, tuple[str, ...], int]] = []
    errors: dict[str, int] = {}
    budget = Budget()
    if samples is not None and not samples.empty:
        for fid, group in _groups(samples):
            meta = ports.get(fid)
            if meta is None:
                continue
            try:
                facts = _dissect_one(meta, group, dns_rows, fid, budget)
            except MemoryError:
                raise  # out of memory is not a parser bug: the run must fail, not lose facts quietly
            except Exception as exc:  # a parser bug must not stop the other flows
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                facts = _Facts(errors=[type(exc).__name__])
            rows[fid] = _finish(facts)
    # Object columns throughout: facts are optional, and a numeric column with gaps would turn
    # its values into floats (a setup version 2 into 2.0).
    index = pd.Index(flows["flow_id"].to_numpy(), name="flow_id")
    facts_df = pd.DataFrame(
        {c: pd.Series([rows.get(int(i), {}).get(c) for i in index], index=index, dtype=object) for c in FACT_COLUMNS}
    )
    if dns_rows:
        dns_df = pd.DataFrame.from_records(dns_rows, columns=["ip", "name", "ts_ns", "cname_chain", "flow_id"])
        dns_df = dns_df.sort_values("ts_ns", kind="stable").reset_index(drop=True)
    else:
        dns_df = empty_dns()
    return DissectResult(facts=facts_df, dns=dns_df, errors=errors, cuts=dict(budget.cuts))


@dataclass(frozen=True)
class _Meta:
    transport: str
    client_port: int
    server_port: int
    client_ip: str
    server_ip: str


def _flow_ports(flows: pd.DataFrame) -> dict[int, _Meta]:
    out: dict[int, _Meta] = {}
    cols = zip(
        flows["flow_id"].tolist(), flows["transport"].tolist(), flows["client_port"].tolist(),
        flows["server_port"].tolist(), flows["client_ip"].tolist(), flows["server_ip"].tolist(),
        strict=True,
    )
    for fid, tr, cp, sp, cip, sip_ in cols:
        out[int(fid)] = _Meta(str(tr), _int(cp), _int(sp), str(cip), str(sip_))
    return out


def _int(value: object) -> int:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return -1


@dataclass
class _Group:
    ts_ns: list[int]
    dirs: list[int]
    seqs: list[int]
    payloads: list[bytes]

    def direction(self, d: int) -> list[bytes]:
        return [p for p, x in zip(self.payloads, self.dirs, strict=True) if x == d]

    def stream(self, d: int) -> bytes:
        segs = [(s, p) for s, p, x in zip(self.seqs, self.payloads, self.dirs, strict=True) if x == d and s >= 0]
        return tcpstream.reassemble(segs, limit=_STREAM_LIMIT)


def _groups(samples: pd.DataFrame) -> Iterable[tuple[int, _Group]]:
    df = samples.sort_values(["flow_id", "frame"], kind="stable")
    fids = df["flow_id"].to_numpy().astype(np.int64)
    if fids.size == 0:
        return
    ts = df["ts_ns"].tolist()
    dirs = df["dir"].tolist()
    seqs = df["tcp_seq"].tolist() if "tcp_seq" in df else [-1] * fids.size
    pays = df["payload"].tolist()
    cuts = np.flatnonzero(np.diff(fids)) + 1
    starts = np.concatenate(([0], cuts)).tolist()
    ends = np.concatenate((cuts, [fids.size])).tolist()
    for a, b in zip(starts, ends, strict=True):
        yield int(fids[a]), _Group(
            [int(t) for t in ts[a:b]], [int(d) for d in dirs[a:b]], [int(s) for s in seqs[a:b]],
            [bytes(p) if p is not None else b"" for p in pays[a:b]],
        )


def _dissect_one(meta: _Meta, g: _Group, dns_rows: list, fid: int, budget: Budget) -> _Facts:
    f = _Facts()
    f.budget = budget
    if meta.transport == "tcp":
        _tcp(meta, g, f, dns_rows, fid)
    elif meta.transport == "udp":
        _udp(meta, g, f, dns_rows, fid)
    return f


# --- TCP -------------------------------------------------------------------------------------


def _tcp(meta: _Meta, g: _Group, f: _Facts, dns_rows: list, fid: int) -> None:
    c2s, s2c = g.stream(0), g.stream(1)
    if not c2s and not s2c:
        return
    if meta.server_port in DNS_PORTS or meta.client_port in DNS_PORTS:
        first_ts = {0: _first_ts(g, 0), 1: _first_ts(g, 1)}
        for d, data in ((0, c2s), (1, s2c)):
            msgs = dns_mod.parse_dns_tcp(data)
            if msgs:
                f.proto("dns")
                _dns_facts(msgs, first_ts[d], f, dns_rows, fid)
        if "dns" in f.get("protocols", []):
            return
    head = c2s[:1]
    if head == b"\x16" or (s2c[:1] == b"\x16" and c2s[:1] in (b"", b"\x14", b"\x15", b"\x17")):
        _tls(c2s, s2c, f)
    prologue = _wa_prologue(c2s)
    if prologue is not None:
        f["whatsapp_prologue"] = prologue
        f.proto("whatsapp")
    if c2s.startswith(_HTTP_METHODS):
        f.proto("http")
        f.first("http_host", _http_host(c2s))
    cookie = b"\x21\x12\xa4\x42"
    if stun_mod is not None and c2s[:1] in (b"\x00", b"\x01") and cookie in (c2s[4:8], c2s[6:10]):
        for d, data in ((0, c2s), (1, s2c)):
            for msg in stun_mod.split_stun_tcp(data):
                _stun_or_channel(msg, d, f)
    if _looks_sip(c2s) or _looks_sip(s2c):
        for data in (c2s, s2c):
            for msg in sip.parse_sip_stream(data):
                _sip_facts(msg, f)


def _wa_prologue(c2s: bytes) -> str | None:
    if c2s.startswith(WA_PROLOGUE_ED):
        return "ED 0.1"
    if len(c2s) >= 8 and c2s[:2] == b"WA" and c2s[2] < 10 and c2s[3] < 10:
        return f"WA {c2s[2]}.{c2s[3]}"
    return None


def _first_ts(g: _Group, d: int) -> int:
    for t, x in zip(g.ts_ns, g.dirs, strict=True):
        if x == d:
            return t
    return g.ts_ns[0] if g.ts_ns else 0


def _tls(c2s: bytes, s2c: bytes, f: _Facts) -> None:
    hello = tls.parse_client_hello(c2s) if c2s[:1] == b"\x16" else None
    server = tls.parse_server_handshake(s2c) if s2c[:1] == b"\x16" else None
    if hello is None and server is None:
        return
    f.proto("tls")
    if hello is not None:
        f.first("sni", _host(hello.sni))
        if hello.alpn:
            f["alpn"] = list(hello.alpn[:_MAX_LIST])
    if server is not None:
        f["tls_version"] = _TLS_VERSIONS.get(server.version, f"0x{server.version:04x}")
        if server.alpn:
            f["alpn"] = [server.alpn]
        cert = server.certificate
        if cert is not None:
            f.first("cert_subject", cert.subject_cn)
            f.first("cert_issuer", cert.issuer_cn)
            if cert.sans:
                f["cert_sans"] = list(cert.sans[:_MAX_LIST])
    elif hello is not None and hello.supported_versions:
        f["tls_version"] = _TLS_VERSIONS.get(max(hello.supported_versions))


def _host(name: str | None) -> str | None:
    return host_name(name)


def _http_host(data: bytes) -> str | None:
    head = data[:4096].split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"host":
            text = value.strip().decode("ascii", "replace")
            return _host(text.rsplit(":", 1)[0] if text.count(":") == 1 else text)
    return None


def _looks_sip(data: bytes) -> bool:
    return data.startswith(b"SIP/2.0 ") or any(data.startswith(m) for m in _SIP_METHODS)


_SIP_METHODS = tuple(
    m + b" "
    for m in (b"INVITE", b"REGISTER", b"ACK", b"BYE", b"CANCEL", b"OPTIONS", b"NOTIFY", b"SUBSCRIBE",
              b"PUBLISH", b"MESSAGE", b"INFO", b"PRACK", b"REFER", b"UPDATE")
)


# --- UDP -------------------------------------------------------------------------------------


def _udp(meta: _Meta, g: _Group, f: _Facts, dns_rows: list, fid: int) -> None:
    if meta.server_port in DNS_PORTS or meta.client_port in DNS_PORTS:
        msgs_ts = []
        parsed: dict[bytes, object] = {}  # retransmitted queries/answers parse once
        for p, t in zip(g.payloads, g.ts_ns, strict=True):
            msg = parsed[p] if p in parsed else parsed.setdefault(p, dns_mod.parse_dns(p))
            if msg is not None:
                msgs_ts.append((msg, t))
        if msgs_ts:
            f.proto("dns")
            for msg, t in msgs_ts:
                _dns_facts([msg], t, f, dns_rows, fid)
            return
    zoom_server = zoom_mod is not None and (
        meta.server_port in zoom_mod.ZOOM_UDP_PORTS or meta.client_port in zoom_mod.ZOOM_UDP_PORTS
    )
    dtls_dgrams: list[bytes] = []
    rtp_pkts: list[tuple[bytes, int]] = []
    rtcp_by_dir: dict[int, list[bytes]] = {0: [], 1: []}
    quic_c2s: list[bytes] = []
    dtls_marks: list[tuple[int, int, int]] = []  # (direction, ts_ns, handshake type) of DTLS hellos
    for p, d, t in zip(g.payloads, g.dirs, g.ts_ns, strict=True):
        n = len(dtls_dgrams)
        _udp_packet(p, d, meta, f, zoom_server, dtls_dgrams, rtp_pkts, rtcp_by_dir, quic_c2s, depth=0, ts_ns=t)
        if len(dtls_dgrams) > n and len(p) > 13 and p[0] == 22:
            dtls_marks.append((int(d), int(t), p[13]))  # record type 22: handshake type at +13
    if dtls_dgrams and dtls_mod is not None:
        _dtls_facts(dtls_mod.parse_dtls_flight(dtls_dgrams, f.budget), f)
        _dtls_rtt(dtls_marks, f)
    if quic_c2s:
        _quic_facts(quic_c2s, f)
    if rtp_pkts or any(rtcp_by_dir.values()):
        _rtp_facts(rtp_pkts, rtcp_by_dir, f)


def _udp_packet(
    p: bytes, d: int, meta: _Meta, f: _Facts, zoom_server: bool, dtls_dgrams: list, rtp_pkts: list,
    rtcp_by_dir: dict, quic_c2s: list, depth: int, ts_ns: int = 0,
) -> None:
    if not p:
        return
    b0 = p[0]
    # Discord's 74-byte IP discovery would pass the STUN first-byte test but not its length check.
    if len(p) == DISCORD_DISCOVERY_LEN and p[:4] in (b"\x00\x01\x00\x46", b"\x00\x02\x00\x46"):
        f.proto("discord")
        f["discord_ip_discovery"] = True
        if p[1] == 2:
            f.first("discord_public_address", _discord_address(p))
        return
    if len(p) == 8 and p[:4] == DISCORD_KEEPALIVE:
        f["discord_keepalive"] = True
        return
    # ICE checks with the RFC 8489 cookie share UDP 8801 with Zoom's set-up types 0x01-0x04 (web
    # client, protocols.md 1.8): the cookie decides first.
    if b0 <= 3 and p[4:8] == b"\x21\x12\xa4\x42" and stun_mod is not None and _stun_or_channel(p, d, f, ts_ns):
        return
    if zoom_server and b0 in (0x01, 0x02, 0x03, 0x04, 0x05):
        z = zoom_mod.parse_zoom(p, server_side=True)
        if z is not None:
            _zoom_facts(z, f, rtp_pkts, rtcp_by_dir, d)
            return
    stun_like = b0 <= 3 or 0x08 <= b0 <= 0x0B or p[:2] == b"\xff\x10"  # + WhatsApp 0x08xx, MS-TURN
    if stun_like and stun_mod is not None and _stun_or_channel(p, d, f, ts_ns):
        return
    if 0x40 <= b0 <= 0x4F and stun_mod is not None and depth == 0:
        cd = stun_mod.parse_channel_data(p)
        if cd is not None:
            f.proto("turn")
            f.add("turn_channels", cd[0])
            _udp_packet(cd[1], d, meta, f, zoom_server, dtls_dgrams, rtp_pkts, rtcp_by_dir, quic_c2s, depth=1)
            return
    if 16 <= b0 <= 19:
        z = zrtp.parse_zrtp(p)
        if z is not None:
            f.proto("zrtp")
            f["zrtp"] = True
            f.first("zrtp_client", z.client_id)
            return
    if 20 <= b0 <= 63 and dtls_mod is not None and (dtls_mod.classic_record_ok(p, 0) or dtls_mod.unified_header(p, 0)):
        dtls_dgrams.append(p)
        return
    if zoom_mod is not None and not zoom_server and len(p) >= 4:
        z = zoom_mod.parse_zoom(p, server_side=False)
        if z is not None:
            _zoom_facts(z, f, rtp_pkts, rtcp_by_dir, d)
            return
    if 128 <= b0 <= 191 and len(p) >= 8:
        if rtp_mod.is_rtcp_second_byte(p[1]):
            if rtp_mod.parse_rtcp(p):
                rtcp_by_dir[d].append(p)
                return
        elif rtp_mod.parse_rtp(p) is not None:
            rtp_pkts.append((p, d))
            return
    if b0 >= 0xC0 and len(p) >= 7 and d == 0:
        quic_c2s.append(p)
        return
    if _looks_sip(p):
        msg = sip.parse_sip(p)
        if msg is not None:
            _sip_facts(msg, f)


def _discord_address(p: bytes) -> str | None:
    raw = p[8:72].split(b"\x00", 1)[0]
    try:
        ip = ipaddress.ip_address(raw.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None
    return f"{ip}:{int.from_bytes(p[72:74], 'big')}"


def _stun_rtt(msg: Any, d: int, ts_ns: int, f: _Facts) -> None:
    """Round trip of a request (client to server) and its answer with the same transaction ID:
    a bound on the server's distance, like the TCP handshake (geo plausibility)."""
    if not ts_ns:
        return
    pending = f.get("_stun_requests")
    if pending is None:
        pending = f["_stun_requests"] = {}
    answer = msg.msg_class in ("success", "error") or (msg.classic and msg.msg_type in (0x0002, 0x0101, 0x0111))
    if d == 0 and msg.msg_class == "request" and not answer:
        pending.setdefault(msg.transaction_id, ts_ns)
    elif d == 1 and answer and msg.transaction_id in pending:
        rtt = (ts_ns - pending.pop(msg.transaction_id)) / 1e6
        if rtt >= 0 and (f.get("stun_rtt_ms") is None or rtt < f["stun_rtt_ms"]):
            f["stun_rtt_ms"] = rtt


def _stun_or_channel(p: bytes, d: int, f: _Facts, ts_ns: int = 0) -> bool:
    seen = f.get("_stun_seen", 0)
    if seen >= _MAX_STUN:
        # Still recognise the message (so it is not read as another protocol), skip the facts.
        return p[4:8] == b"\x21\x12\xa4\x42" or stun_mod.parse_stun(p) is not None
    f["_stun_seen"] = seen + 1
    msg = stun_mod.parse_stun(p)
    if msg is None:
        cd = stun_mod.parse_channel_data(p)
        if cd is not None:
            f.proto("turn")
            return True
        return False
    f.proto("stun")
    _stun_rtt(msg, d, ts_ns, f)
    if msg.method in (0x003, 0x004, 0x006, 0x007, 0x008, 0x009) or msg.channel is not None:
        f.proto("turn")
    f.add("stun_msg_types", msg.msg_type)
    for t in msg.attr_types[:32]:
        f.add("stun_attr_types", t)
    if msg.classic:
        f["stun_classic"] = True
    if msg.software is not None and f.get("stun_software") is None:
        f["stun_software"] = _clean(msg.software)
    if msg.realm is not None and f.get("stun_realm") is None:
        f["stun_realm"] = _clean(msg.realm)
    if msg.username is not None:
        f.add("stun_usernames", _clean(msg.username))
    # Responses carry the reflexive address of the side they are sent to; Zoom's cookie-less
    # response type 0x0002 does not encode the RFC 5389 success class, so any message with a mapped
    # address counts. The direction is kept: only an answer travelling towards the capturing host
    # tells where that host is (the session decides which side that is). Relayed addresses
    # (XOR-RELAYED-ADDRESS, MS-TURN's Allocate MAPPED-ADDRESS) are the relay's, never the client's.
    if msg.msg_class == "success" or msg.classic:
        key = "stun_mapped" if d == 1 else "stun_mapped_c2s"
        for addr in (msg.xor_mapped, msg.mapped):
            if addr is not None:
                f.add(key, (addr.ip, addr.port))
        for relayed in (msg.xor_relayed, msg.ms_relayed):
            if relayed is not None:
                f.add("stun_relayed", (relayed.ip, relayed.port))
    if msg.xor_peer is not None:
        f.add("stun_peers", (msg.xor_peer.ip, msg.xor_peer.port))
    return True


def _clean(text: str | None) -> str | None:
    """Captured text made safe to print: control and undecodable characters become '?'."""
    if text is None:
        return None
    return "".join(c if c.isprintable() and c != "\ufffd" else "?" for c in text[:256])


def _zoom_facts(z, f: _Facts, rtp_pkts: list, rtcp_by_dir: dict, d: int) -> None:
    f.proto("zoom")
    if z.generation in ("A", "B", "p2p"):
        f.first("zoom_generation", z.generation)
    f.first("zoom_setup_version", z.setup_version)
    f.add("zoom_media_kinds", z.media_kind)
    if z.media_kind == "p2p_hello":
        f.first("zoom_p2p_hello", z.hello_ip or "")
    if z.rtp is not None:
        f.add("rtp_ssrcs", z.rtp.ssrc)
        f.add("rtp_payload_types", z.rtp.payload_type)
        f["rtp_packets"] = f.get("rtp_packets", 0) + 1


def _dtls_rtt(marks: list[tuple[int, int, int]], f: _Facts) -> None:
    """Round trip of the DTLS handshake, like the TCP handshake's: the *first* ClientHello (a
    retransmission can only lengthen the measure, never shorten it below the truth) to the first
    HelloVerifyRequest (3) or ServerHello (2) sent back in the other direction."""
    hellos = sorted((t, d) for d, t, h in marks if h == 1 and t)
    if not hellos:
        return
    t0, d0 = hellos[0]
    answers = [t for d, t, h in marks if h in (2, 3) and d != d0 and t >= t0]
    if answers:
        f["dtls_rtt_ms"] = (min(answers) - t0) / 1e6


def _dtls_facts(dt, f: _Facts) -> None:
    if dt is None:
        return
    f.proto("dtls")
    hs = bool(dt.client_hello or dt.server_hello or dt.handshake_types)
    f["dtls_handshake"] = hs
    if dt.srtp_profiles_offered or dt.srtp_profile_chosen is not None:
        f["dtls_use_srtp"] = True
    f.first("dtls_srtp_profile", dt.srtp_profile_chosen)
    alpn = dt.alpn_chosen or (dt.alpn_offered[0] if dt.alpn_offered else None)
    f.first("dtls_alpn", alpn)
    f.first("dtls_cert", dt.certificate_cn)
    f.first("dtls_cert_issuer", dt.certificate_issuer_cn)
    f.first("sni", _host(dt.sni))


def _quic_facts(datagrams: list[bytes], f: _Facts) -> None:
    hello = quic.client_hello_from_initials(datagrams[:8])
    version = int.from_bytes(datagrams[0][1:5], "big")
    if hello is None and not (version == 1 or version == 0x6B3343CF or (version >> 8) == 0xFF0000):
        return
    f.proto("quic")
    f.first("quic_version", f"0x{version:08x}")
    if hello is not None:
        f.first("sni", _host(hello.sni))
        if hello.alpn:
            f["alpn"] = list(hello.alpn[:_MAX_LIST])


def _rtp_facts(rtp_pkts: list[tuple[bytes, int]], rtcp_by_dir: dict[int, list[bytes]], f: _Facts) -> None:
    payloads: list[bytes] = []
    for p, _d in rtp_pkts:
        h = rtp_mod.parse_rtp(p)
        if h is None:
            continue
        f.add("rtp_ssrcs", h.ssrc)
        f.add("rtp_payload_types", h.payload_type)
        payloads.append(p[h.payload_offset :])
    f["rtp_packets"] = f.get("rtp_packets", 0) + len(payloads)
    f["rtcp_packets"] = sum(len(v) for v in rtcp_by_dir.values())
    kinds = [rtp_mod.srtcp_trailer_kind(v) for v in rtcp_by_dir.values() if len(v) >= 2]
    kind = next((k for k in kinds if k not in (None, "none")), next((k for k in kinds if k), None))
    f.first("srtcp_kind", kind)
    if payloads:
        ent = rtp_mod.payload_entropy(b"".join(payloads))
        f["rtp_entropy"] = round(ent, 3)
    # RTP needs a few self-consistent packets before it counts (nDPI asks for 3 too).
    if len(payloads) >= 2 or f["rtcp_packets"] >= 2 or (payloads and f["rtcp_packets"]):
        f.proto("rtp")


def _sip_facts(msg, f: _Facts) -> None:
    f.proto("sip")
    f.first("sip_call_id", msg.call_id)
    f.first("sip_user_agent", msg.user_agent or msg.server)
    f.add("sip_methods", msg.method if msg.is_request else f"{msg.status_code}")
    sdp = msg.sdp
    if sdp is None:
        return
    if sdp.crypto or any(m.crypto for m in sdp.media):
        f.add("sdp_key_exchange", "crypto")
    if sdp.fingerprints or any(m.fingerprints for m in sdp.media):
        f.add("sdp_key_exchange", "fingerprint")
    if sdp.key_mgmt or any(m.key_mgmt for m in sdp.media):
        f.add("sdp_key_exchange", "mikey")
    if sdp.zrtp_hash or any(m.zrtp_hash for m in sdp.media):
        f.add("sdp_key_exchange", "zrtp-hash")
    default_ip = sdp.connections[0] if sdp.connections else None
    for m in sdp.media:
        ip = m.connection or default_ip
        if ip and m.port:
            f.add("sdp_media", (ip, int(m.port)))
            for pt, enc, clock in m.rtpmap:
                f.add("sdp_rtpmap", (ip, int(m.port), m.media, pt, enc, clock))


def _dns_facts(msgs: list, ts_ns: int, f: _Facts, dns_rows: list, fid: int) -> None:
    for msg in msgs:
        for q in msg.questions[:4]:
            f.add("dns_queries", _host(q.name))
    for row in dns_mod.answers_to_ip_names(msgs):
        name = _host(row.name)
        if name and len(dns_rows) >= f.budget.dns_rows:
            f.budget.cut("dns_rows")
        elif name:
            dns_rows.append((row.ip, name, int(ts_ns), tuple(row.cname_chain), fid))


def _finish(f: _Facts) -> dict:
    protos = f.get("protocols", [])
    if "rtp" in protos and _is_srtp(f):
        f["srtp"] = True
        protos.append("srtp")
    elif "rtp" in protos:
        f["srtp"] = False
    f["protocol"] = next((p for p in _PROTOCOL_ORDER if p in protos), None)
    out = {k: v for k, v in f.items() if k in FACT_COLUMNS}
    for key in ("stun_attr_types", "stun_msg_types", "rtp_payload_types"):
        if key in out:
            out[key] = sorted(out[key])
    if "discord_public_address" in f:
        out["discord_ip_discovery"] = f["discord_public_address"]
    return out


def _is_srtp(f: _Facts) -> bool:
    if f.get("dtls_handshake") or f.get("srtcp_kind") in ("aead", "hmac80"):
        return True
    # Entropy alone is weak: compressed video in clear (H.263, PT 34 in rtp.pcapng) reaches 7.9
    # bits/byte. Count it only with dynamic payload types (96-127), which WebRTC-era stacks use;
    # legacy SIP phones with static types (PCMA 8) rarely encrypt.
    ent = f.get("rtp_entropy")
    pts = f.get("rtp_payload_types") or []
    dynamic = bool(pts) and all(96 <= pt <= 127 for pt in pts)
    return ent is not None and ent >= SRTP_ENTROPY_BITS and dynamic
