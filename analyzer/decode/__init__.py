"""Frames -> packet columns: the innermost IP 5-tuple of every frame, decoded with numpy."""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analyzer.capture.model import FrameChunk
from analyzer.common.compiled import load
from analyzer.common.hashing import mix_columns
from analyzer.decode import reasons as R
from analyzer.decode.fields import member, u16
from analyzer.decode.link import ETH_IPV4, ETH_IPV6, ethertype_chain, link_layer
from analyzer.decode.network import decode_ip
from analyzer.decode.transport import PORTED, decode_transport
from analyzer.decode.tunnels import INNER_ETHERNET, find_tunnels

MAX_TUNNEL_DEPTH = 4
MAX_PENDING_FRAGMENTS = 65536
_compiled = load("analyzer.decode._decode")


@dataclass
class PacketColumns:
    """One entry per frame of a chunk (docs/internals.md, 'decode')."""

    status: np.ndarray
    ver: np.ndarray
    proto: np.ndarray
    src_hi: np.ndarray
    src_lo: np.ndarray
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    sport: np.ndarray
    dport: np.ndarray
    tcp_flags: np.ndarray
    tcp_seq: np.ndarray
    l4_off: np.ndarray
    l4_len: np.ndarray
    encap: np.ndarray
    fragment_tail: np.ndarray
    # Per frame: endpoint A (the smaller (address, port)) is the source, and the bidirectional
    # flow key. Both decoders set them (the C loop in passing, the numpy twin with canonical_keys),
    # and fragment attribution recomputes them, so the scan has one shape to read.
    a_is_src: np.ndarray | None = None
    flow_key: np.ndarray | None = None


def canonical_keys(cols: PacketColumns) -> tuple[np.ndarray, np.ndarray]:
    """(a_is_src, flow_key) of every frame, as _decode.c computes them (scan.flows.canonical and
    scan.flows.flow_keys are the column-by-column reference the tests compare with)."""
    sh, sl, dh, dl, sp, dp = cols.src_hi, cols.src_lo, cols.dst_hi, cols.dst_lo, cols.sport, cols.dport
    a = (sh < dh) | ((sh == dh) & ((sl < dl) | ((sl == dl) & (sp <= dp))))
    key = mix_columns(
        np.where(a, sh, dh), np.where(a, sl, dl), np.where(a, dh, sh), np.where(a, dl, sl),
        np.where(a, sp, dp).astype(np.int32), np.where(a, dp, sp).astype(np.int32), cols.proto,
    )  # fmt: skip
    return a.astype(np.uint8), key


@dataclass
class DecodeState:
    """What decoding must remember across chunks: first fragments' ports."""

    fragments: OrderedDict = field(default_factory=OrderedDict)
    counters: Counter = field(default_factory=Counter)


@dataclass
class Fragments:
    """IP fragmentation fields of a chunk, kept for the (sequential) fragment attribution."""

    frag_off: np.ndarray
    more: np.ndarray
    frag_id: np.ndarray

    def any(self) -> bool:
        return bool((self.frag_off > 0).any() or self.more.any())


def decode_chunk(chunk: FrameChunk, state: DecodeState | None = None) -> PacketColumns:
    """Decode a chunk and attribute its IP fragments (using and updating `state`)."""
    state = state or DecodeState()
    cols, frags, counters = decode_frames(chunk)
    state.counters.update(counters)
    attribute_fragments(cols, frags, state)
    return cols


def attribute_fragments(cols: PacketColumns, frags: Fragments, state: DecodeState) -> None:
    """Give later IP fragments their first fragment's ports; needs chunks in capture order."""
    if frags.any():
        _attribute_fragments(cols, frags.frag_off, frags.more, frags.frag_id, state)
        cols.a_is_src, cols.flow_key = canonical_keys(cols)  # later fragments got ports: new keys


def decode_frames(chunk: FrameChunk) -> tuple[PacketColumns, Fragments, Counter]:
    """Everything of decoding that needs no state from other chunks (safe to run in a thread)."""
    if _compiled is None:
        return decode_frames_numpy(chunk)
    return decode_frames_compiled(chunk)


def decode_frames_compiled(chunk: FrameChunk) -> tuple[PacketColumns, Fragments, Counter]:
    """decode_frames through the C loop of _decode.c: the same columns, one pass over the frames."""
    n = len(chunk)
    cols = PacketColumns(
        status=np.empty(n, np.uint8),
        ver=np.empty(n, np.uint8),
        proto=np.empty(n, np.uint8),
        src_hi=np.empty(n, np.uint64),
        src_lo=np.empty(n, np.uint64),
        dst_hi=np.empty(n, np.uint64),
        dst_lo=np.empty(n, np.uint64),
        sport=np.empty(n, np.int32),
        dport=np.empty(n, np.int32),
        tcp_flags=np.empty(n, np.int32),
        tcp_seq=np.empty(n, np.int64),
        l4_off=np.empty(n, np.int64),
        l4_len=np.empty(n, np.int32),
        encap=np.empty(n, np.int64),
        fragment_tail=np.zeros(n, bool),
    )
    cols.a_is_src, cols.flow_key = np.empty(n, np.uint8), np.empty(n, np.uint64)
    frags = Fragments(np.empty(n, np.int64), np.empty(n, bool), np.empty(n, np.int64))
    outputs = (
        cols.status, cols.ver, cols.proto, cols.src_hi, cols.src_lo, cols.dst_hi, cols.dst_lo, cols.sport,
        cols.dport, cols.tcp_flags, cols.tcp_seq, cols.l4_off, cols.l4_len, cols.encap, frags.frag_off,
        frags.more, frags.frag_id, cols.a_is_src, cols.flow_key,
    )  # fmt: skip
    too_deep = _compiled.decode_frames(
        chunk.buf,
        np.ascontiguousarray(chunk.data_off, np.int64),
        np.ascontiguousarray(chunk.caplen, np.int64),
        np.ascontiguousarray(chunk.linktype, np.int32),
        outputs,
    )
    counters: Counter = Counter()
    if too_deep:
        counters["tunnel_depth_exceeded"] += too_deep
    return cols, frags, counters


def decode_frames_numpy(chunk: FrameChunk) -> tuple[PacketColumns, Fragments, Counter]:
    """decode_frames with numpy only: the reference the compiled loop is tested against."""
    counters: Counter = Counter()
    buf = chunk.buf
    start = chunk.data_off
    end = start + chunk.caplen
    n = len(chunk)
    et, pos, encap, status = link_layer(buf, start, end, chunk.linktype)
    cols = PacketColumns(
        status=status,
        ver=np.zeros(n, np.uint8),
        proto=np.zeros(n, np.uint8),
        src_hi=np.zeros(n, np.uint64),
        src_lo=np.zeros(n, np.uint64),
        dst_hi=np.zeros(n, np.uint64),
        dst_lo=np.zeros(n, np.uint64),
        sport=np.zeros(n, np.int32),
        dport=np.zeros(n, np.int32),
        tcp_flags=np.zeros(n, np.int32),
        tcp_seq=np.full(n, -1, np.int64),
        l4_off=np.zeros(n, np.int64),
        l4_len=np.zeros(n, np.int32),
        encap=encap,
        fragment_tail=np.zeros(n, bool),
    )
    frag_off = np.zeros(n, np.int64)
    more_frags = np.zeros(n, bool)
    frag_id = np.zeros(n, np.int64)

    todo = np.flatnonzero(status == R.OK)
    cur_et, cur_pos = et[todo], pos[todo]
    for depth in range(MAX_TUNNEL_DEPTH + 1):
        ip = decode_ip(buf, cur_et, cur_pos, end[todo])
        first = ip.frag_off == 0
        tr = decode_transport(buf, ip.proto, ip.l4pos, ip.ipend, first)
        if depth == 0:
            status[todo[~ip.ok]] = R.BAD_IP_HEADER
        good = ip.ok
        g = todo[good]
        cols.ver[g] = ip.ver[good]
        cols.proto[g] = ip.proto[good]
        cols.src_hi[g], cols.src_lo[g] = ip.src_hi[good], ip.src_lo[good]
        cols.dst_hi[g], cols.dst_lo[g] = ip.dst_hi[good], ip.dst_lo[good]
        cols.sport[g], cols.dport[g] = tr.sport[good], tr.dport[good]
        cols.tcp_flags[g], cols.tcp_seq[g] = tr.flags[good], tr.seq[good]
        cols.l4_off[g], cols.l4_len[g] = tr.pay_off[good], tr.pay_len[good]
        frag_off[g], more_frags[g], frag_id[g] = ip.frag_off[good], ip.more_frags[good], ip.frag_id[good]
        status[g] = np.where(tr.ok[good], R.OK, R.TRUNCATED_TRANSPORT)

        inner_et, inner_pos, bit = find_tunnels(
            buf, ip.proto, ip.l4pos, ip.ipend, tr.sport, tr.dport, tr.pay_off, first & good & tr.ok
        )
        tun = good & (inner_et != -1)
        if not tun.any():
            break
        if depth == MAX_TUNNEL_DEPTH:
            counters["tunnel_depth_exceeded"] += int(tun.sum())
            break
        nxt = todo[tun]
        cur_et, cur_pos = inner_et[tun], inner_pos[tun]
        cols.encap[nxt] |= bit[tun]
        eth = cur_et == INNER_ETHERNET
        if eth.any():
            sub_pos = cur_pos[eth]
            t, p = ethertype_chain(
                buf,
                np.where(sub_pos + 14 <= end[nxt[eth]], u16(buf, sub_pos + 12), -1),
                sub_pos + 14,
                end[nxt[eth]],
                sub_enc := np.zeros(sub_pos.shape[0], np.int64),
            )
            cur_et[eth], cur_pos[eth] = t, p
            cols.encap[nxt[eth]] |= sub_enc
        is_ip = (cur_et == ETH_IPV4) | (cur_et == ETH_IPV6)
        todo, cur_et, cur_pos = nxt[is_ip], cur_et[is_ip], cur_pos[is_ip]
        if not todo.size:
            break

    cols.a_is_src, cols.flow_key = canonical_keys(cols)
    return cols, Fragments(frag_off, more_frags, frag_id), counters


def _attribute_fragments(
    cols: PacketColumns, frag_off: np.ndarray, more: np.ndarray, fid: np.ndarray, state: DecodeState
) -> None:
    """Give later IP fragments the ports of their first fragment (same src, dst, proto, id)."""
    ok = cols.status == R.OK
    ported = member(cols.proto, PORTED)
    heads = np.flatnonzero(ok & ported & (frag_off == 0) & more)
    tails = np.flatnonzero(ok & (frag_off > 0))
    if not heads.size and not tails.size:
        return
    cols.fragment_tail[tails] = True
    cols.l4_len[tails] = 0

    def key(idx: np.ndarray) -> np.ndarray:
        return mix_columns(
            cols.ver[idx],
            cols.src_hi[idx],
            cols.src_lo[idx],
            cols.dst_hi[idx],
            cols.dst_lo[idx],
            cols.proto[idx],
            fid[idx],
        )

    table = state.fragments
    tails = tails[member(cols.proto[tails], PORTED)]
    hk = key(heads) if heads.size else np.zeros(0, np.uint64)
    tk = key(tails) if tails.size else np.zeros(0, np.uint64)
    if tails.size:
        # Each tail takes the ports of the latest earlier head of its datagram (this chunk, then
        # earlier chunks); a tail that arrived before any head takes the next head in the chunk
        # (senders often emit the last fragment first). Re-used IP ids thus stay deterministic.
        pos = np.r_[heads, tails]
        keys = np.r_[hk, tk]
        is_head = np.r_[np.ones(heads.size, bool), np.zeros(tails.size, bool)]
        order = np.lexsort((pos, keys))
        ev = pd.DataFrame({"k": keys[order], "head": np.where(is_head[order], pos[order], -1)})
        ev["head"] = ev["head"].where(ev["head"] >= 0)
        prev = ev.groupby("k", sort=False)["head"].ffill()
        nxt = ev.groupby("k", sort=False)["head"].bfill()
        tail_sel = ~is_head[order]
        t_pos, t_key = pos[order][tail_sel], keys[order][tail_sel]
        t_prev, t_next = prev.to_numpy()[tail_sel], nxt.to_numpy()[tail_sel]
        sport = np.full(t_pos.size, -1, np.int64)
        dport = np.full(t_pos.size, -1, np.int64)
        here = ~np.isnan(t_prev)
        hp = t_prev[here].astype(np.int64)
        sport[here], dport[here] = cols.sport[hp], cols.dport[hp]
        need = np.flatnonzero(~here)
        if need.size and table:
            known = pd.Index(list(table.keys()), dtype="uint64")
            where = known.get_indexer(t_key[need])
            hit = where >= 0
            if hit.any():
                ports = np.array(list(table.values()), dtype=np.int64)
                sport[need[hit]], dport[need[hit]] = ports[where[hit], 0], ports[where[hit], 1]
                here[need[hit]] = True
        later = ~here & ~np.isnan(t_next)
        hn = t_next[later].astype(np.int64)
        sport[later], dport[later] = cols.sport[hn], cols.dport[hn]
        found = here | later
        cols.sport[t_pos[found]] = sport[found]
        cols.dport[t_pos[found]] = dport[found]
        cols.status[t_pos[~found]] = R.FRAGMENT_ORPHAN
    if heads.size:
        # Heads in file order: the latest head of each datagram id is what later chunks see.
        for k, sp, dp in zip(
            hk.tolist(), cols.sport[heads].tolist(), cols.dport[heads].tolist(), strict=True
        ):
            table[k] = (sp, dp)
            table.move_to_end(k)
        while len(table) > MAX_PENDING_FRAGMENTS:
            table.popitem(last=False)
