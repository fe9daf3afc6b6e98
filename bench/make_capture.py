"""Build the benchmark capture: real conferencing seeds merged as if concurrent, repeated to N packets.

Each seed capture is put on a relative timeline (its first packet at t=0), the seeds are interleaved
by time into one block, and the block is written back to back with a time shift per repetition
until N packets. Packet bytes are never changed (except a synthetic Ethernet header for seeds whose
link type is not Ethernet), so the result is one long session whose flows keep going.

Output is classic pcap (little-endian, microseconds, LINKTYPE_ETHERNET), written in whole blocks
with numpy, plus an optional pcapng copy made by `editcap -F pcapng`, plus a `<output>.json`
sidecar (packets, bytes, sha256) that bench/run.py reads. The output is deterministic: the same
seeds give the same bytes on every run, and a smaller N gives a prefix of a larger N's stream.

The seed reader here is deliberately independent of confscope's own capture reader so that the
benchmark input does not depend on the code under test.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_SEEDS_DIR = Path(__file__).resolve().parents[2] / "shared" / "captures" / "real"
# The seeds are not chosen here: they are every capture that ../shared/captures/MANIFEST.md lists
# under "Conferencing:", so the benchmark cannot be tuned by picking captures the code is good at.
MANIFEST_SECTION = "Conferencing:"


def conferencing_seeds(seeds_dir: Path = DEFAULT_SEEDS_DIR) -> tuple[str, ...]:
    """Every capture the manifest beside `seeds_dir` lists as conferencing, in the manifest's order."""
    manifest = seeds_dir.parent / "MANIFEST.md"
    text = manifest.read_text(encoding="utf-8")
    start = text.index(MANIFEST_SECTION) + len(MANIFEST_SECTION)
    # "zoom.pcap (2019 client: ...)" -> zoom.pcap: drop parenthesised notes; the list ends at the
    # first full stop (a "." not inside a file name), then split on commas.
    section = re.sub(r"\([^)]*\)", "", text[start:])
    section = re.split(r"\.(?:\s|$)", section, maxsplit=1)[0]
    names = [n.strip().rstrip(".") for n in section.replace("\n", " ").split(",")]
    return tuple(n for n in names if n.endswith((".pcap", ".pcapng")))


DEFAULT_SEEDS: tuple[str, ...] = ()  # empty: conferencing_seeds() of the seeds directory
DEFAULT_OUTPUT = Path("/tmp/confscope-bench/big1m.pcap")
SNAPLEN = 262144
LINKTYPE_ETHERNET = 1
# Gap between the end of one block and the start of the next, so repetitions never overlap.
BLOCK_GAP_US = 1000
# Silences longer than MAX_GAP_US inside a seed are shortened to CLAMPED_GAP_US: zoom.pcap joins a
# 2019 call and 81 GTP-U frames from 2023 (a 3.3-year gap) and zoom_p2p.pcapng pauses up to 30 s.
# Shortened, the merged block spans 117 s (webex.pcap's length), so a flow that recurs in every
# block is never idle for 120 s, the usual idle timeout (NFStream, nDPI): the output reads as one
# long session of ~235 long flows, as in the original recipe, not as thousands of re-opened ones.
MAX_GAP_US = 10 * 1_000_000
CLAMPED_GAP_US = 1_000_000

# Synthetic Ethernet header for converted frames: locally administered MACs, fixed for determinism.
_SYN_DST = bytes.fromhex("020000000002")
_SYN_SRC = bytes.fromhex("020000000001")
_ETH_IPV4 = b"\x08\x00"
_ETH_IPV6 = b"\x86\xdd"


@dataclass(frozen=True)
class SeedPacket:
    ts_ns: int
    wirelen: int
    data: bytes


@dataclass
class SeedStats:
    name: str
    packets: int = 0
    converted: int = 0
    skipped: int = 0
    skipped_linktypes: tuple[int, ...] = ()


def _to_ethernet(linktype: int, data: bytes) -> tuple[bytes | None, int]:
    """Return (Ethernet frame, bytes added to the wire length) or (None, 0) when not convertible.

    Only link types whose network-layer payload is IPv4/IPv6 are converted; the original L2 header
    is replaced by a 14-byte synthetic Ethernet header so every frame of the output shares one
    link type (classic pcap has one per file).
    """
    if linktype == LINKTYPE_ETHERNET:
        return data, 0
    payload: bytes | None = None
    ethertype: bytes | None = None
    if linktype in (101, 12, 14, 228, 229):  # raw IP (and legacy DLT values)
        payload = data
    elif linktype == 113 and len(data) >= 16:  # Linux cooked SLL: protocol at offset 14
        ethertype, payload = data[14:16], data[16:]
    elif linktype == 276 and len(data) >= 20:  # SLL2: protocol at offset 0
        ethertype, payload = data[0:2], data[20:]
    elif linktype in (0, 108) and len(data) >= 4:  # BSD NULL/LOOP: address family, any order
        payload = data[4:]
    if payload is None:
        return None, 0
    if ethertype not in (_ETH_IPV4, _ETH_IPV6):
        version = payload[0] >> 4 if payload else 0
        if version == 4:
            ethertype = _ETH_IPV4
        elif version == 6:
            ethertype = _ETH_IPV6
        else:
            return None, 0
    header = _SYN_DST + _SYN_SRC + ethertype
    return header + payload, len(header) + len(payload) - len(data)


def _read_classic(raw: bytes) -> list[tuple[int, int, int, bytes]]:
    """(ts_ns, linktype, wirelen, data) of a classic pcap; stops quietly at a truncated record."""
    magic = raw[:4]
    table = {
        b"\xd4\xc3\xb2\xa1": ("<", 1000),
        b"\xa1\xb2\xc3\xd4": (">", 1000),
        b"\x4d\x3c\xb2\xa1": ("<", 1),
        b"\xa1\xb2\x3c\x4d": (">", 1),
    }
    if magic not in table or len(raw) < 24:
        return []
    endian, frac_ns = table[magic]
    linktype = struct.unpack_from(endian + "I", raw, 20)[0] & 0x0FFFFFFF
    rec = struct.Struct(endian + "IIII")
    out = []
    pos = 24
    while pos + 16 <= len(raw):
        sec, frac, incl, orig = rec.unpack_from(raw, pos)
        pos += 16
        if pos + incl > len(raw):
            break
        out.append((sec * 1_000_000_000 + frac * frac_ns, linktype, orig, raw[pos : pos + incl]))
        pos += incl
    return out


def _tsresol_ns(value: int) -> tuple[int, int]:
    """(numerator, denominator) turning if_tsresol units into nanoseconds exactly."""
    if value & 0x80:
        return 1_000_000_000, 2 ** (value & 0x7F)
    exp = value & 0x7F
    return (10 ** (9 - exp), 1) if exp <= 9 else (1, 10 ** (exp - 9))


def _read_pcapng(raw: bytes) -> list[tuple[int, int, int, bytes]]:
    """(ts_ns, linktype, wirelen, data) of a pcapng: IDB, EPB and SPB; other blocks skipped."""
    out = []
    pos = 0
    endian = "<"
    ifaces: list[tuple[int, int, int]] = []  # linktype, ns numerator, ns denominator
    while pos + 12 <= len(raw):
        btype_le = struct.unpack_from("<I", raw, pos)[0]
        if btype_le == 0x0A0D0D0A:  # section header: byte order from its magic
            endian = "<" if raw[pos + 8 : pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            ifaces = []
        btype, blen = struct.unpack_from(endian + "II", raw, pos)
        if blen < 12 or pos + blen > len(raw):
            break
        body = raw[pos + 8 : pos + blen - 4]
        if btype == 1 and len(body) >= 8:
            linktype = struct.unpack_from(endian + "H", body, 0)[0]
            num, den = 1000, 1  # default resolution: microseconds
            opos = 8
            while opos + 4 <= len(body):
                code, olen = struct.unpack_from(endian + "HH", body, opos)
                if code == 0:
                    break
                if code == 9 and olen >= 1:
                    num, den = _tsresol_ns(body[opos + 4])
                opos += 4 + ((olen + 3) & ~3)
            ifaces.append((linktype, num, den))
        elif btype == 6 and len(body) >= 20:
            iface, hi, lo, incl, orig = struct.unpack_from(endian + "IIIII", body, 0)
            if iface < len(ifaces):
                linktype, num, den = ifaces[iface]
                ts = ((hi << 32) | lo) * num // den
                out.append((ts, linktype, orig, body[20 : 20 + incl]))
        elif btype == 3 and len(body) >= 4 and ifaces:
            # Simple Packet Block: no timestamp; it keeps the previous packet's time.
            orig = struct.unpack_from(endian + "I", body, 0)[0]
            ts = out[-1][0] if out else 0
            out.append((ts, ifaces[0][0], orig, body[4 : 4 + orig]))
        pos += blen
    return out


def read_seed(path: Path) -> tuple[list[SeedPacket], SeedStats]:
    """Packets of one seed capture (format by magic), converted to Ethernet where possible."""
    raw = path.read_bytes()
    stats = SeedStats(path.name)
    if raw[:4] == b"\x0a\x0d\x0d\x0a":
        records = _read_pcapng(raw)
    else:
        records = _read_classic(raw)
    packets = []
    skipped_lt: set[int] = set()
    for ts_ns, linktype, orig, data in records:
        frame, grow = _to_ethernet(linktype, data)
        if frame is None:
            stats.skipped += 1
            skipped_lt.add(linktype)
            continue
        if linktype != LINKTYPE_ETHERNET:
            stats.converted += 1
        packets.append(SeedPacket(ts_ns, orig + grow, frame))
    stats.packets = len(packets)
    stats.skipped_linktypes = tuple(sorted(skipped_lt))
    return packets, stats


@dataclass
class Block:
    """One merged block, laid out as classic pcap records with zeroed timestamps."""

    buf: np.ndarray  # uint8, concatenated records (16-byte header + data)
    rec_off: np.ndarray  # int64, offset of each record header in buf
    rel_us: np.ndarray  # int64, timestamp of each record relative to the block start
    base_us: int  # absolute time of the block start (earliest seed's first packet)
    span_us: int  # time shift between consecutive repetitions


def relative_us(packets: list[SeedPacket]) -> list[int]:
    """Microseconds since the seed's earliest packet, in file order, with huge gaps shortened."""
    rel = []
    t = 0
    prev = packets[0].ts_ns // 1000
    for p in packets:
        now = p.ts_ns // 1000
        gap = now - prev
        t += CLAMPED_GAP_US if gap > MAX_GAP_US else gap
        rel.append(t)
        prev = now
    t0 = min(rel)
    return [r - t0 for r in rel]


def merge_seeds(seeds: list[list[SeedPacket]]) -> Block:
    """Interleave seeds by relative time (ties: seed order, then packet order) into one block."""
    keyed = []
    for s_idx, packets in enumerate(seeds):
        if not packets:
            continue
        for p_idx, (rel, p) in enumerate(zip(relative_us(packets), packets, strict=True)):
            keyed.append((rel, s_idx, p_idx, p))
    if not keyed:
        raise SystemExit("make_capture: no usable packets in the seeds")
    keyed.sort(key=lambda k: k[:3])
    base_us = min(min(p.ts_ns for p in s) for s in seeds if s) // 1000
    parts = []
    rec_off = np.empty(len(keyed), dtype=np.int64)
    rel_us = np.empty(len(keyed), dtype=np.int64)
    pos = 0
    for i, (rel, _s, _p, pkt) in enumerate(keyed):
        data = pkt.data[:SNAPLEN]
        parts.append(struct.pack("<IIII", 0, 0, len(data), max(pkt.wirelen, len(data))))
        parts.append(data)
        rec_off[i] = pos
        rel_us[i] = rel
        pos += 16 + len(data)
    buf = np.frombuffer(b"".join(parts), dtype=np.uint8).copy()
    span_us = int(rel_us[-1]) + BLOCK_GAP_US
    return Block(buf, rec_off, rel_us, base_us, span_us)


def _ip_fields(frame: bytes) -> tuple[tuple[int, int], tuple] | None:
    """((src offset, dst offset) of the bytes to rewrite, 5-tuple key) of an Ethernet frame's outer
    IP header (after VLAN/QinQ tags), or None for frames that are not IP."""
    pos, etype = 12, frame[12:14] if len(frame) >= 14 else b""
    while etype in (b"\x81\x00", b"\x88\xa8") and len(frame) >= pos + 6:
        pos += 4
        etype = frame[pos : pos + 2]
    ip = pos + 2
    if etype == _ETH_IPV4 and len(frame) >= ip + 20:
        ihl = (frame[ip] & 0x0F) * 4
        proto = frame[ip + 9]
        src, dst = ip + 12, ip + 16
        l4 = ip + ihl
        ports = frame[l4 : l4 + 4] if proto in (6, 17) else b""
        # The last two bytes of an IPv4 address: a private address stays private (10/8, 172.16/12,
        # 192.168/16 keep their prefixes).
        key = (proto, *sorted((frame[src : src + 4] + ports[:2], frame[dst : dst + 4] + ports[2:])))
        return (src + 2, dst + 2), key
    if etype == _ETH_IPV6 and len(frame) >= ip + 40:
        nh = frame[ip + 6]
        src, dst = ip + 8, ip + 24
        ports = frame[ip + 40 : ip + 44] if nh in (6, 17) else b""
        key = (nh, *sorted((frame[src : src + 16] + ports[:2], frame[dst : dst + 16] + ports[2:])))
        return (src + 14, dst + 14), key
    return None


@dataclass
class FlowRewrite:
    """Many-flows mode: packet i's IP addresses get their last two bytes XOR-ed with a mask that
    changes every `window` packets, so each window's conversations become new flows (both
    directions alike). Non-IP frames are left alone."""

    window: int
    addr_idx: np.ndarray  # int64 [n_block, 4]: absolute offsets in the block of the 4 rewritten bytes, -1 if none
    tuple_id: np.ndarray  # int64 [n_block]: the record's bidirectional 5-tuple, -1 for non-IP


def flow_rewrite(block: Block, packets_per_flow: float, reference_packets: int = 1_000_000) -> FlowRewrite:
    """Choose the window so that `reference_packets` packets hold about
    reference_packets / packets_per_flow flows (the window is fixed by the 1M-packet file, so a
    4M-packet file is the same stream, four times as long)."""
    n_block = len(block.rec_off)
    addr_idx = np.full((n_block, 4), -1, np.int64)
    tuple_id = np.full(n_block, -1, np.int64)
    ids: dict[tuple, int] = {}
    for i, off in enumerate(block.rec_off.tolist()):
        incl = int(block.buf[off + 8 : off + 12].view("<u4")[0])
        frame = block.buf[off + 16 : off + 16 + incl].tobytes()
        fields = _ip_fields(frame)
        if fields is None:
            continue
        (a, b), key = fields
        base = off + 16
        addr_idx[i] = (base + a, base + a + 1, base + b, base + b + 1)
        tuple_id[i] = ids.setdefault(key, len(ids))
    target = reference_packets / packets_per_flow
    idx = np.arange(reference_packets, dtype=np.int64)
    tid = tuple_id[idx % n_block]
    ip = tid >= 0

    def flows(window: int) -> int:
        mask = (idx // window) % MASKS
        return int(np.unique(mask[ip] * (len(ids) + 1) + tid[ip]).size)

    lo, hi = 1, 1 << 16  # flows(window) falls as the window grows
    while lo < hi:
        mid = (lo + hi) // 2
        if flows(mid) > target:
            lo = mid + 1
        else:
            hi = mid
    return FlowRewrite(lo, addr_idx, tuple_id)


MASKS = 1 << 16  # distinct masks before they repeat


def _global_header() -> bytes:
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET)


def write_repeated(block: Block, n_packets: int, out_path: Path, rewrite: FlowRewrite | None = None) -> dict:
    """Write n_packets records: the block repeated with time shifts (and, with `rewrite`, addresses
    changed per window). Returns packets/bytes/sha256."""
    n_block = len(block.rec_off)
    # Scatter index of the 8 timestamp bytes of every record header in the block.
    ts_idx = (block.rec_off[:, None] + np.arange(8)[None, :]).ravel()
    end_off = np.append(block.rec_off[1:], len(block.buf))
    sha = hashlib.sha256()
    written = 0
    rep = 0
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".part")
    with tmp.open("wb") as fh:
        head = _global_header()
        fh.write(head)
        sha.update(head)
        total_bytes = len(head)
        while written < n_packets:
            take = min(n_block, n_packets - written)
            abs_us = block.base_us + block.rel_us[:take] + rep * block.span_us
            ts = np.empty((take, 2), dtype="<u4")
            ts[:, 0] = abs_us // 1_000_000
            ts[:, 1] = abs_us % 1_000_000
            chunk = block.buf[: end_off[take - 1]].copy()
            chunk[ts_idx[: take * 8]] = ts.view(np.uint8).ravel()
            if rewrite is not None:
                gidx = written + np.arange(take, dtype=np.int64)
                mask = ((gidx // rewrite.window) % MASKS).astype(np.uint16)
                hi_lo = np.stack([mask >> 8, mask & 0xFF], axis=1).astype(np.uint8)  # address bytes 3, 4
                where = rewrite.addr_idx[:take]
                has = where[:, 0] >= 0
                pos = where[has].ravel()
                chunk[pos] ^= np.tile(hi_lo[has], (1, 2)).ravel()
            data = chunk.tobytes()
            fh.write(data)
            sha.update(data)
            total_bytes += len(data)
            written += take
            rep += 1
    tmp.replace(out_path)
    return {"packets": written, "bytes": total_bytes, "sha256": sha.hexdigest(), "repetitions": rep}


def to_pcapng(pcap_path: Path) -> Path:
    """Convert with editcap (tshark's package), which writes a standard SHB/IDB/EPB file."""
    editcap = shutil.which("editcap")
    if editcap is None:
        raise SystemExit("make_capture: --pcapng needs editcap (apt-get install tshark)")
    out = pcap_path.with_suffix(".pcapng")
    subprocess.run([editcap, "-F", "pcapng", str(pcap_path), str(out)], check=True)
    return out


def build(
    seeds_dir: Path,
    names: tuple[str, ...],
    n_packets: int,
    out_path: Path,
    pcapng: bool,
    packets_per_flow: float | None = None,
) -> dict:
    """Build the capture and its sidecar JSON; returns the sidecar's content. `names` empty: every
    conferencing capture of the manifest. `packets_per_flow`: many-flows mode (FlowRewrite)."""
    names_given = bool(names)
    names = names or conferencing_seeds(seeds_dir)
    seeds = []
    seed_stats = []
    for name in names:
        path = seeds_dir / name
        if not path.is_file():
            print(f"make_capture: seed {path} missing, skipped", file=sys.stderr)
            continue
        packets, stats = read_seed(path)
        if not packets:
            print(f"make_capture: seed {path} has no readable packets, skipped", file=sys.stderr)
            continue
        if stats.skipped:
            print(
                f"make_capture: {name}: {stats.skipped} frames of link types "
                f"{list(stats.skipped_linktypes)} skipped (not IP-convertible)",
                file=sys.stderr,
            )
        seeds.append(packets)
        seed_stats.append(stats)
    block = merge_seeds(seeds)
    rewrite = flow_rewrite(block, packets_per_flow) if packets_per_flow else None
    meta = write_repeated(block, n_packets, out_path, rewrite)
    meta.update(
        {
            "seeds_dir": str(seeds_dir),
            "seed_rule": f"every capture listed under '{MANIFEST_SECTION}' in MANIFEST.md"
            if not names_given
            else "--seeds",
            "many_flows": None
            if rewrite is None
            else {
                "packets_per_flow_target": packets_per_flow,
                "window_packets": rewrite.window,
                "rewrite": "last two bytes of both IP addresses XOR (global packet index // window) mod 65536",
            },
            "file": str(out_path),
            "format": "pcap",
            "block_packets": len(block.rec_off),
            "block_span_s": block.span_us / 1e6,
            "seeds": [
                {"name": s.name, "packets": s.packets, "converted": s.converted, "skipped": s.skipped}
                for s in seed_stats
            ],
        }
    )
    _write_sidecar(out_path, meta)
    if pcapng:
        ng = to_pcapng(out_path)
        ng_meta = dict(meta, file=str(ng), format="pcapng", bytes=ng.stat().st_size, sha256=_sha256(ng))
        _write_sidecar(ng, ng_meta)
        meta["pcapng"] = ng_meta
    return meta


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_sidecar(path: Path, meta: dict) -> None:
    path.with_name(path.name + ".json").write_text(json.dumps(meta, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=1_000_000, help="packets to write (default 1,000,000)")
    ap.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT, help="classic pcap to write")
    ap.add_argument("--pcapng", action="store_true", help="also write <output>.pcapng with editcap")
    ap.add_argument("--seeds-dir", type=Path, default=DEFAULT_SEEDS_DIR)
    ap.add_argument(
        "--seeds", nargs="+", default=[], help="seed file names (default: every conferencing capture of MANIFEST.md)"
    )
    ap.add_argument(
        "--many-flows",
        type=float,
        metavar="PACKETS_PER_FLOW",
        help="campus-like trace: rewrite addresses per window so 1M packets hold 1M/PACKETS_PER_FLOW flows (e.g. 5)",
    )
    args = ap.parse_args(argv)
    if args.packets < 1:
        ap.error("--packets must be >= 1")
    meta = build(args.seeds_dir, tuple(args.seeds), args.packets, args.output, args.pcapng, args.many_flows)
    print(
        f"{meta['file']}: {meta['packets']:,} packets, {meta['bytes']:,} bytes, "
        f"block {meta['block_packets']} packets x {meta['repetitions']}, sha256 {meta['sha256']}"
    )
    if "pcapng" in meta:
        ng = meta["pcapng"]
        print(f"{ng['file']}: {ng['bytes']:,} bytes, sha256 {ng['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
