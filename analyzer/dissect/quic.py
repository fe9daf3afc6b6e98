"""QUIC Initial packets: decrypt them with the version's public Initial keys (RFC 9001 5.2,
RFC 9369 for v2) and recover the TLS ClientHello from the CRYPTO stream.

Initial keys derive only from the client's first Destination Connection ID, so any passive
observer can read the ClientHello (SNI, ALPN). Clients split and reorder the ClientHello across
CRYPTO frames, packets and datagrams, hence `client_hello_from_initials`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from analyzer.dissect.columns import Bytes, port_in
from analyzer.dissect.names import host_name
from analyzer.dissect.spec import MAX_LIST, Dissector, FlowContext, Hook, Kind, PacketHook, Rule
from analyzer.dissect.tls import ClientHello, parse_client_hello_message

V1 = 0x00000001
V2 = 0x6B3343CF
PORT = 443  # where a short header (too weak alone) or an unknown version's long header counts

_SALT_V1 = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
_SALT_V2 = bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9")
_SALT_D29 = bytes.fromhex("afbfec289993d24c9e9786f19c6111e04390a899")
_SALT_D23 = bytes.fromhex("c3eef712c72ebb5a11a7d2432bb46365bef9f502")
_SALT_D22 = bytes.fromhex("7fbcdb0e7c66bbe9193a96cd21519ebd7a02644a")
_SALT_Q050 = bytes.fromhex("504574efd066fe2f9d945cfcdbd3a7f0d3b56b45")
_SALT_T050 = bytes.fromhex("7ff579e5acd072915580304c43a2367c60488310")
_SALT_T051 = bytes.fromhex("7a4edef4e7ccee5fa4506c19124fc8ccda6e033d")

_FIXED_SALTS = {
    V1: _SALT_V1,
    V2: _SALT_V2,
    0xFACEB001: _SALT_D22,
    0xFACEB002: _SALT_D23,
    0xFACEB00E: _SALT_D23,
    0x51303530: _SALT_Q050,  # "Q050"
    0x54303530: _SALT_T050,  # "T050"
    0x54303531: _SALT_T051,  # "T051"
}

MAX_CRYPTO_BYTES = 1 << 16  # a ClientHello larger than this is not worth reassembling


def initial_salt(version: int) -> bytes | None:
    """Initial salt of a QUIC version, or None when the version is unknown (or greased)."""
    if version in _FIXED_SALTS:
        return _FIXED_SALTS[version]
    if 0xFF000000 <= version <= 0xFF0000FF:
        draft = version & 0xFF
        if draft >= 33:
            return _SALT_V1
        if draft >= 29:
            return _SALT_D29
        if draft >= 23:
            return _SALT_D23
        return _SALT_D22
    return None


def _is_v2(version: int) -> bool:
    return version == V2


def _initial_type_bits(version: int) -> int:
    # Long-header packet type: Initial is 0b00 in v1/drafts but 0b01 in v2 (RFC 9369 3.2).
    return 1 if _is_v2(version) else 0


def _retry_type_bits(version: int) -> int:
    return 0 if _is_v2(version) else 3


@dataclass(frozen=True, slots=True)
class InitialKeys:
    key: bytes
    iv: bytes
    hp: bytes


@dataclass(frozen=True, slots=True)
class QuicInitial:
    """What one datagram's Initial packets gave after decryption."""

    version: int
    dcid: bytes
    scid: bytes
    token_length: int
    packet_numbers: tuple[int, ...]
    crypto: tuple[tuple[int, bytes], ...]  # (stream offset, data) of every CRYPTO frame
    frame_types: tuple[int, ...]
    client_hello: ClientHello | None  # set when this datagram alone holds the whole ClientHello


def _expand_label(secret: bytes, label: str, length: int) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

    full = b"tls13 " + label.encode()
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + b"\x00"
    return HKDFExpand(algorithm=hashes.SHA256(), length=length, info=info).derive(secret)


@lru_cache(maxsize=1024)
def initial_keys(version: int, dcid: bytes, server: bool = False) -> InitialKeys | None:
    """Initial packet-protection keys for one direction, from the client's first DCID."""
    salt = initial_salt(version)
    if salt is None:
        return None
    # HKDF-Extract is one HMAC (RFC 5869 2.2).
    initial_secret = hmac.new(salt, dcid, hashlib.sha256).digest()
    secret = _expand_label(initial_secret, "server in" if server else "client in", 32)
    prefix = "quicv2 " if _is_v2(version) else "quic "
    return InitialKeys(
        key=_expand_label(secret, prefix + "key", 16),
        iv=_expand_label(secret, prefix + "iv", 12),
        hp=_expand_label(secret, prefix + "hp", 16),
    )


def _varint(data: bytes, pos: int) -> tuple[int, int] | None:
    if pos >= len(data):
        return None
    first = data[pos]
    size = 1 << (first >> 6)
    if pos + size > len(data):
        return None
    value = first & 0x3F
    for b in data[pos + 1 : pos + size]:
        value = (value << 8) | b
    return value, pos + size


@dataclass(frozen=True, slots=True)
class _LongHeader:
    first: int
    version: int
    dcid: bytes
    scid: bytes
    token_length: int
    pn_offset: int  # -1 when the packet has no length/PN (Retry)
    end: int  # end of this packet inside the datagram


def _long_header(data: bytes, pos: int) -> _LongHeader | None:
    n = len(data)
    if pos + 7 > n or data[pos] & 0xC0 != 0xC0:
        return None
    first = data[pos]
    version = int.from_bytes(data[pos + 1 : pos + 5], "big")
    if version == 0:
        return None  # version negotiation
    p = pos + 5
    dlen = data[p]
    if dlen > 20 or p + 1 + dlen > n:
        return None
    dcid = data[p + 1 : p + 1 + dlen]
    p += 1 + dlen
    if p >= n:
        return None
    slen = data[p]
    if slen > 20 or p + 1 + slen > n:
        return None
    scid = data[p + 1 : p + 1 + slen]
    p += 1 + slen
    ptype = (first >> 4) & 3
    if ptype == _retry_type_bits(version):
        return _LongHeader(first, version, dcid, scid, 0, -1, n)
    token_length = 0
    if ptype == _initial_type_bits(version):
        v = _varint(data, p)
        if v is None:
            return None
        token_length, p = v
        p += token_length
    v = _varint(data, p)
    if v is None:
        return None
    length, p = v
    if p + length > n or length < 20:
        return None
    return _LongHeader(first, version, dcid, scid, token_length, p, p + length)


def _decrypt(data: bytes, hdr: _LongHeader, keys: InitialKeys, start: int) -> tuple[int, bytes] | None:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    pn_off = hdr.pn_offset
    sample = data[pn_off + 4 : pn_off + 20]
    if len(sample) < 16:
        return None
    enc = Cipher(algorithms.AES(keys.hp), modes.ECB()).encryptor()
    mask = enc.update(sample) + enc.finalize()
    first = hdr.first ^ (mask[0] & 0x0F)
    pn_len = (first & 3) + 1
    if pn_off + pn_len > hdr.end:
        return None
    pn_bytes = bytes(b ^ m for b, m in zip(data[pn_off : pn_off + pn_len], mask[1 : 1 + pn_len], strict=True))
    pn = int.from_bytes(pn_bytes, "big")
    header = bytes([first]) + data[start + 1 : pn_off] + pn_bytes
    nonce = bytes(a ^ b for a, b in zip(keys.iv, pn.to_bytes(12, "big"), strict=True))
    try:
        plain = AESGCM(keys.key).decrypt(nonce, data[pn_off + pn_len : hdr.end], header)
    except MemoryError:
        raise  # out of memory is not bad input: never swallowed (issue 16)
    except Exception:  # wrong keys (not a client Initial of this DCID) or damaged packet
        return None
    return pn, plain


def _frames(payload: bytes) -> tuple[list[tuple[int, bytes]], list[int]]:
    """CRYPTO (offset, data) pairs and the frame types seen; stops at anything unparseable."""
    crypto: list[tuple[int, bytes]] = []
    types: list[int] = []
    pos = 0
    n = len(payload)
    while pos < n:
        ftype = payload[pos]
        if ftype == 0x00:  # PADDING runs are common: skip them in one go
            while pos < n and payload[pos] == 0:
                pos += 1
            if not types or types[-1] != 0:
                types.append(0)
            continue
        types.append(ftype)
        pos += 1
        if ftype == 0x01:
            continue
        if ftype in (0x02, 0x03):
            fields = 4
            v: tuple[int, int] | None = None
            values: list[int] = []
            for _ in range(fields):
                v = _varint(payload, pos)
                if v is None:
                    return crypto, types
                values.append(v[0])
                pos = v[1]
            extra = values[2] * 2 + (3 if ftype == 0x03 else 0)
            if extra > n:
                return crypto, types
            for _ in range(extra):
                v = _varint(payload, pos)
                if v is None:
                    return crypto, types
                pos = v[1]
            continue
        if ftype == 0x06:
            off = _varint(payload, pos)
            if off is None:
                return crypto, types
            ln = _varint(payload, off[1])
            if ln is None or ln[1] + ln[0] > n:
                return crypto, types
            crypto.append((off[0], payload[ln[1] : ln[1] + ln[0]]))
            pos = ln[1] + ln[0]
            continue
        if ftype in (0x1C, 0x1D):
            v = _varint(payload, pos)
            if v is None:
                return crypto, types
            pos = v[1]
            if ftype == 0x1C:
                v = _varint(payload, pos)
                if v is None:
                    return crypto, types
                pos = v[1]
            v = _varint(payload, pos)
            if v is None:
                return crypto, types
            pos = v[1] + v[0]
            continue
        return crypto, types  # not allowed in Initial packets: stop trusting the rest
    return crypto, types


def crypto_stream(frames: list[tuple[int, bytes]], limit: int = MAX_CRYPTO_BYTES) -> bytes:
    """Contiguous CRYPTO stream from offset 0 out of (offset, data) frames in any order."""
    out = bytearray()
    for off, data in sorted(frames, key=lambda f: f[0]):
        if off > len(out):
            break
        if off + len(data) > len(out):
            out += data[len(out) - off :]
        if len(out) >= limit:
            break
    return bytes(out[:limit])


def _handshake_complete(stream: bytes) -> bool:
    return len(stream) >= 4 and len(stream) >= 4 + int.from_bytes(stream[1:4], "big")


def parse_initial(datagram: bytes, dcid: bytes | None = None, server: bool = False) -> QuicInitial | None:
    """Decrypt the Initial packets of one UDP datagram (coalesced packets walked by Length).

    `dcid` is the client's original Destination Connection ID used for the keys; by default the
    DCID of the datagram's first packet (right for a client's first flight). `server=True` reads
    a server's Initial (keys from "server in"), which needs `dcid` from the client.
    """
    try:
        data = bytes(datagram)
        pos = 0
        first_hdr: _LongHeader | None = None
        pns: list[int] = []
        crypto: list[tuple[int, bytes]] = []
        types: list[int] = []
        while pos < len(data):
            hdr = _long_header(data, pos)
            if hdr is None:
                break  # short-header packet or padding after the last long packet
            if first_hdr is None:
                first_hdr = hdr
            if hdr.pn_offset >= 0 and (hdr.first >> 4) & 3 == _initial_type_bits(hdr.version):
                keys = initial_keys(hdr.version, dcid if dcid is not None else first_hdr.dcid, server)
                if keys is None:
                    return None
                got = _decrypt(data, hdr, keys, pos)
                if got is not None:
                    pn, plain = got
                    pns.append(pn)
                    c, t = _frames(plain)
                    crypto.extend(c)
                    types.extend(t)
            pos = hdr.end
        if first_hdr is None or not pns:
            return None
        stream = crypto_stream(crypto)
        hello = parse_client_hello_message(stream) if not server and _handshake_complete(stream) else None
        return QuicInitial(
            version=first_hdr.version,
            dcid=first_hdr.dcid,
            scid=first_hdr.scid,
            token_length=first_hdr.token_length,
            packet_numbers=tuple(pns),
            crypto=tuple(crypto),
            frame_types=tuple(types),
            client_hello=hello,
        )
    except MemoryError:
        raise  # out of memory is not bad input: never swallowed (issue 16)
    except Exception:
        return None


def client_hello_from_initials(datagrams: list[bytes]) -> ClientHello | None:
    """ClientHello reassembled from the CRYPTO frames of a client's Initial datagrams.

    The keys come from the DCID of the first datagram that holds an Initial packet; datagrams
    with another DCID belong to another connection attempt and are ignored.
    """
    try:
        key_dcid: bytes | None = None
        frames: list[tuple[int, bytes]] = []
        for dgram in datagrams:
            hdr = _long_header(bytes(dgram), 0)
            if hdr is None:
                continue
            if key_dcid is None:
                key_dcid = hdr.dcid
            elif hdr.dcid != key_dcid:
                continue
            got = parse_initial(dgram, key_dcid)
            if got is None:
                continue
            frames.extend(got.crypto)
            stream = crypto_stream(frames)
            if _handshake_complete(stream):
                return parse_client_hello_message(stream)
        return None
    except MemoryError:
        raise  # out of memory is not bad input: never swallowed (issue 16)
    except Exception:
        return None


# --- Registration: kinds, rules and facts (analyzer/dissect/registry.py) ---------------------


def known_version(version: int) -> bool:
    """QUIC v1, v2 or an IETF draft (0xff0000xx)."""
    return version in (V1, V2) or (version >> 8) == 0xFF0000


def _rule(b: Bytes, sport: np.ndarray, dport: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b0, plen = b.at(0), b.length
    # RFC 9000 17.2: long header (form + fixed bit), DCID length <= 20; on port 443 or a known version.
    version = b.u32(1)
    known = (version == V1) | (version == V2) | ((version >> 8) == 0xFF0000)
    on_port = port_in(sport, dport, (PORT,))
    long = (b0 >= 0xC0) & (plen >= 7) & (b.at(5) >= 0) & (b.at(5) <= 20) & (on_port | known)
    # RFC 9000 17.3: short header (form 0, fixed bit 1); too weak alone, so port 443 only.
    short = (b0 >= 0x40) & (b0 <= 0x7F) & (plen >= 21) & on_port
    return long, short


def _packet(ctx: FlowContext, p: bytes, d: int, ts_ns: int) -> bool:
    if p[0] >= 0xC0 and len(p) >= 7 and d == 0:
        ctx.state("quic", list).append(p)
        return True
    return False


def _finish(ctx: FlowContext) -> None:
    datagrams = ctx.scratch.get("quic")
    if not datagrams:
        return
    hello = client_hello_from_initials(datagrams[:8])
    version = int.from_bytes(datagrams[0][1:5], "big")
    if hello is None and not known_version(version):
        return
    f = ctx.facts
    f.proto("quic")
    f.first("quic_version", f"0x{version:08x}")
    if hello is not None:
        f.first("sni", host_name(hello.sni))
        if hello.alpn:
            f["alpn"] = list(hello.alpn[:MAX_LIST])


DISSECTOR = Dissector(
    name="quic",
    kinds=(Kind("quic_long", 15, label="quic"), Kind("quic_short", 16, label="quic")),
    rules=(Rule("quic", "udp", 120, ("quic_long", "quic_short"), _rule),),
    facts=(("quic_version", "str"),),
    labels=(("quic", 70),),
    udp_packet=(PacketHook(100, _packet),),
    udp_finish=(Hook(20, _finish),),
)
