"""DTLS records and the cleartext handshake of DTLS 1.0/1.2 (RFC 6347, RFC 9147, RFC 5764 use_srtp).

Layouts: ../shared/research/protocols.md section 2.3. Pure functions, never raise on bad input.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from analyzer.decode.fields import member
from analyzer.dissect.budget import Budget
from analyzer.dissect.columns import Bytes
from analyzer.dissect.names import host_name
from analyzer.dissect.spec import Dissector, Facts, FlowContext, Hook, Kind, PacketHook, Rule

RECORD_HEADER = 13
HANDSHAKE_HEADER = 12
VERSIONS = {0xFEFF: "DTLS 1.0", 0xFEFD: "DTLS 1.2", 0xFEFC: "DTLS 1.3", 0x0100: "DTLS pre-standard"}
CT_CCS, CT_ALERT, CT_HANDSHAKE, CT_APPDATA, CT_HEARTBEAT, CT_CID, CT_ACK = 20, 21, 22, 23, 24, 25, 26
CONTENT_TYPES = frozenset(range(CT_CCS, CT_ACK + 1))

HS_CLIENT_HELLO, HS_SERVER_HELLO, HS_HELLO_VERIFY, HS_CERTIFICATE = 1, 2, 3, 11

EXT_SNI, EXT_USE_SRTP, EXT_ALPN = 0, 14, 16
SRTP_PROFILES = {
    0x0001: "SRTP_AES128_CM_HMAC_SHA1_80",
    0x0002: "SRTP_AES128_CM_HMAC_SHA1_32",
    0x0007: "SRTP_AEAD_AES_128_GCM",
    0x0008: "SRTP_AEAD_AES_256_GCM",
}

_MAX_MESSAGE = 1 << 18  # refuse to reassemble absurd handshake lengths from hostile input
# Reassembly bounds per flow (SECURITY.md): buffers hold what arrived, never what a header announces.
FLOW_MESSAGES = 16  # handshake messages being reassembled at once (a real flight has < 10)
FLOW_BYTES = 1 << 20  # fragment bytes held for reassembly
_MAX_TYPES = 256  # handshake types listed per flow (a flight has a dozen fragments)
MESSAGE_PIECES = 64  # distinct fragments of one message (real certificates: a handful)
_MAX_TEXT = 256


@dataclass(frozen=True)
class DtlsRecord:
    content_type: int  # 20-26; 0 for a DTLS 1.3 unified-header (encrypted) record
    version: int  # 0 for a unified-header record
    epoch: int
    seq: int
    length: int


@dataclass(frozen=True)
class DtlsFacts:
    records: tuple[DtlsRecord, ...]
    versions: tuple[int, ...]  # distinct record versions, in order of appearance
    handshake_records: int  # type 22 (epoch 0 cleartext and epoch >0 encrypted Finished), CCS, alerts, ack
    appdata_records: int  # type 23, tls12_cid and DTLS 1.3 unified-header records
    unified_records: int
    handshake_types: tuple[int, ...]  # msg_type of every cleartext handshake fragment
    client_hello: bool = False
    server_hello: bool = False
    hello_verify_request: bool = False
    client_version: int | None = None
    srtp_profiles_offered: tuple[int, ...] = ()
    srtp_profile_chosen: int | None = None
    alpn_offered: tuple[str, ...] = ()
    alpn_chosen: str | None = None
    sni: str | None = None
    cipher_suite: int | None = None
    certificate_cn: str | None = None
    certificate_issuer_cn: str | None = None
    trailing_bytes: int = 0  # bytes after the last record that did not parse
    fragments_dropped: int = 0  # handshake fragments not reassembled because of a bound

    @property
    def first_content_type(self) -> int:
        return self.records[0].content_type

    @property
    def use_srtp(self) -> bool:
        return bool(self.srtp_profiles_offered) or self.srtp_profile_chosen is not None


def classic_record_ok(data: bytes, pos: int) -> bool:
    """A DTLS <=1.2-style record header at pos: content type 20-26 and a known version."""
    return (
        pos + RECORD_HEADER <= len(data)
        and data[pos] in CONTENT_TYPES
        and struct.unpack_from(">H", data, pos + 1)[0] in VERSIONS
    )


def unified_header(data: bytes, pos: int) -> tuple[int, int] | None:
    """DTLS 1.3 unified header `001CSLEE` (RFC 9147 4): (header length, record length).

    Only headers without a connection ID and with the length present are recognised: a CID has a
    negotiated length that cannot be read from the packet, and no length means "to the end".
    """
    if pos >= len(data):
        return None
    b0 = data[pos]
    if b0 & 0xE0 != 0x20 or b0 & 0x10 or not b0 & 0x04:
        return None
    hl = 1 + (2 if b0 & 0x08 else 1) + 2
    if pos + hl > len(data):
        return None
    length = struct.unpack_from(">H", data, pos + hl - 2)[0]
    if pos + hl + length > len(data):
        return None
    return hl, length


class _Message:
    """One handshake message under reassembly: the fragments that arrived, keyed by offset."""

    __slots__ = ("done", "length", "pieces")

    def __init__(self, length: int) -> None:
        self.length = length
        self.pieces: dict[int, bytes] = {}
        self.done = False

    def whole(self) -> bytes | None:
        """The message when the fragments cover it, else None (cost follows the pieces held)."""
        end = 0
        for off in sorted(self.pieces):
            if off > end:
                return None
            end = max(end, off + len(self.pieces[off]))
        if end < self.length:
            return None
        out = bytearray(self.length)
        for off, piece in self.pieces.items():
            out[off : off + len(piece)] = piece
        return bytes(out)


class _State:
    def __init__(self, budget: Budget | None) -> None:
        self.records: list[DtlsRecord] = []
        self.hs_types: list[int] = []
        self.fragments: dict[tuple[int, int], _Message] = {}
        self.held = 0  # fragment bytes held by this flow
        self.dropped = 0
        self.budget = budget if budget is not None else Budget()
        self.facts: dict[str, object] = {}
        self.trailing = 0

    def drop(self, reason: str) -> None:
        self.dropped += 1
        self.budget.cut(reason)


def parse_dtls(datagram: bytes) -> DtlsFacts | None:
    """All records of one datagram. None unless the datagram starts with a DTLS record."""
    return parse_dtls_flight([datagram])


def parse_dtls_flight(datagrams: Iterable[bytes], budget: Budget | None = None) -> DtlsFacts | None:
    """Records of several datagrams of one flow; handshake fragments are reassembled across them
    (a Certificate often spans two datagrams). None when no datagram starts with a DTLS record.

    Reassembly holds only the fragment bytes that arrived, at most FLOW_MESSAGES messages and
    FLOW_BYTES bytes per flow and what `budget` (one per session) still allows; fragments over a
    bound are dropped and counted (`fragments_dropped`, `budget.cuts`).
    """
    state = _State(budget)
    try:
        for dg in datagrams:
            _walk(bytes(dg), state)
    except (ValueError, IndexError, struct.error):
        pass
    if not state.records:
        return None
    hs = sum(1 for r in state.records if r.content_type in (CT_HANDSHAKE, CT_CCS, CT_ALERT, CT_ACK))
    app = sum(1 for r in state.records if r.content_type in (CT_APPDATA, CT_CID, 0))
    versions = tuple(dict.fromkeys(r.version for r in state.records if r.version))
    return DtlsFacts(
        records=tuple(state.records),
        versions=versions,
        handshake_records=hs,
        appdata_records=app,
        unified_records=sum(1 for r in state.records if r.content_type == 0),
        handshake_types=tuple(state.hs_types),
        trailing_bytes=state.trailing,
        fragments_dropped=state.dropped,
        **state.facts,  # type: ignore[arg-type]
    )


def _walk(data: bytes, state: _State) -> None:
    pos = 0
    first = True
    start = len(state.records)
    while pos < len(data):
        if classic_record_ok(data, pos):
            ctype, version, epoch, seq_hi, seq_lo, length = struct.unpack_from(">BHHHIH", data, pos)
            body = data[pos + RECORD_HEADER : pos + RECORD_HEADER + length]
            if first and len(body) < length:
                # A datagram must open with a whole record: that length check is what tells DTLS
                # from look-alikes such as Zoom's P2P probe (15 01 00 00 00 00 = alert, v0x0100).
                return
            state.records.append(DtlsRecord(ctype, version, epoch, (seq_hi << 32) | seq_lo, length))
            if ctype == CT_HANDSHAKE and epoch == 0:
                _handshake(body, state)
            if len(body) < length:  # truncated capture: keep what was seen
                return
            pos += RECORD_HEADER + length
        elif (uh := unified_header(data, pos)) is not None:
            hl, length = uh
            state.records.append(DtlsRecord(0, 0, data[pos] & 0x03, 0, length))
            pos += hl + length
        else:
            break
        first = False
    if first:
        return
    if pos < len(data):
        state.trailing += len(data) - pos
        # A datagram that opens with a unified header has no fixed fields to check: demand that the
        # walk covers it exactly, otherwise it was random bytes in the 0x20-0x3F range.
        if state.records[start].content_type == 0:
            del state.records[start:]


def _handshake(body: bytes, state: _State) -> None:
    pos = 0
    while pos + HANDSHAKE_HEADER <= len(body):
        msg_type = body[pos]
        length = int.from_bytes(body[pos + 1 : pos + 4], "big")
        msg_seq = struct.unpack_from(">H", body, pos + 4)[0]
        frag_off = int.from_bytes(body[pos + 6 : pos + 9], "big")
        frag_len = int.from_bytes(body[pos + 9 : pos + 12], "big")
        frag = body[pos + HANDSHAKE_HEADER : pos + HANDSHAKE_HEADER + frag_len]
        if len(state.hs_types) < _MAX_TYPES:
            state.hs_types.append(msg_type)
        pos += HANDSHAKE_HEADER + frag_len
        if length > _MAX_MESSAGE or frag_off + len(frag) > length:
            continue
        key = (msg_seq, msg_type)
        msg = state.fragments.get(key)
        if msg is not None and (msg.done or msg.length != length):
            continue  # parsed once (later retransmissions do not re-parse), or a conflicting length
        if msg is None and frag_off == 0 and len(frag) == length:
            # A whole message in one fragment (the usual case): parse it, hold nothing.
            state.fragments[key] = done = _Message(length)
            done.done = True
            _message(msg_type, bytes(frag), state.facts)
            continue
        if frag:  # an empty fragment of a longer message adds nothing to reassemble
            _fragment(state, key, length, frag_off, bytes(frag), msg_type)


def _fragment(state: _State, key: tuple[int, int], length: int, off: int, frag: bytes, msg_type: int) -> None:
    """Hold one fragment of a message spread over several; parse the message once it is whole."""
    msg = state.fragments.get(key)
    if msg is None:
        if sum(1 for m in state.fragments.values() if not m.done) >= FLOW_MESSAGES:
            return state.drop("dtls_flow_messages")
        if not state.budget.take(0, messages=1):
            return state.drop("dtls_session")
        msg = state.fragments[key] = _Message(length)
    old = msg.pieces.get(off)
    if old is not None and len(old) >= len(frag):
        return None  # a retransmission of a fragment already held
    if old is None and len(msg.pieces) >= MESSAGE_PIECES:
        return state.drop("dtls_message_pieces")
    grow = len(frag) - (len(old) if old is not None else 0)
    if state.held + grow > FLOW_BYTES:
        return state.drop("dtls_flow_bytes")
    if not state.budget.take(grow):
        return state.drop("dtls_session")
    state.held += grow
    msg.pieces[off] = frag
    whole = msg.whole()
    if whole is not None:
        msg.done = True
        state.held -= sum(len(p) for p in msg.pieces.values())
        msg.pieces = {}
        _message(msg_type, whole, state.facts)
    return None


def _message(msg_type: int, msg: bytes, facts: dict[str, object]) -> None:
    try:
        if msg_type == HS_CLIENT_HELLO:
            _client_hello(msg, facts)
        elif msg_type == HS_SERVER_HELLO:
            _server_hello(msg, facts)
        elif msg_type == HS_HELLO_VERIFY:
            facts["hello_verify_request"] = True
        elif msg_type == HS_CERTIFICATE:
            _certificate(msg, facts)
    except (ValueError, IndexError, struct.error):
        return


def _vec(msg: bytes, pos: int, width: int) -> tuple[bytes, int]:
    if pos + width > len(msg):
        raise ValueError("short vector length")
    n = int.from_bytes(msg[pos : pos + width], "big")
    end = pos + width + n
    if end > len(msg):
        raise ValueError("short vector")
    return msg[pos + width : end], end


def _extensions(msg: bytes, pos: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    if pos + 2 > len(msg):
        return out
    block, _ = _vec(msg, pos, 2)
    i = 0
    while i + 4 <= len(block):
        etype, elen = struct.unpack_from(">HH", block, i)
        out.setdefault(etype, block[i + 4 : i + 4 + elen])
        i += 4 + elen
    return out


def _alpn(value: bytes) -> tuple[str, ...]:
    names: list[str] = []
    lst, _ = _vec(value, 0, 2)
    i = 0
    while i < len(lst):
        name, i = _vec(lst, i, 1)
        names.append(name[:_MAX_TEXT].decode("ascii", "replace"))
    return tuple(names)


def _srtp_profiles(value: bytes) -> tuple[int, ...]:
    lst, _ = _vec(value, 0, 2)
    return tuple(struct.unpack_from(">H", lst, i)[0] for i in range(0, len(lst) - 1, 2))


def _client_hello(msg: bytes, facts: dict[str, object]) -> None:
    facts["client_hello"] = True
    facts["client_version"] = struct.unpack_from(">H", msg, 0)[0]
    pos = 2 + 32
    _, pos = _vec(msg, pos, 1)  # session id
    _, pos = _vec(msg, pos, 1)  # cookie (DTLS only)
    _, pos = _vec(msg, pos, 2)  # cipher suites
    _, pos = _vec(msg, pos, 1)  # compression methods
    ext = _extensions(msg, pos)
    if EXT_USE_SRTP in ext:
        facts["srtp_profiles_offered"] = _srtp_profiles(ext[EXT_USE_SRTP])
    if EXT_ALPN in ext:
        facts["alpn_offered"] = _alpn(ext[EXT_ALPN])
    if EXT_SNI in ext:
        lst, _ = _vec(ext[EXT_SNI], 0, 2)
        if len(lst) >= 3 and lst[0] == 0:
            name, _ = _vec(lst, 1, 2)
            facts["sni"] = name[:_MAX_TEXT].decode("ascii", "replace")


def _server_hello(msg: bytes, facts: dict[str, object]) -> None:
    facts["server_hello"] = True
    pos = 2 + 32
    _, pos = _vec(msg, pos, 1)  # session id
    facts["cipher_suite"] = struct.unpack_from(">H", msg, pos)[0]
    pos += 3  # cipher suite, compression method
    ext = _extensions(msg, pos)
    if EXT_USE_SRTP in ext:
        profiles = _srtp_profiles(ext[EXT_USE_SRTP])
        if profiles:
            facts["srtp_profile_chosen"] = profiles[0]
    if EXT_ALPN in ext:
        names = _alpn(ext[EXT_ALPN])
        if names:
            facts["alpn_chosen"] = names[0]


def _certificate(msg: bytes, facts: dict[str, object]) -> None:
    chain, _ = _vec(msg, 0, 3)
    der, _ = _vec(chain, 0, 3)
    subject, issuer = certificate_names(der)
    if subject is not None:
        facts["certificate_cn"] = subject
    if issuer is not None:
        facts["certificate_issuer_cn"] = issuer


def certificate_names(der: bytes) -> tuple[str | None, str | None]:
    """(subject CN, issuer CN) of a DER certificate; (None, None) when it does not parse."""
    try:
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        cert = x509.load_der_x509_certificate(der)

        def cn(name: x509.Name) -> str | None:
            attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
            if not attrs:
                return None
            value = attrs[0].value
            text = value if isinstance(value, str) else value.decode("utf-8", "replace")
            return text[:_MAX_TEXT]

        return cn(cert.subject), cn(cert.issuer)
    except MemoryError:
        raise  # out of memory is not bad input: never swallowed (issue 16)
    except Exception:  # cryptography raises many types on hostile DER; none may escape a parser
        return None, None


# --- Registration: kinds, rules and facts (analyzer/dissect/registry.py) ---------------------

HANDSHAKE_TYPES = (CT_CCS, CT_ALERT, CT_HANDSHAKE, CT_HEARTBEAT, CT_ACK)  # kind dtls_handshake
APPDATA_TYPES = (CT_APPDATA, CT_CID)  # kind dtls_appdata


def _rule(b: Bytes, sport: np.ndarray, dport: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b0, plen = b.at(0), b.length
    # RFC 6347 4.1: content type, version FEFF/FEFD (FEFC, 0100 pre-standard), 13-byte header.
    # The first record must fit: Zoom's P2P probe `15 01 00 00 00 00` reads as an alert of version
    # 0x0100, and only its length field (+11) gives it away (zoom_p2p.pcapng).
    rec_len = b.u16(11)
    dtls = (plen >= RECORD_HEADER) & member(b.u16(1), tuple(VERSIONS)) & (rec_len >= 0)
    dtls &= RECORD_HEADER + rec_len <= plen
    # RFC 9147 4: unified header 001CSLEE; only C=0, L=1 has a readable length; one record exactly.
    uni_hl = np.where((np.maximum(b0, 0) & 0x08) != 0, 5, 4)
    unified = (b0 >= 0) & ((b0 & 0xE0) == 0x20) & ((b0 & 0x10) == 0) & ((b0 & 0x04) != 0)
    unified &= uni_hl + b.u16(uni_hl - 2) == plen
    return dtls & member(b0, HANDSHAKE_TYPES), (dtls & member(b0, APPDATA_TYPES)) | unified


def _packet(ctx: FlowContext, p: bytes, d: int, ts_ns: int) -> bool:
    if 20 <= p[0] <= 63 and (classic_record_ok(p, 0) or unified_header(p, 0)):
        ctx.state("dtls", list).append(p)
        if ctx.depth == 0 and len(p) > RECORD_HEADER and p[0] == CT_HANDSHAKE:
            # (direction, ts_ns, handshake type at +13) of the hellos, for the round trip
            ctx.state("dtls_marks", list).append((int(d), int(ts_ns), p[RECORD_HEADER]))
        return True
    return False


def _rtt(marks: list[tuple[int, int, int]], f: dict) -> None:
    """Round trip of the DTLS handshake, like the TCP handshake's: the *first* ClientHello (a
    retransmission can only lengthen the measure, never shorten it below the truth) to the first
    HelloVerifyRequest (3) or ServerHello (2) sent back in the other direction."""
    hellos = sorted((t, d) for d, t, h in marks if h == HS_CLIENT_HELLO and t)
    if not hellos:
        return
    t0, d0 = hellos[0]
    answers = [t for d, t, h in marks if h in (HS_SERVER_HELLO, HS_HELLO_VERIFY) and d != d0 and t >= t0]
    if answers:
        f["dtls_rtt_ms"] = (min(answers) - t0) / 1e6


def _finish(ctx: FlowContext) -> None:
    dgrams = ctx.scratch.get("dtls")
    if not dgrams:
        return
    dt = parse_dtls_flight(dgrams, ctx.budget)
    f = ctx.facts
    if dt is not None:
        _flight_facts(dt, f)
    _rtt(ctx.scratch.get("dtls_marks", []), f)


def _flight_facts(dt: DtlsFacts, f: Facts) -> None:
    f.proto("dtls")
    f["dtls_handshake"] = bool(dt.client_hello or dt.server_hello or dt.handshake_types)
    if dt.srtp_profiles_offered or dt.srtp_profile_chosen is not None:
        f["dtls_use_srtp"] = True
    f.first("dtls_srtp_profile", dt.srtp_profile_chosen)
    f.first("dtls_alpn", dt.alpn_chosen or (dt.alpn_offered[0] if dt.alpn_offered else None))
    f.first("dtls_cert", dt.certificate_cn)
    f.first("dtls_cert_issuer", dt.certificate_issuer_cn)
    f.first("sni", host_name(dt.sni))


DISSECTOR = Dissector(
    name="dtls",
    kinds=(
        # DTLS-SRTP (RFC 5764) keys come out of this handshake.
        Kind("dtls_handshake", 7, role="key_exchange", control=True, label="dtls"),
        Kind("dtls_appdata", 8, role="media", label="dtls"),  # data channels (SCTP) or media in DTLS
    ),
    rules=(Rule("dtls", "udp", 40, ("dtls_handshake", "dtls_appdata"), _rule),),
    facts=(
        ("dtls_rtt_ms", "f64"),  # first DTLS ClientHello to the first HelloVerifyRequest/ServerHello answering it (ms)
        ("dtls_handshake", "bool"),
        ("dtls_use_srtp", "bool"),
        ("dtls_srtp_profile", "i64"),
        ("dtls_alpn", "str"),
        ("dtls_cert", "str"),
        ("dtls_cert_issuer", "str"),
    ),
    labels=(("dtls", 50),),
    udp_packet=(PacketHook(70, _packet),),
    udp_finish=(Hook(10, _finish),),
)
