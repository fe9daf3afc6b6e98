"""The project's own demo capture: a Citizen-Lab-like Zoom call (2020 client) from North America.

The client resolves Zoom names, talks TLS to the web front end and an MMR in the US, gets its
meeting key over TLS from a zone controller in China, runs Zoom's STUN variant and sends SFU
media over UDP 8801 whose payloads are AES-128-ECB encrypted (so repeated plaintext blocks,
such as silence, repeat in the ciphertext). Everything is deterministic: the same bytes every run.

Addresses are chosen to geolocate like the real ones: 109.244.194.121 is the Tencent address
Citizen Lab reported; 162.255.36.0/22 is Zoom's (AS30103); 170.114.0.0/16 is Zoom's web range.
"""

from __future__ import annotations

import datetime as dt
import random
import struct
from pathlib import Path

CLIENT_MAC, ROUTER_MAC = "3c:22:fb:10:20:30", "a0:04:60:aa:bb:cc"
CLIENT = "192.168.1.23"
RESOLVER = "192.168.1.1"
CLIENT_PUBLIC = "73.162.45.10"  # what Zoom's STUN server reports back (a US consumer ISP)
WEB = ("zoom.us", "170.114.52.2")
ZONE_CONTROLLER = ("zoombj41zc.zoom.us", "109.244.194.121")
MMR = ("zoomsjc62mmr.zoom.us", "162.255.38.14")
STUN_SERVER = "162.255.37.14"
START = 1586000000.0  # 2020-04-04, the week of Citizen Lab's report
RTT_S = {WEB[1]: 0.024, ZONE_CONTROLLER[1]: 0.196, MMR[1]: 0.021, STUN_SERVER: 0.020, RESOLVER: 0.002}
ECB_KEY = bytes(range(16))


def client_hello(sni: str, seed: int) -> bytes:
    """A TLS 1.2 ClientHello record carrying `sni` (built by hand so every byte is known)."""
    rnd = random.Random(seed)
    host = sni.encode()
    sni_ext = struct.pack("!HHHBH", 0, len(host) + 5, len(host) + 3, 0, len(host)) + host
    groups = struct.pack("!HHH", 10, 6, 4) + struct.pack("!HH", 0x001D, 0x0017)
    exts = sni_ext + groups + struct.pack("!HHB", 11, 2, 1) + b"\x00" + struct.pack("!HH", 0xFF01, 1) + b"\x00"
    ciphers = struct.pack("!HHHH", 6, 0xC02B, 0xC02F, 0x009C)
    body = b"\x03\x03" + bytes(rnd.getrandbits(8) for _ in range(32)) + b"\x00" + ciphers + b"\x01\x00"
    body += struct.pack("!H", len(exts)) + exts
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def server_flight(common_name: str, seed: int) -> bytes:
    """ServerHello + Certificate + ServerHelloDone (TLS 1.2), certificate visible in clear."""
    rnd = random.Random(seed)
    sh = b"\x03\x03" + bytes(rnd.getrandbits(8) for _ in range(32)) + b"\x00" + b"\xc0\x2f\x00"
    sh += struct.pack("!H", 5) + struct.pack("!HH", 0xFF01, 1) + b"\x00"
    der = _certificate(common_name, seed)
    certs = len(der).to_bytes(3, "big") + der
    cert_body = len(certs).to_bytes(3, "big") + certs
    msgs = b"\x02" + len(sh).to_bytes(3, "big") + sh
    msgs += b"\x0b" + len(cert_body).to_bytes(3, "big") + cert_body
    msgs += b"\x0e\x00\x00\x00"
    return b"\x16\x03\x03" + struct.pack("!H", len(msgs)) + msgs


def _certificate(common_name: str, seed: int) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.x509.oid import NameOID

    # Ed25519 signatures are deterministic, so the certificate bytes are the same every run.
    key = Ed25519PrivateKey.from_private_bytes(bytes([seed % 251 + 1]) * 32)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "confscope demo"),
        ]
    )
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "confscope demo CA")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(1000 + seed)
        .not_valid_before(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2021, 1, 1, tzinfo=dt.UTC))
    )
    if common_name.isascii() and common_name.isprintable():  # a SAN must be an A-label; tests pass hostile CNs
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
    cert = builder.sign(key, None)
    return cert.public_bytes(serialization.Encoding.DER)


def zoom_stun_request(txid: bytes) -> bytes:
    """Zoom's classic-STUN binding request (protocols.md 1.6): no magic cookie, attribute 0x0101."""
    attr = struct.pack("!HH", 0x0101, 20) + b"1234567890123456789\x00"
    return struct.pack("!HH", 0x0001, len(attr)) + txid + attr


def zoom_stun_response(txid: bytes, ip: str, port: int) -> bytes:
    import ipaddress

    attr = struct.pack("!HHBBH", 0x0103, 8, 0, 1, port) + ipaddress.IPv4Address(ip).packed
    return struct.pack("!HH", 0x0002, len(attr)) + txid + attr


def ecb_encrypt(plain: bytes) -> bytes:
    """AES-128-ECB as Zoom used it in 2020; a trailing partial block is left in clear."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    cut = len(plain) - len(plain) % 16
    enc = Cipher(algorithms.AES(ECB_KEY), modes.ECB()).encryptor()
    return enc.update(plain[:cut]) + enc.finalize() + plain[cut:]


def zoom_media(kind: str, seq: int, ts: int, ssrc: int, payload_plain: bytes) -> bytes:
    """Gen A SFU packet: 0x05, the Zoom media header, then RTP with an ECB-encrypted payload."""
    rtp_pt = 99 if kind == "audio" else 98
    rtp = struct.pack(
        "!BBHII", 0x90, rtp_pt | (0x80 if kind == "video" and seq % 8 == 7 else 0), seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc
    )
    rtp += struct.pack("!HH", 0xBEDE, 1) + b"\x10\x01\x00\x00"  # one-byte header extension, one element
    if kind == "audio":
        inner = bytes([0x0F, 0x01, 0x00, 0xFB]) + bytes(5) + struct.pack("!HI", seq & 0xFFFF, ts) + bytes(4)
    else:
        inner = bytes([0x10, 0x01, 0x00, 0xFB]) + bytes(5) + struct.pack("!HI", seq & 0xFFFF, ts) + bytes(5)
        inner += bytes([0x02]) + struct.pack("!HB", seq // 8, 8)
    return b"\x05" + inner + rtp + ecb_encrypt(payload_plain)


def _plain_audio(i: int, rnd: random.Random) -> bytes:
    # A muted participant: comfort-noise frames repeat, which ECB turns into repeated blocks.
    if i % 5:
        return b"\xf8\xff\xfe" * 21 + b"\x00"
    return bytes(rnd.getrandbits(8) for _ in range(64))


def _plain_video(i: int, rnd: random.Random) -> bytes:
    # A static screen: large runs of identical macroblocks.
    body = bytearray(b"\x00\x00\x01\x65" + bytes(44) + b"\x11" * 16 * 40)
    body[4:8] = struct.pack("!I", i)
    if i % 10 == 0:
        body += bytes(rnd.getrandbits(8) for _ in range(200))
    return bytes(body)


class _Timeline:
    """Collects (time, scapy packet) pairs and TCP state for hand-built conversations."""

    def __init__(self) -> None:
        self.packets: list[tuple[float, object]] = []
        self.rnd = random.Random(2020)

    def add(self, t: float, pkt) -> None:
        self.packets.append((t, pkt))

    def udp(self, t: float, src: str, sport: int, dst: str, dport: int, payload: bytes) -> None:
        from scapy.layers.inet import IP, UDP
        from scapy.layers.l2 import Ether
        from scapy.packet import Raw

        up = src == CLIENT
        eth = Ether(src=CLIENT_MAC, dst=ROUTER_MAC) if up else Ether(src=ROUTER_MAC, dst=CLIENT_MAC)
        self.add(
            t,
            eth
            / IP(src=src, dst=dst, id=self.rnd.getrandbits(16), ttl=64 if up else 52)
            / UDP(sport=sport, dport=dport)
            / Raw(payload),
        )

    def dns(self, t: float, name: str, ip: str, sport: int, qid: int) -> None:
        from scapy.layers.dns import DNS, DNSQR, DNSRR
        from scapy.layers.inet import IP, UDP
        from scapy.layers.l2 import Ether

        q = DNS(id=qid, rd=1, qd=DNSQR(qname=name))
        a = DNS(id=qid, qr=1, rd=1, ra=1, qd=DNSQR(qname=name), an=DNSRR(rrname=name, ttl=60, rdata=ip))
        self.add(
            t, Ether(src=CLIENT_MAC, dst=ROUTER_MAC) / IP(src=CLIENT, dst=RESOLVER) / UDP(sport=sport, dport=53) / q
        )
        self.add(
            t + RTT_S[RESOLVER],
            Ether(src=ROUTER_MAC, dst=CLIENT_MAC) / IP(src=RESOLVER, dst=CLIENT) / UDP(sport=53, dport=sport) / a,
        )

    def tls_session(
        self, t: float, server: str, sport: int, sni: str, seed: int, app_bytes: list[tuple[int, int]]
    ) -> float:
        """Handshake, TLS hello exchange, a few application records, FIN. Returns the end time."""
        from scapy.layers.inet import IP, TCP
        from scapy.layers.l2 import Ether
        from scapy.packet import Raw

        rtt = RTT_S[server]
        cseq, sseq = 1000 + seed * 7919, 5000 + seed * 104729
        up_eth, down_eth = Ether(src=CLIENT_MAC, dst=ROUTER_MAC), Ether(src=ROUTER_MAC, dst=CLIENT_MAC)

        def c2s(at: float, flags: str, data: bytes = b"") -> None:
            nonlocal cseq
            p = up_eth / IP(src=CLIENT, dst=server) / TCP(sport=sport, dport=443, flags=flags, seq=cseq, ack=sseq)
            self.add(at, p / Raw(data) if data else p)
            cseq += len(data) + (1 if "S" in flags or "F" in flags else 0)

        def s2c(at: float, flags: str, data: bytes = b"") -> None:
            nonlocal sseq
            p = down_eth / IP(src=server, dst=CLIENT) / TCP(sport=443, dport=sport, flags=flags, seq=sseq, ack=cseq)
            self.add(at, p / Raw(data) if data else p)
            sseq += len(data) + (1 if "S" in flags or "F" in flags else 0)

        c2s(t, "S")
        s2c(t + rtt, "SA")
        c2s(t + rtt + 0.0002, "A")
        c2s(t + rtt + 0.0005, "PA", client_hello(sni, seed))
        flight = server_flight(sni, seed)
        now = t + 2 * rtt + 0.001
        for off in range(0, len(flight), 1400):
            s2c(now, "PA", flight[off : off + 1400])
            now += 0.0003
        rnd = random.Random(seed)
        for up, down in app_bytes:
            now += 0.05 + rnd.random() * 0.2
            c2s(now, "PA", b"\x17\x03\x03" + struct.pack("!H", up) + bytes(rnd.getrandbits(8) for _ in range(up)))
            now += rtt
            s2c(now, "PA", b"\x17\x03\x03" + struct.pack("!H", down) + bytes(rnd.getrandbits(8) for _ in range(down)))
        now += 0.5
        c2s(now, "FA")
        s2c(now + rtt, "FA")
        c2s(now + rtt + 0.0002, "A")
        return now + rtt


def build_demo_packets() -> list:
    """All packets of the demo call, in time order."""
    tl = _Timeline()
    t = START
    for i, (name, ip) in enumerate((WEB, ZONE_CONTROLLER, MMR)):
        tl.dns(t + 0.01 * i, name, ip, 53000 + i, 0x1000 + i)
    tl.tls_session(t + 0.1, WEB[1], 50110, WEB[0], 1, [(420, 1800), (300, 900)])
    # The meeting key arrives over the zone controller's TLS channel (Citizen Lab's observation).
    tl.tls_session(t + 1.0, ZONE_CONTROLLER[1], 50111, ZONE_CONTROLLER[0], 2, [(512, 640), (256, 1024), (300, 300)])
    tl.tls_session(t + 2.0, MMR[1], 50112, MMR[0], 3, [(600, 400), (200, 200)])
    txid = bytes(range(1, 17))
    tl.udp(t + 2.5, CLIENT, 50200, STUN_SERVER, 3478, zoom_stun_request(txid))
    tl.udp(
        t + 2.5 + RTT_S[STUN_SERVER], STUN_SERVER, 3478, CLIENT, 50200, zoom_stun_response(txid, CLIENT_PUBLIC, 50200)
    )
    rnd = random.Random(7)
    media_start = t + 3.0
    for i in range(240):  # 12 s of audio at 20 ms, both directions
        at = media_start + i * 0.02
        tl.udp(at, CLIENT, 50300, MMR[1], 8801, zoom_media("audio", i, i * 960, 0x01000802, _plain_audio(i, rnd)))
        tl.udp(
            at + 0.011,
            MMR[1],
            8801,
            CLIENT,
            50300,
            zoom_media("audio", i, i * 960, 0x01000402, _plain_audio(i + 3, rnd)),
        )
    for i in range(120):  # 12 s of screen-share video at ~10 packets/s
        at = media_start + 0.005 + i * 0.1
        tl.udp(
            at, CLIENT, 50300, MMR[1], 8801, zoom_media("video", i, (i // 8) * 9000, 0x01000801, _plain_video(i, rnd))
        )
    return [pkt for _t, pkt in _stamped(tl.packets)]


def _stamped(packets: list[tuple[float, object]]) -> list[tuple[float, object]]:
    out = sorted(packets, key=lambda tp: tp[0])
    for ts, pkt in out:
        pkt.time = round(ts, 6)
    return out


def write_demo_capture(path: str | Path) -> Path:
    """Write the demo capture (classic pcap, Ethernet, microseconds) and return its path."""
    from scapy.utils import wrpcap

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrpcap(str(path), build_demo_packets(), linktype=1)
    return path


def demo_variant(base: bytes, *, days: float = 0.0, ip_map: dict[str, str] | None = None) -> bytes:
    """Another call like the demo, from the demo capture's bytes: every packet `days` later and
    the servers in `ip_map` (old -> new IPv4) moved. For corpora of many calls (tests, the
    campaign benchmark) without building packets again; IP checksums are not updated (the
    scanner does not check them).
    """
    import ipaddress

    if len(base) < 24 or base[:4] != b"\xd4\xc3\xb2\xa1":
        raise ValueError("demo_variant takes the demo's little-endian classic pcap")
    out = bytearray(base)
    for old, new in (ip_map or {}).items():
        a, b = ipaddress.IPv4Address(old).packed, ipaddress.IPv4Address(new).packed
        out = bytearray(out.replace(a, b))
    shift = round(days * 86400)
    off = 24
    while off + 16 <= len(out):
        sec, _usec, incl, _orig = struct.unpack_from("<IIII", out, off)
        struct.pack_into("<I", out, off, (sec + shift) & 0xFFFFFFFF)
        off += 16 + incl
    return bytes(out)


if __name__ == "__main__":  # pragma: no cover - `python -m analyzer.capture.demo OUT.pcap`
    import sys

    print(write_demo_capture(sys.argv[1] if len(sys.argv) > 1 else "captures/demo-zoom-call.pcap"))
