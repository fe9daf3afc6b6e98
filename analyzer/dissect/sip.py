"""SIP (RFC 3261) messages and their SDP bodies (RFC 8866): who calls whom, where the media goes,
and how the media keys are exchanged (SDES a=crypto, DTLS-SRTP a=fingerprint, MIKEY, ZRTP).

Privacy and safety rule: SDES puts the SRTP master key in clear in `a=crypto ... inline:<key>`.
confscope reports *that* a key was handed out, never the key: nothing returned by this module
(fields, repr, the kept body) contains inline key material or MIKEY payloads.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

import numpy as np

from analyzer.dissect.columns import Bytes, port_in
from analyzer.dissect.spec import Dissector, FlowContext, Hook, Kind, PacketHook, Rule

# RFC 3261 request methods (plus RFC 3262/3265/3428/3903/3515/3311 extensions).
METHODS = (
    "INVITE",
    "REGISTER",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "NOTIFY",
    "SUBSCRIBE",
    "PUBLISH",
    "MESSAGE",
    "INFO",
    "PRACK",
    "REFER",
    "UPDATE",
)
PORTS = (5060, 5061)  # RFC 3261: sip and sips
# How a SIP message starts: a request method or the status line, each followed by a space.
PREFIXES: tuple[bytes, ...] = tuple(m.encode() + b" " for m in (*METHODS, "SIP/2.0"))
_REQUEST_RE = re.compile(r"^([A-Za-z]+) (\S+) SIP/2\.0$")
_STATUS_RE = re.compile(r"^SIP/2\.0 (\d{3})(?: (.*))?$")

# RFC 3261 7.3.3 and later RFCs: compact header names.
_COMPACT = {
    "i": "call-id",
    "f": "from",
    "t": "to",
    "v": "via",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "k": "supported",
    "s": "subject",
    "e": "content-encoding",
    "o": "event",
    "r": "refer-to",
    "u": "allow-events",
    "b": "referred-by",
    "x": "session-expires",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
    "y": "identity",
    "n": "identity-info",
}

_MAX_HEADERS = 200
_MAX_MESSAGES = 64

_MIKEY_TYPES = {
    0: "psk_init",
    1: "psk_verify",
    2: "pk_init",
    3: "pk_verify",
    4: "dh_init",
    5: "dh_resp",
    6: "error",
    7: "dhhmac_init",
    8: "dhhmac_resp",
    9: "rsa_r_init",
    10: "rsa_r_resp",
}

# Anything after "inline:" up to a separator is key material (RFC 4568 key-params).
_INLINE_RE = re.compile(rb"(inline:)[^\s|;]*", re.IGNORECASE)
_SUITE_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_RTPMAP_RE = re.compile(r"(\d{1,3})\s+([^/\s]{1,64})/(\d{1,8})")
_MIKEY_RE = re.compile(rb"(a=key-mgmt:\s*mikey\s+)\S+", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class SdesCrypto:
    tag: int | None
    suite: str
    key_present: bool
    key_length_bytes: int | None  # decoded master key + salt length of the first inline key
    key_count: int


@dataclass(frozen=True, slots=True)
class KeyMgmt:
    protocol: str  # "mikey" or whatever the attribute names
    data_type: int | None  # MIKEY header data type when the payload decodes
    data_type_name: str | None


@dataclass(frozen=True, slots=True)
class Fingerprint:
    hash: str
    value: str  # a certificate digest: public, needed to match the DTLS certificate


@dataclass(frozen=True, slots=True)
class SdpMedia:
    media: str
    port: int | None
    proto: str
    formats: tuple[str, ...]
    connection: str | None
    crypto: tuple[SdesCrypto, ...]
    fingerprints: tuple[Fingerprint, ...]
    setup: str | None
    key_mgmt: tuple[KeyMgmt, ...]
    zrtp_hash: bool
    rtcp_mux: bool
    # a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>] (RFC 8866 6.6): the RTP clock per PT
    rtpmap: tuple[tuple[int, str, int], ...] = ()

    @property
    def payload_types(self) -> tuple[int, ...]:
        return tuple(int(f) for f in self.formats if f.isdigit() and int(f) < 128)


@dataclass(frozen=True, slots=True)
class Sdp:
    origin_address: str | None
    connections: tuple[str, ...]  # every c= address, session level first
    media: tuple[SdpMedia, ...]
    # session-level attributes (media-level ones are on each SdpMedia)
    crypto: tuple[SdesCrypto, ...]
    fingerprints: tuple[Fingerprint, ...]
    setup: str | None
    key_mgmt: tuple[KeyMgmt, ...]
    zrtp_hash: bool

    @property
    def key_exchange(self) -> tuple[str, ...]:
        """Key-exchange mechanisms the SDP reveals: sdes, dtls-srtp, mikey, zrtp."""
        kinds: list[str] = []
        crypto = self.crypto + tuple(c for m in self.media for c in m.crypto)
        if crypto:
            kinds.append("sdes")
        if self.fingerprints or any(m.fingerprints for m in self.media):
            kinds.append("dtls-srtp")
        km = self.key_mgmt + tuple(k for m in self.media for k in m.key_mgmt)
        if any(k.protocol == "mikey" for k in km):
            kinds.append("mikey")
        if self.zrtp_hash or any(m.zrtp_hash for m in self.media):
            kinds.append("zrtp")
        return tuple(kinds)


@dataclass(frozen=True, slots=True)
class SipMessage:
    is_request: bool
    method: str | None  # requests; for responses the CSeq method
    request_uri: str | None
    status_code: int | None
    reason: str | None
    call_id: str | None
    from_: str | None
    to: str | None
    via: tuple[str, ...]
    contact: str | None
    user_agent: str | None
    server: str | None
    cseq: str | None
    content_type: str | None
    content_length: int | None
    body: bytes  # with any SDES inline key and MIKEY payload replaced by "REDACTED"
    sdp: Sdp | None


def redact_keys(body: bytes) -> bytes:
    """Body with SDES inline keys and MIKEY payloads replaced, so it is safe to keep or print."""
    body = _INLINE_RE.sub(rb"\1REDACTED", body)
    return _MIKEY_RE.sub(rb"\1REDACTED", body)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def _b64len(value: str) -> int | None:
    try:
        padded = value + "=" * (-len(value) % 4)
        return len(base64.b64decode(padded, validate=True))
    except (binascii.Error, ValueError):
        return None


def _crypto(value: str) -> SdesCrypto | None:
    # a=crypto:<tag> <suite> <key-params> [<session-params>]; key-params: inline:<key>[|..][;inline:..]
    parts = value.split()
    if len(parts) < 2:
        return None
    tag = int(parts[0]) if parts[0].isdigit() and len(parts[0]) < 10 else None
    # Only a well-formed suite name is kept: a malformed line must not smuggle the key out.
    suite = parts[1] if _SUITE_RE.match(parts[1]) else "invalid"
    key_present = False
    key_len: int | None = None
    count = 0
    if len(parts) >= 3:
        for param in parts[2].split(";"):
            if param[:7].lower() != "inline:":
                continue
            key = param[7:].split("|", 1)[0]
            if not key:
                continue
            count += 1
            key_present = True
            if key_len is None:
                key_len = _b64len(key)
    return SdesCrypto(tag, suite, key_present, key_len, count)


def _key_mgmt(value: str) -> KeyMgmt:
    parts = value.split(None, 1)
    proto = parts[0].lower()[:32] if parts else ""
    dtype: int | None = None
    if proto == "mikey" and len(parts) == 2:
        try:
            raw = base64.b64decode(parts[1].strip() + "=" * (-len(parts[1].strip()) % 4))
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) >= 2 and raw[0] == 1:  # MIKEY version 1
            dtype = raw[1]
    return KeyMgmt(proto, dtype, _MIKEY_TYPES.get(dtype) if dtype is not None else None)


def _connection(value: str) -> str | None:
    # c=IN IP4 203.0.113.1[/ttl[/n]]
    parts = value.split()
    if len(parts) >= 3:
        return parts[2].split("/", 1)[0][:64]
    return None


class _Block:
    """Mutable collector for one SDP level (session or a media section)."""

    def __init__(self) -> None:
        self.connection: str | None = None
        self.crypto: list[SdesCrypto] = []
        self.fingerprints: list[Fingerprint] = []
        self.setup: str | None = None
        self.key_mgmt: list[KeyMgmt] = []
        self.zrtp_hash = False
        self.rtcp_mux = False
        self.rtpmap: list[tuple[int, str, int]] = []

    def attribute(self, attr: str) -> None:
        name, _, value = attr.partition(":")
        name = name.strip().lower()
        value = value.strip()
        if name == "crypto":
            c = _crypto(value)
            if c is not None:
                self.crypto.append(c)
        elif name == "fingerprint":
            parts = value.split()
            if len(parts) >= 2:
                self.fingerprints.append(Fingerprint(parts[0].lower()[:16], parts[1][:200]))
        elif name == "setup":
            self.setup = value.lower()[:16] or None
        elif name == "key-mgmt":
            self.key_mgmt.append(_key_mgmt(value))
        elif name == "zrtp-hash":
            self.zrtp_hash = True
        elif name == "rtcp-mux":
            self.rtcp_mux = True
        elif name == "rtpmap" and len(self.rtpmap) < 64:
            m = _RTPMAP_RE.match(value)
            if m and int(m.group(1)) < 128 and 0 < int(m.group(3)) <= 10_000_000:
                self.rtpmap.append((int(m.group(1)), m.group(2)[:32], int(m.group(3))))


def parse_sdp(body: bytes | str) -> Sdp:
    """SDP facts; unknown or broken lines are skipped, so any input gives a (maybe empty) Sdp."""
    try:
        text = body if isinstance(body, str) else bytes(body).decode("utf-8", "replace")
    except MemoryError:
        raise  # out of memory is not bad input: never swallowed (issue 16)
    except Exception:
        text = ""
    session = _Block()
    origin: str | None = None
    connections: list[str] = []
    media: list[tuple[str, int | None, str, tuple[str, ...], _Block]] = []
    current = session
    for line in text.splitlines()[:2000]:
        if len(line) < 2 or line[1] != "=":
            continue
        key, value = line[0], line[2:].strip()
        if key == "o":
            parts = value.split()
            origin = parts[5][:64] if len(parts) >= 6 else None
        elif key == "c":
            addr = _connection(value)
            if addr:
                connections.append(addr)
                current.connection = addr
        elif key == "m":
            parts = value.split()
            if len(parts) < 3:
                continue
            port_s = parts[1].split("/", 1)[0]
            port = int(port_s) if port_s.isdigit() and int(port_s) < 65536 else None
            current = _Block()
            media.append((parts[0][:32], port, parts[2][:64], tuple(p[:32] for p in parts[3:64]), current))
        elif key == "a":
            current.attribute(value)
    return Sdp(
        origin_address=origin,
        connections=tuple(connections),
        media=tuple(
            SdpMedia(
                media=m,
                port=port,
                proto=proto,
                formats=fmts,
                connection=blk.connection or session.connection,
                crypto=tuple(blk.crypto),
                fingerprints=tuple(blk.fingerprints),
                setup=blk.setup,
                key_mgmt=tuple(blk.key_mgmt),
                zrtp_hash=blk.zrtp_hash,
                rtcp_mux=blk.rtcp_mux,
                rtpmap=tuple(blk.rtpmap),
            )
            for m, port, proto, fmts, blk in media
        ),
        crypto=tuple(session.crypto),
        fingerprints=tuple(session.fingerprints),
        setup=session.setup,
        key_mgmt=tuple(session.key_mgmt),
        zrtp_hash=session.zrtp_hash,
    )


def _parse_at(data: bytes, start: int, stream: bool) -> tuple[SipMessage, int] | None:
    head_end = data.find(b"\r\n\r\n", start)
    sep = 4
    if head_end < 0:
        head_end = data.find(b"\n\n", start)
        sep = 2
    if head_end < 0:
        if stream:
            return None  # header block incomplete: wait for more bytes
        head_end, sep = len(data), 0
    lines = data[start:head_end].decode("utf-8", "backslashreplace").replace("\r\n", "\n").split("\n")
    if not lines:
        return None
    first = lines[0].strip()
    req = _REQUEST_RE.match(first)
    status = _STATUS_RE.match(first) if req is None else None
    if req is None and status is None:
        return None
    if req is not None and req.group(1).upper() not in METHODS:
        return None
    headers: dict[str, list[str]] = {}
    last: str | None = None
    for line in lines[1 : _MAX_HEADERS + 1]:
        if line[:1] in (" ", "\t") and last is not None:
            headers[last][-1] += " " + line.strip()  # folded continuation line
            continue
        name, colon, value = line.partition(":")
        if not colon:
            continue
        key = name.strip().lower()
        key = _COMPACT.get(key, key)
        headers.setdefault(key, []).append(value.strip())
        last = key

    def one(name: str) -> str | None:
        values = headers.get(name)
        return values[0] if values else None

    clen: int | None = None
    raw_len = one("content-length")
    if raw_len is not None and raw_len.isdigit() and len(raw_len) < 10:
        clen = int(raw_len)
    body_start = head_end + sep
    if clen is not None:
        body_end = body_start + clen
        if body_end > len(data):
            if stream:
                return None
            body_end = len(data)
    else:
        body_end = body_start if stream else len(data)
    body = data[body_start:body_end]
    ctype = one("content-type")
    sdp = parse_sdp(body) if ctype and "application/sdp" in ctype.lower() and body else None
    cseq = one("cseq")
    method = req.group(1).upper() if req else (cseq.split()[-1].upper() if cseq and cseq.split() else None)
    via = tuple(v.strip() for value in headers.get("via", []) for v in value.split(",") if v.strip())
    msg = SipMessage(
        is_request=req is not None,
        method=method,
        request_uri=req.group(2) if req else None,
        status_code=int(status.group(1)) if status else None,
        reason=(status.group(2) or None) if status else None,
        call_id=one("call-id"),
        from_=one("from"),
        to=one("to"),
        via=via,
        contact=one("contact"),
        user_agent=one("user-agent"),
        server=one("server"),
        cseq=cseq,
        content_type=ctype,
        content_length=clen,
        body=redact_keys(body),
        sdp=sdp,
    )
    return msg, body_end


def parse_sip(data: bytes) -> SipMessage | None:
    """The SIP message at the start of a UDP payload (or of a TCP stream)."""
    try:
        got = _parse_at(bytes(data), 0, stream=False)
        return got[0] if got else None
    except MemoryError:
        raise  # out of memory is not bad input: never swallowed (issue 16)
    except Exception:
        return None


def parse_sip_stream(data: bytes) -> list[SipMessage]:
    """Every complete SIP message of a TCP byte stream, split by Content-Length."""
    out: list[SipMessage] = []
    try:
        data = bytes(data)
        pos = 0
        while pos < len(data) and len(out) < _MAX_MESSAGES:
            while data[pos : pos + 2] == b"\r\n":  # RFC 5626 keep-alive CRLFs between messages
                pos += 2
            got = _parse_at(data, pos, stream=True)
            if got is None:
                break
            msg, end = got
            out.append(msg)
            if end <= pos:
                break
            pos = end
    except MemoryError:
        raise  # out of memory is not bad input: never swallowed (issue 16)
    except Exception:
        return out
    return out


# --- Registration: kinds, rules and facts (analyzer/dissect/registry.py) ---------------------


def _rule(b: Bytes, sport: np.ndarray, dport: np.ndarray) -> np.ndarray:
    return b.starts_with_any(PREFIXES) | port_in(sport, dport, PORTS)


def looks_sip(data: bytes) -> bool:
    return data.startswith(PREFIXES)


def _facts(ctx: FlowContext, msg: SipMessage) -> None:
    f = ctx.facts
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


def _packet(ctx: FlowContext, p: bytes, d: int, ts_ns: int) -> bool:
    if not looks_sip(p):
        return False
    msg = parse_sip(p)
    if msg is not None:
        _facts(ctx, msg)
    return msg is not None


def _tcp(ctx: FlowContext) -> None:
    c2s, s2c = ctx.streams[0], ctx.streams[1]
    if looks_sip(c2s) or looks_sip(s2c):
        for data in (c2s, s2c):
            for msg in parse_sip_stream(data):
                _facts(ctx, msg)


DISSECTOR = Dissector(
    name="sip",
    kinds=(Kind("sip", 18, control=True, label="sip"),),
    rules=(Rule("sip", "udp", 110, ("sip",), _rule), Rule("sip_tcp", "tcp", 40, ("sip",), _rule)),
    facts=(
        ("sip_call_id", "str"),
        ("sip_user_agent", "str"),
        ("sip_methods", "list<str>"),
        ("sdp_key_exchange", "list<str>"),
        ("sdp_media", "list<addr>"),
        # (ip, port, media, pt, encoding, clock) per a=rtpmap of each m= section (the RTP clock per PT)
        ("sdp_rtpmap", "list<rtpmap>"),
    ),
    labels=(("sip", 60),),
    udp_packet=(PacketHook(110, _packet),),
    tcp_flow=(Hook(60, _tcp),),
)
