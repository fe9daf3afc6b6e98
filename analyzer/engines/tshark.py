"""The tshark engine: one `tshark -T fields` run, then pandas group-bys (analyzer.engines.table).

tshark is told not to reassemble anything (IP fragments, TCP streams), so each frame is one
row, as in the native engine. Repeated fields (one value per protocol layer) are matched to the
layers listed in `frame.protocols`; the innermost IP header is the last one reached through the
tunnels confscope follows (IP-in-IP, GRE, GTP-U, VXLAN), never one quoted inside ICMP.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd

from analyzer.engines.table import PACKET_COLUMNS, packets_to_flows
from analyzer.errors import CaptureFormatError, EngineUnavailable

FIELDS = (
    "frame.number",
    "frame.time_epoch",
    "frame.len",
    "frame.protocols",
    "ip.src",
    "ip.dst",
    "ip.proto",
    "ip.id",
    "ip.frag_offset",
    "ip.flags.mf",
    "ipv6.src",
    "ipv6.dst",
    "ipv6.nxt",
    "ipv6.fraghdr.offset",
    "ipv6.fraghdr.more",
    "ipv6.fraghdr.ident",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags",
    "udp.srcport",
    "udp.dstport",
    "sctp.srcport",
    "sctp.dstport",
    "icmp.type",
    "icmp.code",
    "icmpv6.type",
    "icmpv6.code",
    "ipv6.hopopts.nxt",
    "ipv6.routing.nxt",
    "ipv6.dstopts.nxt",
    "ipv6.fraghdr.nxt",
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
ENCAP_OF_LAYER = {
    "vlan": "vlan",
    "mpls": "mpls",
    "pppoes": "pppoe",
    "ppp": "ppp",
    "gre": "gre",
    "gtp": "gtp-u",
    "vxlan": "vxlan",
    "erspan": "erspan",
}
TIMEOUT_S = 600
# tshark's output is parsed line by line as it arrives; the packet rows are what stays in memory
# (about 1 KiB each in pandas), so verify compares captures up to this many IP packets.
MAX_PACKETS = 2_000_000


def tshark_path() -> str:
    path = shutil.which(os.environ.get("CONFSCOPE_TSHARK") or "tshark")
    if not path:
        raise EngineUnavailable("tshark is not installed (apt install tshark); the tshark engine needs it")
    return path


def _command(source: str) -> list[str]:
    cmd = [tshark_path(), "-n", "-r", source, "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a",
           "-E", "aggregator=,"]
    for pref in PREFERENCES:
        cmd += ["-o", pref]
    for f in FIELDS:
        cmd += ["-e", f]
    return cmd


def tshark_lines(path: str | os.PathLike, timeout: float = TIMEOUT_S) -> Iterator[str]:
    """tshark's tab-separated field lines for every frame, streamed as tshark writes them.

    A gzip capture is decompressed by confscope's own bounded reader (capture/source.py: the
    same byte and ratio bounds as the native engine) and piped to tshark, which otherwise would
    expand any gzip bomb. tshark is killed after `timeout` seconds (CaptureFormatError).
    """
    if not Path(path).is_file():
        raise CaptureFormatError(f"{path}: no such file")
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    proc = subprocess.Popen(
        _command("-" if gz else os.fspath(path)),
        stdin=subprocess.PIPE if gz else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # Binary pipes (stdin carries capture bytes); tshark's text is decoded line by line.
    out = io.TextIOWrapper(proc.stdout, encoding="utf-8", errors="replace")  # type: ignore[arg-type]
    err = io.TextIOWrapper(proc.stderr, encoding="utf-8", errors="replace")  # type: ignore[arg-type]
    err_tail: collections.deque[str] = collections.deque(maxlen=20)
    threads = [threading.Thread(target=lambda: err_tail.extend(err), daemon=True)]
    if gz:
        threads.append(threading.Thread(target=_feed_gunzipped, args=(path, proc), daemon=True))
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    timer = threading.Timer(timeout, proc.kill)
    timer.daemon = True
    timer.start()
    seen = 0
    try:
        for line in out:
            seen += 1
            yield line
        proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:  # the consumer stopped early (a bound) or failed
            proc.kill()
            proc.wait()
        for t in threads:
            t.join(5)
    if time.monotonic() >= deadline and proc.returncode != 0:
        raise CaptureFormatError(f"{path}: tshark did not finish within {timeout:g} s (verify's time bound)")
    if proc.returncode != 0 and not seen:
        msg = err_tail[-1].strip() if err_tail else f"exit code {proc.returncode}"
        raise CaptureFormatError(f"{path}: tshark cannot read it ({msg})")


def _feed_gunzipped(path: str | os.PathLike, proc: subprocess.Popen) -> None:
    from analyzer.capture.source import BoundedGunzip, GzipBombError

    try:
        with open(path, "rb") as raw, BoundedGunzip(raw) as gz:  # type: ignore[arg-type]
            while block := gz.read(1 << 20):
                proc.stdin.write(block)  # type: ignore[union-attr]
    except GzipBombError:
        pass  # the bound the native reader applies too: tshark sees what native sees
    except (OSError, EOFError, ValueError):
        pass  # a damaged stream or tshark gone: tshark's exit status tells
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()  # type: ignore[union-attr]


def run_tshark(path: str | os.PathLike, timeout: float = TIMEOUT_S) -> str:
    """tshark's whole field output as one string (small captures and tests; verify streams)."""
    return "".join(tshark_lines(path, timeout))


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


def innermost(layers: list[str]) -> tuple[int, str, list[str]] | None:
    """Index of the innermost IP layer, the layer after it, and the encapsulations on the way."""
    best: int | None = None
    encap: list[str] = []
    pending: list[str] = []  # encapsulations that count only if an inner IP header follows
    for i, name in enumerate(layers):
        if name in ("ip", "ipv6"):
            if best is not None and _index_after_ip(layers, best) == i:
                pending.append("ip-in-ip")
            encap += pending
            pending = []
            best = i
            continue
        if best is not None and not (
            name.startswith("ipv6.")
            or name in TUNNEL_LAYERS
            or (name == "udp" and _next(layers, i) in ("gtp", "vxlan"))
        ):
            break
        label = ENCAP_OF_LAYER.get(name)
        # PPP inside PPPoE or GRE (PPTP) is part of that encapsulation, as in the native decoder.
        if label == "ppp" and (best is not None or "pppoes" in layers[:i]):
            label = None
        if label:
            pending.append(label)
    if best is None:
        return None
    return best, _next(layers, _index_after_ip(layers, best) - 1), encap


def _next(layers: list[str], i: int) -> str:
    return layers[i + 1] if i + 1 < len(layers) else ""


def _index_after_ip(layers: list[str], i: int) -> int:
    """Position of the layer following IP layer `i`, skipping IPv6 extension headers."""
    j = i + 1
    while j < len(layers) and layers[j].startswith("ipv6."):
        j += 1
    return j


def parse_fields(text: str | Iterable[str], max_packets: int = MAX_PACKETS) -> pd.DataFrame:
    """tshark field lines -> packet rows (analyzer.engines.table.PACKET_COLUMNS); at most
    `max_packets` rows, else CaptureFormatError names the bound."""
    rows = []
    for line in text.splitlines() if isinstance(text, str) else text:
        v = line.rstrip("\r\n").split("\t")
        if len(v) < len(FIELDS):
            continue
        f = dict(zip(FIELDS, v, strict=False))
        row = _packet_row(f)
        if row is not None:
            rows.append(row)
            if len(rows) > max_packets:
                raise CaptureFormatError(
                    f"more than {max_packets:,} IP packets: larger than verify compares (its memory bound)"
                )
    return pd.DataFrame.from_records(rows, columns=list(PACKET_COLUMNS))


def _drop_version_handoffs(layers: list[str], ip_src: str) -> list[str]:
    """Wireshark's IPv4 dissector hands IPv6 packets found under an IPv4 link type on to IPv6,
    listing an `ip` layer without fields; drop those so occurrences line up with layers."""
    extra = layers.count("ip") - (len(ip_src.split(",")) if ip_src else 0)
    out = list(layers)
    i = 0
    while extra > 0 and i < len(out) - 1:
        if out[i] == "ip" and out[i + 1] == "ipv6":
            del out[i]
            extra -= 1
        else:
            i += 1
    return out


def _packet_row(f: dict[str, str]) -> tuple | None:
    layers = _drop_version_handoffs(f["frame.protocols"].split(":"), f["ip.src"])
    inner = innermost(layers)
    if inner is None:
        return None
    at, nxt, encap = inner
    kind = layers[at]
    k = layers[:at].count(kind)  # occurrence of this layer's fields
    after = _index_after_ip(layers, at)
    ext = layers[at + 1 : after]
    if kind == "ip":
        src, dst = _nth(f["ip.src"], k), _nth(f["ip.dst"], k)
        ver, proto = 4, _int(_nth(f["ip.proto"], k))
        fid, foff, more = (
            _nth(f["ip.id"], k),
            _int(_nth(f["ip.frag_offset"], k), 0),
            _nth(f["ip.flags.mf"], k),
        )
    else:
        src, dst = _nth(f["ipv6.src"], k), _nth(f["ipv6.dst"], k)
        ver, proto = 6, _int(_nth(f["ipv6.nxt"], k))
        if ext:
            last = ext[-1]
            proto = _int(_nth(f.get(f"{last}.nxt", ""), layers[: after - 1].count(last)))
        fid, foff, more = "", 0, ""
        if "ipv6.fraghdr" in ext:
            fk = layers[: at + 1 + ext.index("ipv6.fraghdr")].count("ipv6.fraghdr")
            fid = _nth(f["ipv6.fraghdr.ident"], fk)
            foff = _int(_nth(f["ipv6.fraghdr.offset"], fk), 0)
            more = _nth(f["ipv6.fraghdr.more"], fk)
    if not src or not dst:
        return None
    sport = dport = flags = itype = icode = -1
    tail = foff > 0
    j = layers[:after].count(nxt)
    if not tail and nxt in ("tcp", "udp", "sctp", "udplite"):
        if nxt == "udplite":  # Wireshark files UDP-Lite ports under the udp.* fields
            nxt, j = "udp", layers[:after].count("udp") + j
        sport, dport = _int(_nth(f[f"{nxt}.srcport"], j)), _int(_nth(f[f"{nxt}.dstport"], j))
        if nxt == "tcp":
            flags = _int(_nth(f["tcp.flags"], j))
            if flags < 0:
                return None  # tshark found the header length bogus: the native decoder skips these too
        if sport < 0 or dport < 0:
            return None  # truncated transport header: no 5-tuple (as in the native decoder)
    elif not tail and nxt in ("icmp", "icmpv6"):
        itype, icode = _int(_nth(f[f"{nxt}.type"], j)), _int(_nth(f[f"{nxt}.code"], j))
    elif not tail and proto in (6, 17, 132, 136):
        return None  # a ported protocol without a readable header: no 5-tuple
    fragmented = tail or more in ("1", "True", "true")
    return (
        int(f["frame.number"]),
        epoch_ns(f["frame.time_epoch"]),
        _int(f["frame.len"], 0),
        ver,
        proto,
        src,
        dst,
        sport,
        dport,
        flags,
        itype,
        icode,
        f"{src}|{dst}|{fid}" if fragmented else "",
        tail,
        ",".join(dict.fromkeys(encap)),
    )


def tshark_packets(path: str | os.PathLike, timeout: float = TIMEOUT_S, max_packets: int = MAX_PACKETS) -> pd.DataFrame:
    """Packet rows parsed from tshark's output as it streams in (never the whole text at once)."""
    lines = tshark_lines(path, timeout)
    try:
        return parse_fields(lines, max_packets)
    finally:
        lines.close()  # stops (kills) tshark when a bound ended the parse early


def tshark_flows(path: str | os.PathLike, timeout: float = TIMEOUT_S, max_packets: int = MAX_PACKETS) -> pd.DataFrame:
    """The flow table of a capture, computed from tshark's dissection."""
    return packets_to_flows(tshark_packets(path, timeout, max_packets))
