"""The tshark engine: one `tshark -T fields` run, then pandas group-bys (analyzer.engines.table).

tshark is told not to reassemble anything (IP fragments, TCP streams), so each frame is one
row, as in the native engine. Repeated fields (one value per protocol layer) are matched to the
layers listed in `frame.protocols`; the innermost IP header is the last one reached through the
tunnels confscope follows (IP-in-IP, GRE, GTP-U, VXLAN), never one quoted inside ICMP.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pandas as pd

from analyzer.engines.table import PACKET_COLUMNS, packets_to_flows
from analyzer.errors import CaptureFormatError, EngineUnavailable

FIELDS = (
    "frame.number", "frame.time_epoch", "frame.len", "frame.protocols",
    "ip.src", "ip.dst", "ip.proto", "ip.id", "ip.frag_offset", "ip.flags.mf",
    "ipv6.src", "ipv6.dst", "ipv6.nxt", "ipv6.fraghdr.offset", "ipv6.fraghdr.more", "ipv6.fraghdr.ident",
    "tcp.srcport", "tcp.dstport", "tcp.flags", "udp.srcport", "udp.dstport",
    "sctp.srcport", "sctp.dstport", "udplite.srcport", "udplite.dstport",
    "icmp.type", "icmp.code", "icmpv6.type", "icmpv6.code",
)
# No reassembly: the flow table counts frames, not reassembled PDUs.
PREFERENCES = (
    "ip.defragment:FALSE",
    "ipv6.defragment:FALSE",
    "tcp.desegment_tcp_streams:FALSE",
    "tcp.analyze_sequence_numbers:FALSE",
    "tcp.reassemble_out_of_order:FALSE",
)
LAYER_PROTO = {"tcp": 6, "udp": 17, "sctp": 132, "udplite": 136, "icmp": 1, "icmpv6": 58, "gre": 47}
# Layers that may sit between an IP header and a tunnelled inner IP header.
TUNNEL_LAYERS = {"gre", "gtp", "vxlan", "eth", "ethertype", "vlan", "mpls", "pppoes", "ppp", "erspan"}
ENCAP_OF_LAYER = {"vlan": "vlan", "mpls": "mpls", "pppoes": "pppoe", "ppp": "ppp", "gre": "gre", "gtp": "gtp-u",
                  "vxlan": "vxlan", "erspan": "erspan"}
TIMEOUT_S = 600


def tshark_path() -> str:
    path = os.environ.get("CONFSCOPE_TSHARK") or shutil.which("tshark")
    if not path:
        raise EngineUnavailable("tshark is not installed (apt install tshark); the tshark engine needs it")
    return path


def run_tshark(path: str | os.PathLike) -> str:
    """tshark's tab-separated field output for every frame of the capture."""
    if not Path(path).is_file():
        raise CaptureFormatError(f"{path}: no such file")
    cmd = [tshark_path(), "-n", "-r", os.fspath(path), "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a",
           "-E", "aggregator=,"]
    for pref in PREFERENCES:
        cmd += ["-o", pref]
    for f in FIELDS:
        cmd += ["-e", f]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    if proc.returncode != 0 and not proc.stdout:
        msg = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit code {proc.returncode}"
        raise CaptureFormatError(f"{path}: tshark cannot read it ({msg})")
    return proc.stdout


def _nth(value: str, n: int) -> str:
    parts = value.split(",") if value else []
    return parts[n] if 0 <= n < len(parts) else ""


def _int(text: str, default: int = -1) -> int:
    try:
        return int(text, 0)
    except ValueError:
        return default


def epoch_ns(text: str) -> int:
    """'1589196046.484089000' -> integer nanoseconds, without going through a float."""
    sec, _, frac = text.partition(".")
    return int(sec or 0) * 1_000_000_000 + int((frac + "000000000")[:9])


def innermost(layers: list[str]) -> tuple[int, str, str, list[str]] | None:
    """Index of the innermost IP layer, its kind, the next (transport) layer and encapsulations."""
    best: int | None = None
    encap: list[str] = []
    i = 0
    while i < len(layers):
        name = layers[i]
        if name in ("ip", "ipv6"):
            if best is not None:
                encap.append("ip-in-ip") if layers[best] in ("ip", "ipv6") and _after_ip(layers, best) in (
                    "ip", "ipv6") else None
            best = i
        elif best is not None:
            nxt = _after_ip(layers, best)
            if name.startswith("ipv6.") or name in TUNNEL_LAYERS or (name == "udp" and nxt == "udp" and
                                                                        _after(layers, i) in ("gtp", "vxlan")):
                pass
            else:
                break
        if name in ENCAP_OF_LAYER:
            encap.append(ENCAP_OF_LAYER[name])
        i += 1
    if best is None:
        return None
    return best, layers[best], _after_ip(layers, best), encap


def _after(layers: list[str], i: int) -> str:
    return layers[i + 1] if i + 1 < len(layers) else ""


def _after_ip(layers: list[str], i: int) -> str:
    """The layer following IP layer `i`, skipping IPv6 extension headers."""
    j = i + 1
    while j < len(layers) and layers[j].startswith("ipv6."):
        j += 1
    return layers[j] if j < len(layers) else ""


def parse_fields(text: str) -> pd.DataFrame:
    """tshark field lines -> packet rows (analyzer.engines.table.PACKET_COLUMNS)."""
    rows = []
    for line in text.splitlines():
        v = line.split("\t")
        if len(v) < len(FIELDS):
            continue
        f = dict(zip(FIELDS, v, strict=False))
        layers = f["frame.protocols"].split(":")
        inner = innermost(layers)
        if inner is None:
            continue
        at, kind, nxt, encap = inner
        occ = Counter(layers[:at])
        k = occ[kind]
        if kind == "ip":
            src, dst = _nth(f["ip.src"], k), _nth(f["ip.dst"], k)
            ver, proto = 4, _int(_nth(f["ip.proto"], k))
            fid, foff, more = _nth(f["ip.id"], k), _int(_nth(f["ip.frag_offset"], k), 0), _nth(f["ip.flags.mf"], k)
        else:
            src, dst = _nth(f["ipv6.src"], k), _nth(f["ipv6.dst"], k)
            ver, proto = 6, LAYER_PROTO.get(nxt, _int(_nth(f["ipv6.nxt"], k)))
            # Fragment headers are counted among the IPv6 layers before this one.
            fk = sum(1 for name in layers[:at] if name == "ipv6.fraghdr")
            has_frag = "ipv6.fraghdr" in layers[at + 1 : at + 1 + 8] and nxt != ""
            fid = _nth(f["ipv6.fraghdr.ident"], fk) if has_frag else ""
            foff = _int(_nth(f["ipv6.fraghdr.offset"], fk), 0) if has_frag else 0
            more = _nth(f["ipv6.fraghdr.more"], fk) if has_frag else ""
        if not src or not dst:
            continue
        sport = dport = flags = itype = icode = -1
        tail = foff > 0
        if not tail and nxt in ("tcp", "udp", "sctp", "udplite"):
            j = occ[nxt] + sum(1 for name in layers[at:at + 1] if name == nxt)
            j = Counter(layers[: _index_after_ip(layers, at)])[nxt]
            sport, dport = _int(_nth(f[f"{nxt}.srcport"], j)), _int(_nth(f[f"{nxt}.dstport"], j))
            if nxt == "tcp":
                flags = _int(_nth(f["tcp.flags"], j))
            if sport < 0 or dport < 0:
                continue  # truncated transport header: not a 5-tuple (as the native decoder)
        elif not tail and nxt in ("icmp", "icmpv6"):
            j = Counter(layers[: _index_after_ip(layers, at)])[nxt]
            itype, icode = _int(_nth(f[f"{nxt}.type"], j)), _int(_nth(f[f"{nxt}.code"], j))
        elif not tail and proto in (6, 17, 132, 136):
            continue  # a ported protocol tshark could not dissect: no ports, no 5-tuple
        fragmented = tail or more in ("1", "True", "true")
        rows.append(
            (
                int(f["frame.number"]), epoch_ns(f["frame.time_epoch"]), _int(f["frame.len"], 0), ver, proto,
                src, dst, sport, dport, flags, itype, icode,
                f"{src}|{dst}|{fid}" if fragmented else "", tail, ",".join(dict.fromkeys(encap)),
            )
        )
    return pd.DataFrame.from_records(rows, columns=list(PACKET_COLUMNS))


def _index_after_ip(layers: list[str], i: int) -> int:
    j = i + 1
    while j < len(layers) and layers[j].startswith("ipv6."):
        j += 1
    return j


def tshark_packets(path: str | os.PathLike) -> pd.DataFrame:
    return parse_fields(run_tshark(path))


def tshark_flows(path: str | os.PathLike) -> pd.DataFrame:
    """The flow table of a capture, computed from tshark's dissection."""
    return packets_to_flows(tshark_packets(path))
