"""`--anonymize KEY`: keyed pseudonymisation of the capturing side in every output.

IP addresses are mapped with the prefix-preserving construction of Crypto-PAn (Xu, Fan, Ammar,
Moon 2002), implemented here from its description: bit i of the output is bit i of the input XOR
the first bit of AES_K(first i input bits, completed by a secret pad). Two addresses that share
exactly a k-bit prefix therefore map to addresses that share exactly a k-bit prefix, so subnets
stay subnets, while the mapping cannot be inverted without the key. IPv4 uses 32 bit positions,
IPv6 128, with the same key and pad.

Applied to a finished Session (after geolocation, so countries, ASNs and the vantage stay right):
every address except the public remote endpoints (the servers and peers whose location is the
point of the report) is pseudonymised, wherever it appears: flow columns, STUN mapped/relayed/peer
addresses, SDP connection addresses, vantage lists and free text such as finding details. With
`anonymize_servers=True` the remote endpoints are pseudonymised too. STUN USERNAMEs and MAC
addresses get a keyed HMAC pseudonym; `flow_key` (an unkeyed hash of the 5-tuple, invertible by
brute force over the IPv4 space) is re-keyed; `community_id` is recomputed from the pseudonymised
5-tuple for TCP/UDP/SCTP and dropped (None) for other transports, whose ICMP type/code is not kept.
SDES `inline:` and MIKEY values are redacted wherever they appear, and the result is checked.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from analyzer.common.files import KEY_MAX_BYTES, FileTooLarge, first_line_bounded
from analyzer.session.spellings import SpelledAddresses

METHOD = "crypto-pan (AES-128, prefix-preserving) / HMAC-SHA256; key from PBKDF2-SHA256"
# Stretching makes guessing a weak passphrase from a published report expensive; 200k rounds
# cost ~0.1 s once per key (cached), which is nothing next to reading a capture.
KDF_ITERATIONS = 200_000
KDF_SALT = b"confscope/anonymize/v1"
REDACTED = "REDACTED"

# One pass over known | MAC | IPv6 | IPv4 candidates, so a replaced span is never matched again
# (the IPv4 tail of a mapped "::ffff:a.b.c.d" must not be mapped twice); ipaddress decides what
# is real. An IPv6 candidate may follow "word:" ("public-ip:2001:db8::1") if that word does not
# end in a hex digit, which would make the colon part of the address.
_GENERIC_ADDR = (
    r"(?P<mac>(?<![\w:-])[0-9A-Fa-f]{2}(?P<sep>[:-])(?:[0-9A-Fa-f]{2}(?P=sep)){4}[0-9A-Fa-f]{2}(?![\w:-]))"
    r"|(?P<v6>(?:(?<![\w:.])|(?<=[G-Zg-z_]:))[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}"
    r"(?::\d{1,3}(?:\.\d{1,3}){3})?(?!\w|:\w|\.\w))"
    r"|(?P<v4>(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d))"
)
_ADDR_RE = re.compile(_GENERIC_ADDR)
# SDES key-params (RFC 4568 "inline:<key>") and MIKEY payloads (RFC 4567 "mikey <base64>").
_KEY_MATERIAL_RE = re.compile(r"(?i)(inline:|key-mgmt:\s*mikey\s+)(?!REDACTED)[^\s|;\"',\]]+")
_PORTED_TRANSPORTS = {"tcp": 6, "udp": 17, "sctp": 132}


@dataclass(frozen=True)
class AnonKeys:
    """Sub-keys derived from the user's passphrase; never written anywhere."""

    aes: bytes  # 16 bytes: the Crypto-PAn block cipher key
    pad: bytes  # 16 bytes: fills the block after the i-bit prefix
    mac: bytes  # 32 bytes: HMAC key for usernames, MAC addresses, flow keys


@lru_cache(maxsize=8)
def derive_keys(passphrase: str | bytes) -> AnonKeys:
    """Any passphrase -> independent sub-keys (PBKDF2-SHA256, then HMAC labels)."""
    secret = passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)
    if not secret:
        raise ValueError("anonymisation key must not be empty")
    master = hashlib.pbkdf2_hmac("sha256", secret, KDF_SALT, KDF_ITERATIONS, dklen=32)

    def sub(label: bytes, n: int) -> bytes:
        return hmac.new(master, label, hashlib.sha256).digest()[:n]

    return AnonKeys(aes=sub(b"aes", 16), pad=sub(b"pad", 16), mac=sub(b"hmac", 32))


def key_fingerprint(passphrase: str | bytes) -> str:
    """A fingerprint of the key that tells two keys apart without revealing either: an HMAC label
    under the PBKDF2-stretched master (so guessing a passphrase from it costs KDF_ITERATIONS per
    guess, unlike a plain SHA-256). For manifests that must notice a changed key."""
    secret = passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)
    master = hashlib.pbkdf2_hmac("sha256", secret, KDF_SALT + b"/fingerprint", KDF_ITERATIONS, dklen=32)
    return hmac.new(master, b"confscope options fingerprint", hashlib.sha256).hexdigest()[:32]


def resolve_key(spec: str) -> str:
    """The passphrase named by a CLI value: `env:NAME` reads an environment variable, `file:PATH`
    the first line of a file (keeps the key out of `ps` and shell history), anything else is the
    passphrase itself. Raises ValueError when the source is missing or empty."""
    if spec.startswith("env:"):
        value = os.environ.get(spec[4:], "")
    elif spec.startswith("file:"):
        try:
            value = first_line_bounded(spec[5:], KEY_MAX_BYTES, "--anonymize key file")
        except FileTooLarge as exc:
            raise ValueError(str(exc)) from None
        except UnicodeDecodeError:
            raise ValueError("--anonymize: key file is not UTF-8 text") from None
        except OSError as exc:
            raise ValueError(f"cannot read key file ({exc.strerror})") from None
    else:
        value = spec
    if not value:
        raise ValueError("the key is empty")
    return value


class PrefixPreservingAnonymizer:
    """Crypto-PAn style address mapping; deterministic for one key, results cached."""

    def __init__(self, key: str | bytes | AnonKeys) -> None:
        self.keys = key if isinstance(key, AnonKeys) else derive_keys(key)
        self._pad = int.from_bytes(self.keys.pad, "big")
        self._cache: dict[str, str] = {}

    def _flip_bits(self, value: int, width: int) -> int:
        """The `width` one-time-pad bits for `value`: bit i from AES over the first i bits."""
        blocks = bytearray()
        for i in range(width):
            prefix = (value >> (width - i)) << (128 - i) if i else 0
            rest = self._pad & ((1 << (128 - i)) - 1)
            blocks += (prefix | rest).to_bytes(16, "big")
        # ECB over independent blocks: one cipher call per address instead of one per bit.
        enc = Cipher(algorithms.AES(self.keys.aes), modes.ECB()).encryptor()
        out = enc.update(bytes(blocks)) + enc.finalize()
        flips = 0
        for i in range(width):
            flips = (flips << 1) | (out[16 * i] >> 7)
        return flips

    def map_int(self, value: int, width: int) -> int:
        """Pseudonymise one `width`-bit (32 or 128) address given as an integer."""
        if width not in (32, 128) or not 0 <= value < (1 << width):
            raise ValueError("address out of range")
        return value ^ self._flip_bits(value, width)

    def anonymize_ip(self, ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
        """The pseudonym of one address as text (IPv4-mapped IPv6 maps its IPv4 part)."""
        key = str(ip)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            v4 = self.map_int(int(addr.ipv4_mapped), 32)
            result = f"::ffff:{ipaddress.IPv4Address(v4)}"
        elif isinstance(addr, ipaddress.IPv4Address):
            result = str(ipaddress.IPv4Address(self.map_int(int(addr), 32)))
        else:
            result = str(ipaddress.IPv6Address(self.map_int(int(addr), 128)))
        self._cache[key] = result
        return result

    def token(self, kind: str, value: str, nbytes: int = 6) -> bytes:
        return hmac.new(self.keys.mac, kind.encode() + b"\x00" + value.encode("utf-8", "replace"), "sha256").digest()[
            :nbytes
        ]

    def anonymize_username(self, username: str) -> str:
        """A STUN USERNAME ("ufragA:ufragB") with each part replaced by a short keyed pseudonym;
        the colon structure stays so that the two directions of one ICE pair still match."""
        return ":".join("u" + self.token("user", part).hex()[:10] if part else part for part in username.split(":"))

    def anonymize_mac(self, mac: str, sep: str = ":") -> str:
        """A keyed pseudonym MAC, marked locally administered and unicast (first octet xxxxxx10)."""
        raw = bytearray(self.token("mac", mac.lower().replace("-", ":")))
        raw[0] = (raw[0] & 0xFC) | 0x02
        return sep.join(f"{b:02x}" for b in raw)

    def anonymize_flow_key(self, key: int) -> int:
        return int.from_bytes(self.token("flow_key", str(int(key)), 8), "big")


def _canonical(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _is_well_known(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Addresses that identify nobody (multicast groups, loopback, broadcast): kept, so that a
    reader still sees mDNS or SSDP for what it is."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return (
        addr.is_multicast
        or addr.is_loopback
        or addr.is_unspecified
        or (isinstance(addr, ipaddress.IPv4Address) and int(addr) == 0xFFFFFFFF)
    )


class _Scrubber:
    """Applies one consistent mapping to every string of a report or table."""

    def __init__(
        self, anon: PrefixPreservingAnonymizer, keep: set[str], passphrase: str | None, known: Iterable[str] = ()
    ) -> None:
        self.anon = anon
        self.keep = keep
        self.passphrase = passphrase if passphrase and len(passphrase) >= 4 else None
        self.user_parts: dict[str, str] = {}
        self._user_re: re.Pattern[str] | None = None
        # Addresses known to be the user's are also matched literally, with looser boundaries than
        # the generic patterns, so odd embeddings ("ip:2001:db8::1:443") cannot hide them.
        lits = sorted({k for k in known if k not in keep}, key=len, reverse=True)
        known_alt = (
            "(?P<known>(?<![0-9A-Za-z.])(?:" + "|".join(re.escape(k) for k in lits) + r")(?![0-9A-Za-z]|\.\d))|"
            if lits
            else ""
        )
        self._addr_re = re.compile(known_alt + _GENERIC_ADDR) if lits else _ADDR_RE
        # The same addresses spelled as host names do: ip-10-1-2-3, 0a010203, 2001-db8--1 ...
        self._spelled = SpelledAddresses(lits)

    def learn_usernames(self, names: Iterable[str]) -> None:
        for name in names:
            for part in name.split(":"):
                # Short parts (Zoom's classic STUN uses tiny ones) would match inside ordinary text.
                if len(part) >= 4:
                    self.user_parts[part] = self.anon.anonymize_username(part)
        if self.user_parts:
            alts = sorted(self.user_parts, key=len, reverse=True)
            self._user_re = re.compile("|".join(re.escape(p) for p in alts))

    def ip(self, text: str) -> str:
        canon = _canonical(text)
        if canon is None or canon in self.keep:
            return text
        if _is_well_known(ipaddress.ip_address(canon)):
            return text
        return self.anon.anonymize_ip(canon)

    def _addr_match(self, m: re.Match[str]) -> str:
        if m.lastgroup == "known":
            return self.ip(m.group("known"))
        if m.group("mac"):
            return self.anon.anonymize_mac(m.group("mac"), m.group("sep"))
        return self.ip(m.group(0))

    def text(self, s: str) -> str:
        if self.passphrase and self.passphrase in s:
            s = s.replace(self.passphrase, REDACTED)
        if ":" in s or "." in s:
            whole = self.ip(s)
            if whole is not s:
                return whole
            s = _KEY_MATERIAL_RE.sub(lambda m: m.group(1) + REDACTED, s)
            s = self._addr_re.sub(self._addr_match, s)
        # After the generic pass, so an address it already replaced is not mapped twice.
        s = self._spelled.sub(s, self.ip)
        if self._user_re is not None:
            s = self._user_re.sub(lambda m: self.user_parts[m.group(0)], s)
        return s

    def value(self, v: Any) -> Any:
        if isinstance(v, str):
            return self.text(v)
        if isinstance(v, dict):
            return {self.value(k): self.value(x) for k, x in v.items()}
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if isinstance(v, tuple):
            return tuple(self.value(x) for x in v)
        if isinstance(v, set | frozenset):
            return type(v)(self.value(x) for x in v)
        if isinstance(v, np.ndarray) and v.dtype == object:
            out = np.empty(len(v), dtype=object)
            out[:] = [self.value(x) for x in v]
            return out
        return v


def _usernames(flows: pd.DataFrame) -> list[str]:
    if "stun_usernames" not in flows:
        return []
    out: list[str] = []
    for v in flows["stun_usernames"]:
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, list | tuple | np.ndarray):
            out.extend(str(x) for x in v if isinstance(x, str))
    return out


def _endpoints(flows: pd.DataFrame) -> tuple[set[str], set[str]]:
    """(local, public remote) address sets: the non-remote side of every flow is local."""
    local: set[str] = set()
    remote: set[str] = set()
    if flows.empty or "client_ip" not in flows:
        return local, remote
    remote_ip = flows["remote_ip"] if "remote_ip" in flows else flows["server_ip"]
    scope = flows["remote_scope"] if "remote_scope" in flows else pd.Series("public", index=flows.index)
    for c, s, r, sc in zip(flows["client_ip"], flows["server_ip"], remote_ip, scope, strict=True):
        c, s, r = _canonical(str(c)), _canonical(str(s)), _canonical(str(r))
        other = c if r == s else s
        if other:
            local.add(other)
        if r and sc == "public":
            remote.add(r)
    return local, remote


def _reflexive(flows: pd.DataFrame) -> set[str]:
    """The capturing side's public addresses as other parties saw them (STUN, Discord discovery)."""
    out: set[str] = set()
    for col in ("stun_mapped", "stun_mapped_c2s", "discord_ip_discovery"):
        if col not in flows:
            continue
        for v in flows[col]:
            items = v if isinstance(v, list | tuple | np.ndarray) and not _is_pair(v) else [v]
            for item in items:
                ip = item[0] if _is_pair(item) else (item.rsplit(":", 1)[0] if isinstance(item, str) else None)
                canon = _canonical(str(ip)) if ip is not None else None
                if canon:
                    out.add(canon)
    return out


def _is_pair(v: Any) -> bool:
    return isinstance(v, tuple | list) and len(v) == 2 and isinstance(v[0], str) and not isinstance(v[1], str)


def _keep_set(flows: pd.DataFrame, report: dict[str, Any], anonymize_servers: bool) -> set[str]:
    """Public remote endpoints, kept as they are. An address that is ever the capturing side is
    private to the user, even if it is also the remote end of some flow (a LAN peer)."""
    if anonymize_servers:
        return set()
    _local, remote = _endpoints(flows)
    return remote - _known_private(flows, report)


def _known_private(flows: pd.DataFrame, report: dict[str, Any]) -> set[str]:
    """Every address known to be the capturing side's, in canonical text (well-known ones left out)."""
    local, _remote = _endpoints(flows)
    local |= _reflexive(flows)
    vantage = report.get("vantage") or {}
    for key in ("local_ips", "public_ips"):
        local |= {c for c in (_canonical(str(ip)) for ip in vantage.get(key) or []) if c}
    return {ip for ip in local if not _is_well_known(ipaddress.ip_address(ip))}


def _map_frame(df: pd.DataFrame, scrub: _Scrubber) -> pd.DataFrame:
    out = df.copy()
    for col in out.columns:
        series = out[col]
        if col == "stun_usernames":
            series = pd.Series([_map_usernames(v, scrub.anon) for v in series], index=out.index, dtype=object)
        if series.dtype == object or isinstance(series.dtype, pd.StringDtype):
            mapped = [scrub.value(v) for v in series]
            out[col] = pd.Series(mapped, index=out.index, dtype=series.dtype if col != "stun_usernames" else object)
    if "flow_key" in out:
        out["flow_key"] = np.array([scrub.anon.anonymize_flow_key(int(k)) for k in out["flow_key"]], dtype=np.uint64)
    return out


def _map_usernames(v: Any, anon: PrefixPreservingAnonymizer) -> Any:
    if isinstance(v, str):
        return anon.anonymize_username(v)
    if isinstance(v, list | tuple | np.ndarray):
        return [anon.anonymize_username(x) if isinstance(x, str) else x for x in v]
    return v


def _community_ids(flows: pd.DataFrame) -> list[str | None]:
    from analyzer.scan.flows import community_id

    out: list[str | None] = []
    for t, c, cp, s, sp in zip(
        flows["transport"],
        flows["client_ip"],
        flows["client_port"],
        flows["server_ip"],
        flows["server_port"],
        strict=True,
    ):
        proto = _PORTED_TRANSPORTS.get(str(t))
        try:
            out.append(community_id(str(c), str(s), proto, int(cp), int(sp)) if proto else None)
        except ValueError:
            out.append(None)
    return out


def find_key_material(obj: Any, path: str = "") -> list[str]:
    """Paths of strings in a report/table that still hold an SDES `inline:` or MIKEY value."""
    if isinstance(obj, pd.DataFrame):
        hits: list[str] = []
        for col in obj.columns:
            if obj[col].dtype == object or isinstance(obj[col].dtype, pd.StringDtype):
                for i, v in enumerate(obj[col]):
                    hits += find_key_material(v, f"{path}{col}[{i}]")
        return hits
    if isinstance(obj, str):
        return [path or "(value)"] if _KEY_MATERIAL_RE.search(obj) else []
    if isinstance(obj, dict):
        return [h for k, v in obj.items() for h in find_key_material(v, f"{path}.{k}")]
    if isinstance(obj, list | tuple | set | frozenset | np.ndarray):
        return [h for i, v in enumerate(obj) for h in find_key_material(v, f"{path}[{i}]")]
    return []


def anonymize_session(session: Any, key: str | bytes, *, anonymize_servers: bool = False) -> Any:
    """A new Session whose report, flows and streams carry pseudonyms instead of the capturing
    side's addresses, STUN usernames and MAC addresses (see the module docstring for the scope).
    The input session is not modified. Raises ValueError for an empty key."""

    passphrase = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    anon = PrefixPreservingAnonymizer(key)
    keep = _keep_set(session.flows, session.report, anonymize_servers)
    scrub = _Scrubber(anon, keep, passphrase, known=_known_private(session.flows, session.report))
    scrub.learn_usernames(_usernames(session.flows))

    flows = _map_frame(session.flows, scrub)
    streams = _map_frame(session.streams, scrub) if isinstance(session.streams, pd.DataFrame) else session.streams
    if {"transport", "client_ip", "server_ip", "client_port", "server_port"} <= set(flows.columns):
        flows["community_id"] = pd.Series(_community_ids(flows), index=flows.index, dtype=object)
    report = scrub.value(session.report)
    _sync_flow_records(report, flows)
    _strip_directories(report)
    report["privacy"] = {
        "anonymized": True,
        "method": METHOD,
        "scope": [
            "local and client IP addresses (prefix-preserving)",
            "STUN mapped, relayed, peer and SDP addresses unless a public remote endpoint",
            "addresses inside free text (finding details, vantage source)",
            "the user's addresses spelled inside host names (dashed, hex, leading zeros, IPv6 dashed)",
            "directories of the capture and database paths (file names kept)",
            "STUN USERNAMEs (keyed HMAC)",
            "MAC addresses (keyed HMAC)",
            "flow_key (keyed HMAC)",
            "community_id (recomputed from pseudonymised TCP/UDP/SCTP 5-tuples, else dropped)",
            "SDES inline keys and MIKEY payloads (redacted)",
        ],
        "servers": "pseudonymised" if anonymize_servers else "kept (public remote endpoints)",
    }
    leaks = find_key_material(report) + find_key_material(flows) + find_key_material(streams)
    if leaks:
        # Unreachable while the redaction above works; refuse rather than write key material.
        raise RuntimeError(f"key material survived anonymisation at {leaks[:3]}")
    # The same class as the input (the API's Session renders itself; the session stage's does not).
    # The time series holds no addresses (stream ids, SSRCs, counts), so it is passed as is.
    return type(session)(report=report, flows=flows, streams=streams,
                         stream_seconds=session.stream_seconds)


def _strip_directories(report: dict[str, Any]) -> None:
    """File names only: a path such as /home/alice/geo/x.mmdb names the user (issue 16)."""
    for db in (report.get("geo") or {}).get("databases") or []:
        if isinstance(db, dict) and isinstance(db.get("path"), str):
            db["path"] = os.path.basename(db["path"])
    capture = report.get("capture") or {}
    if isinstance(capture.get("path"), str):
        capture["path"] = os.path.basename(capture["path"])


def _sync_flow_records(report: dict[str, Any], flows: pd.DataFrame) -> None:
    records = report.get("flows")
    if not isinstance(records, list) or "flow_id" not in flows or "community_id" not in flows:
        return
    by_id = dict(zip(flows["flow_id"].tolist(), flows["community_id"].tolist(), strict=True))
    for rec in records:
        if isinstance(rec, dict) and "community_id" in rec:
            rec["community_id"] = by_id.get(rec.get("flow_id"))
