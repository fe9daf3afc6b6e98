"""TLS handshake facts: ClientHello (SNI, ALPN, versions), ServerHello and, in TLS <= 1.2, the
server certificate.

Input is the reassembled bytes of one TCP direction (see tcpstream.reassemble); QUIC hands the
bare handshake message from its CRYPTO stream to `parse_client_hello_message`. Every function
returns None (or a partial result) on malformed input and never raises.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from analyzer.decode.fields import member
from analyzer.dissect.columns import Bytes
from analyzer.dissect.names import host_name
from analyzer.dissect.spec import MAX_LIST, Dissector, FlowContext, Hook, Kind, Rule

HANDSHAKE_RECORD = 22
CLIENT_HELLO = 1
SERVER_HELLO = 2
CERTIFICATE = 11

EXT_SNI = 0
EXT_ALPN = 16
EXT_SUPPORTED_VERSIONS = 43

# RFC 8446 4.1.3: a ServerHello with this random is a HelloRetryRequest.
_HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")


@dataclass(frozen=True, slots=True)
class ClientHello:
    legacy_version: int
    supported_versions: tuple[int, ...]
    sni: str | None
    alpn: tuple[str, ...]
    cipher_count: int
    extension_types: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    subject_cn: str | None
    issuer_cn: str | None
    sans: tuple[str, ...]
    self_signed: bool


@dataclass(frozen=True, slots=True)
class ServerFacts:
    legacy_version: int
    selected_version: int | None
    cipher: int
    alpn: str | None
    extension_types: tuple[int, ...]
    hello_retry: bool
    certificate: CertificateFacts | None

    @property
    def version(self) -> int:
        """The negotiated version: supported_versions wins over the legacy field (TLS 1.3)."""
        return self.selected_version if self.selected_version is not None else self.legacy_version


class _Reader:
    """Bounds-checked cursor; reads past the end raise _Short, caught at the public boundary."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise _Short
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def vec(self, len_bytes: int) -> bytes:
        return self.take(self.uint(len_bytes))

    def left(self) -> int:
        return len(self.data) - self.pos


class _Short(Exception):
    pass


def handshake_stream(data: bytes) -> bytes:
    """Concatenated bodies of the leading handshake records (type 22) of a TLS byte stream.

    Stops at the first non-handshake record (e.g. ChangeCipherSpec or application data: what
    follows is encrypted) or at a truncated record, whose available bytes are still included so
    that a message fully contained in them can be read.
    """
    out = bytearray()
    pos = 0
    n = len(data)
    while pos + 5 <= n:
        ctype = data[pos]
        major = data[pos + 1]
        if ctype != HANDSHAKE_RECORD or major != 3:
            break
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        out += data[pos + 5 : pos + 5 + length]
        pos += 5 + length
    return bytes(out)


def handshake_messages(stream: bytes) -> list[tuple[int, bytes]]:
    """Complete (type, body) handshake messages from a record-free handshake byte stream."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos + 4 <= len(stream):
        mtype = stream[pos]
        length = int.from_bytes(stream[pos + 1 : pos + 4], "big")
        end = pos + 4 + length
        if end > len(stream):
            break
        out.append((mtype, stream[pos + 4 : end]))
        pos = end
    return out


def _text(raw: bytes) -> str:
    # Names come from hostile peers: keep them printable and unambiguous.
    return raw.decode("ascii", "backslashreplace")


def _parse_extensions(r: _Reader) -> list[tuple[int, bytes]]:
    if r.left() == 0:
        return []
    block = _Reader(r.vec(2))
    exts: list[tuple[int, bytes]] = []
    # A malformed extension ends the list but keeps what came before it (often the SNI):
    # one client's broken extension should not hide the name it asked for.
    try:
        while block.left() >= 4:
            etype = block.uint(2)
            exts.append((etype, block.vec(2)))
    except _Short:
        pass
    return exts


def _sni(body: bytes) -> str | None:
    r = _Reader(body)
    names = _Reader(r.vec(2))
    while names.left() >= 3:
        ntype = names.uint(1)
        name = names.vec(2)
        if ntype == 0:
            return _text(name)
    return None


def _alpn(body: bytes) -> tuple[str, ...]:
    r = _Reader(body)
    lst = _Reader(r.vec(2))
    out: list[str] = []
    while lst.left() >= 1:
        out.append(_text(lst.vec(1)))
    return tuple(out)


def _client_hello_body(body: bytes) -> ClientHello | None:
    try:
        r = _Reader(body)
        legacy = r.uint(2)
        r.take(32)
        r.vec(1)  # session id
        ciphers = r.vec(2)
        r.vec(1)  # compression methods
        exts = _parse_extensions(r)
    except _Short:
        return None
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    versions: tuple[int, ...] = ()
    for etype, ebody in exts:
        try:
            if etype == EXT_SNI and sni is None:
                sni = _sni(ebody)
            elif etype == EXT_ALPN and not alpn:
                alpn = _alpn(ebody)
            elif etype == EXT_SUPPORTED_VERSIONS and not versions:
                raw = _Reader(ebody).vec(1)
                versions = tuple(int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw) - 1, 2))
        except _Short:
            continue  # one broken extension should not hide the others
    return ClientHello(
        legacy_version=legacy,
        supported_versions=versions,
        sni=sni,
        alpn=alpn,
        cipher_count=len(ciphers) // 2,
        extension_types=tuple(t for t, _ in exts),
    )


def parse_client_hello_message(message: bytes) -> ClientHello | None:
    """ClientHello from a bare handshake message (4-byte type+length header, no record header),
    as carried in QUIC CRYPTO frames."""
    try:
        for mtype, body in handshake_messages(bytes(message)):
            if mtype == CLIENT_HELLO:
                return _client_hello_body(body)
            return None
    except MemoryError:
        raise  # out of memory is not bad input: never swallowed (issue 16)
    except Exception:  # defensive: a parser must never take the pipeline down
        return None
    return None


def parse_client_hello(data: bytes) -> ClientHello | None:
    """ClientHello from the start of a client's TLS record stream (record type 22)."""
    try:
        return parse_client_hello_message(handshake_stream(bytes(data)))
    except MemoryError:
        raise  # out of memory is not bad input: never swallowed (issue 16)
    except Exception:
        return None


def _server_hello_body(body: bytes) -> tuple[int, bytes, int, list[tuple[int, bytes]]] | None:
    try:
        r = _Reader(body)
        legacy = r.uint(2)
        random = r.take(32)
        r.vec(1)
        cipher = r.uint(2)
        r.uint(1)
        exts = _parse_extensions(r)
    except _Short:
        return None
    return legacy, random, cipher, exts


def parse_certificate_der(der: bytes) -> CertificateFacts | None:
    """Subject CN, issuer CN and dNSName SANs of one DER certificate; None if unparseable."""
    return _parse_certificate(bytes(der))


# A server sends the same certificate on every connection, and X.509 parsing is the costliest
# step of TLS dissection; the facts are immutable, so one parse per distinct certificate.
@lru_cache(maxsize=512)
def _parse_certificate(der: bytes) -> CertificateFacts | None:
    try:
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # odd-but-parseable certs trigger deprecation warnings
            cert = x509.load_der_x509_certificate(bytes(der))
            subject = cert.subject
            issuer = cert.issuer

        def cn(name: x509.Name) -> str | None:
            attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
            if not attrs:
                return None
            value = attrs[0].value
            return value if isinstance(value, str) else _text(bytes(value))

        sans: tuple[str, ...] = ()
        try:
            ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            sans = tuple(ext.value.get_values_for_type(x509.DNSName))
        except MemoryError:
            raise  # out of memory is not bad input: never swallowed (issue 16)
        except Exception:  # absent or malformed SAN: keep the CNs
            sans = ()
        return CertificateFacts(
            subject_cn=cn(subject),
            issuer_cn=cn(issuer),
            sans=sans,
            self_signed=subject == issuer,
        )
    except MemoryError:
        raise  # out of memory is not bad input: never swallowed (issue 16)
    except Exception:
        return None


def _first_certificate(body: bytes) -> bytes | None:
    # TLS <= 1.2 Certificate: 3-byte list length, then 3-byte length + DER per certificate.
    try:
        r = _Reader(body)
        chain = _Reader(r.vec(3))
        return chain.vec(3)
    except _Short:
        return None


def parse_server_handshake(data: bytes) -> ServerFacts | None:
    """ServerHello facts, plus the leaf certificate when it travels in clear (TLS <= 1.2),
    from the start of a server's TLS record stream."""
    try:
        messages = handshake_messages(handshake_stream(bytes(data)))
        hello = None
        cert: CertificateFacts | None = None
        for mtype, body in messages:
            if mtype == SERVER_HELLO and hello is None:
                hello = _server_hello_body(body)
            elif mtype == CERTIFICATE and hello is not None and cert is None:
                der = _first_certificate(body)
                cert = parse_certificate_der(der) if der else None
        if hello is None:
            return None
        legacy, random, cipher, exts = hello
        selected: int | None = None
        alpn: str | None = None
        for etype, ebody in exts:
            if etype == EXT_SUPPORTED_VERSIONS and len(ebody) >= 2:
                selected = int.from_bytes(ebody[:2], "big")
            elif etype == EXT_ALPN:
                try:
                    names = _alpn(ebody)
                except _Short:
                    names = ()
                alpn = names[0] if names else None
        return ServerFacts(
            legacy_version=legacy,
            selected_version=selected,
            cipher=cipher,
            alpn=alpn,
            extension_types=tuple(t for t, _ in exts),
            hello_retry=random == _HRR_RANDOM,
            certificate=cert,
        )
    except MemoryError:
        raise  # out of memory is not bad input: never swallowed (issue 16)
    except Exception:
        return None


# --- Registration: kinds, rules and facts (analyzer/dissect/registry.py) ---------------------

VERSION_NAMES = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}
APPDATA_RECORD = 23


def _rule(b: Bytes, sport: np.ndarray, dport: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b0, b1 = b.at(0), b.at(1)
    # TLS record layer (RFC 8446 5.1): type 20-23, legacy version 0x03 0x00-0x04.
    tls = member(b0, (20, 21, 22, 23)) & (b1 == 3) & (b.at(2) >= 0) & (b.at(2) <= 4)
    return tls & (b0 == APPDATA_RECORD), tls


def _tcp(ctx: FlowContext) -> None:
    c2s, s2c = ctx.streams[0], ctx.streams[1]
    # The client speaks first, unless only the server's side of the handshake was captured.
    if not (c2s[:1] == b"\x16" or (s2c[:1] == b"\x16" and c2s[:1] in (b"", b"\x14", b"\x15", b"\x17"))):
        return
    hello = parse_client_hello(c2s) if c2s[:1] == b"\x16" else None
    server = parse_server_handshake(s2c) if s2c[:1] == b"\x16" else None
    if hello is None and server is None:
        return
    f = ctx.facts
    f.proto("tls")
    if hello is not None:
        f.first("sni", host_name(hello.sni))
        if hello.alpn:
            f["alpn"] = list(hello.alpn[:MAX_LIST])
    if server is not None:
        f["tls_version"] = VERSION_NAMES.get(server.version, f"0x{server.version:04x}")
        if server.alpn:
            f["alpn"] = [server.alpn]
        cert = server.certificate
        if cert is not None:
            f.first("cert_subject", cert.subject_cn)
            f.first("cert_issuer", cert.issuer_cn)
            if cert.sans:
                f["cert_sans"] = list(cert.sans[:MAX_LIST])
    elif hello is not None and hello.supported_versions:
        f["tls_version"] = VERSION_NAMES.get(max(hello.supported_versions))


DISSECTOR = Dissector(
    name="tls",
    kinds=(Kind("tls_handshake", 3, label="tls"), Kind("tls_appdata", 4, label="tls")),
    rules=(Rule("tls", "tcp", 20, ("tls_appdata", "tls_handshake"), _rule),),
    facts=(
        ("sni", "str"),
        ("alpn", "list<str>"),
        ("tls_version", "str"),
        ("cert_subject", "str"),
        ("cert_issuer", "str"),
        ("cert_sans", "list<str>"),
    ),
    labels=(("tls", 80),),
    tcp_flow=(Hook(20, _tcp),),
)
