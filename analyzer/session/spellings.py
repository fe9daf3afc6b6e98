"""The other ways host names spell an address: `ip-10-1-2-3`, `93-184-216-34.example`,
`0a010203`, `host.10.1.2.3.nip.io`, `010.001.002.003`, `2001-db8--1.ipv6-literal.net`.

Anonymisation (session/anonymize.py) must find the user's addresses in these forms too and
write the pseudonym back in the same form. Only addresses known to be the user's are searched
for, so ordinary numbers in names are left alone.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable

_SEP = r"[.\-_]"


def _v4_pattern(addr: ipaddress.IPv4Address) -> str:
    # each octet with optional leading zeros, any of . - _ between them
    return _SEP.join(f"0*{o}" for o in addr.packed)


def _v6_spellings(addr: ipaddress.IPv6Address) -> list[str]:
    full = addr.exploded.split(":")
    return sorted(
        {
            addr.compressed.replace(":", "-"),
            "-".join(full),
            "-".join(g.lstrip("0") or "0" for g in full),
        },
        key=len,
        reverse=True,
    )


class SpelledAddresses:
    """Finds the given addresses spelled with dashes, underscores, leading zeros, as 8 hex digits
    or (IPv6) with dashes, and replaces each by `mapped(canonical)` spelled the same way."""

    def __init__(self, addresses: Iterable[str]):
        v4, v6 = [], []
        for text in addresses:
            try:
                addr = ipaddress.ip_address(text)
            except ValueError:
                continue
            (v4 if addr.version == 4 else v6).append(addr)
        parts = []
        if v4:
            dotted = "|".join(_v4_pattern(a) for a in v4)
            # not inside a longer number or dotted quad: no digit (or digit+separator) around it
            parts.append(rf"(?P<v4>(?<![0-9])(?<![0-9][.\-_])(?:{dotted})(?![0-9])(?![.\-_][0-9]))")
            hexes = "|".join(a.packed.hex() for a in v4)
            parts.append(rf"(?P<hex>(?<![0-9A-Fa-f])(?i:{hexes})(?![0-9A-Fa-f]))")
        if v6:
            spelled = "|".join(re.escape(s) for a in v6 for s in _v6_spellings(a))
            parts.append(rf"(?P<v6>(?<![0-9A-Fa-f-])(?i:{spelled})(?![0-9A-Fa-f]|-[0-9A-Fa-f]))")
        self._re = re.compile("|".join(parts)) if parts else None

    def sub(self, text: str, mapped: Callable[[str], str]) -> str:
        if self._re is None or not any(ch.isdigit() for ch in text):
            return text
        return self._re.sub(lambda m: _respell(m, mapped), text)


def _respell(m: re.Match[str], mapped: Callable[[str], str]) -> str:
    found = m.group(0)
    if m.lastgroup == "v4":
        octets = re.split(_SEP, found)
        seps = re.findall(_SEP, found)
        canon = ".".join(str(int(o)) for o in octets)
        new = mapped(canon).split(".")
        if len(new) != 4:
            return found
        return new[0] + "".join(s + o for s, o in zip(seps, new[1:], strict=True))
    if m.lastgroup == "hex":
        canon = str(ipaddress.IPv4Address(bytes.fromhex(found)))
        out = ipaddress.IPv4Address(mapped(canon)).packed.hex()
        return out.upper() if found.isupper() else out
    # IPv6 with dashes: same spelling (compressed, exploded, or groups without leading zeros)
    text = found.replace("--", "::") if "--" in found else found
    canon = str(ipaddress.IPv6Address(text.replace("-", ":")))
    new = ipaddress.IPv6Address(mapped(canon))
    if "--" in found:
        out = new.compressed
    elif len(found) == 39:
        out = new.exploded
    else:
        out = ":".join(g.lstrip("0") or "0" for g in new.exploded.split(":"))
    out = out.replace(":", "-")
    return out.upper() if found.isupper() else out
