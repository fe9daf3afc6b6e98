"""Bidirectional flows: partial tables per chunk that merge exactly, then the final table.

A flow is keyed on the canonical (ordered) innermost 5-tuple: endpoint A is the smaller
(address, port). Partial tables keep A->B and B->A counters, the earliest packet's direction
and the earliest SYN's direction, so that merging chunks (or workers) in any order gives the
same result as one pass.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import struct
from collections.abc import Mapping

import numpy as np
import pandas as pd

from analyzer.common.hashing import mix_columns
from analyzer.decode import PacketColumns
from analyzer.decode import reasons as R

NO_TS = np.iinfo(np.int64).max
TCP_SYN, TCP_ACK = 0x02, 0x10
TRANSPORT_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6", 132: "sctp", 136: "udplite"}
PORTED_PROTOS = (6, 17, 132, 136)

# Column order of the flow table (the contract's flow fields first).
FLOW_COLUMNS = (
    "flow_id", "transport", "ip_version", "client_ip", "client_port", "server_ip", "server_port",
    "first_ts", "last_ts", "first_ts_ns", "last_ts_ns", "packets_c2s", "packets_s2c", "bytes_c2s",
    "bytes_s2c", "packets", "bytes", "tcp_rtt_ms", "community_id", "encap",
)
SUM_COLUMNS = ("pk_ab", "pk_ba", "by_ab", "by_ba")
KEY_COLUMNS = ("a_hi", "a_lo", "b_hi", "b_lo", "a_port", "b_port", "proto", "ver")


def canonical(cols: PacketColumns, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Order each packet's endpoints so both directions share one key; `dir` 0 means A->B."""
    sh, sl, dh, dl = cols.src_hi[idx], cols.src_lo[idx], cols.dst_hi[idx], cols.dst_lo[idx]
    sp, dp = cols.sport[idx], cols.dport[idx]
    a_is_src = (sh < dh) | ((sh == dh) & ((sl < dl) | ((sl == dl) & (sp <= dp))))
    return {
        "a_hi": np.where(a_is_src, sh, dh),
        "a_lo": np.where(a_is_src, sl, dl),
        "b_hi": np.where(a_is_src, dh, sh),
        "b_lo": np.where(a_is_src, dl, sl),
        "a_port": np.where(a_is_src, sp, dp).astype(np.int32),
        "b_port": np.where(a_is_src, dp, sp).astype(np.int32),
        "proto": cols.proto[idx],
        "ver": cols.ver[idx],
        "dir": (~a_is_src).astype(np.int8),
    }


class CanonicalColumns(Mapping):
    """`canonical(cols, idx)` computed column by column on first use, from the compiled decoder's
    per-frame `a_is_src` (the flow keys come with it, so most columns are never needed)."""

    def __init__(self, cols: PacketColumns, idx: np.ndarray, a_is_src: np.ndarray) -> None:
        self._cols, self._idx, self._a = cols, idx, a_is_src.astype(bool)
        self._done: dict[str, np.ndarray] = {}

    def _column(self, name: str) -> np.ndarray:
        cols, idx, a = self._cols, self._idx, self._a
        pick = {
            "a_hi": ("src_hi", "dst_hi"), "a_lo": ("src_lo", "dst_lo"), "b_hi": ("dst_hi", "src_hi"),
            "b_lo": ("dst_lo", "src_lo"), "a_port": ("sport", "dport"), "b_port": ("dport", "sport"),
        }  # fmt: skip
        if name in pick:
            x, y = pick[name]
            out = np.where(a, getattr(cols, x)[idx], getattr(cols, y)[idx])
            return out.astype(np.int32) if name.endswith("port") else out
        if name in ("proto", "ver"):
            return getattr(cols, name)[idx]
        if name == "dir":
            return (~a).astype(np.int8)
        raise KeyError(name)

    def take(self, names: tuple[str, ...], pos: np.ndarray) -> dict[str, np.ndarray]:
        """Columns `names` at positions `pos` only (what a partial table keeps per flow)."""
        sub = CanonicalColumns(self._cols, self._idx[pos], self._a[pos])
        return {name: sub[name] for name in names}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._done:
            self._done[name] = self._column(name)
        return self._done[name]

    def __iter__(self):
        return iter((*KEY_COLUMNS, "dir"))

    def __len__(self) -> int:
        return len(KEY_COLUMNS) + 1


def flow_keys(c: dict[str, np.ndarray]) -> np.ndarray:
    return mix_columns(c["a_hi"], c["a_lo"], c["b_hi"], c["b_lo"], c["a_port"], c["b_port"], c["proto"])


Table = dict[str, np.ndarray]  # a partial flow table as columns; "key" holds the flow keys


def aggregate_table(
    c: dict[str, np.ndarray],
    codes: np.ndarray,
    uniq: np.ndarray,
    ts: np.ndarray,
    wire: np.ndarray,
    flags: np.ndarray,
    encap: np.ndarray,
    kinds: np.ndarray | None,
    n_kinds: int,
) -> Table:
    """One partial flow table for the packets of a chunk (`codes` index into `uniq`), as columns:
    a chunk's table is merged, never shown (table_frame makes the DataFrame workers exchange)."""
    k = uniq.shape[0]
    n = codes.shape[0]
    d = c["dir"]
    if n > 1 and not (np.diff(ts) >= 0).all():
        first_ns = np.full(k, NO_TS, np.int64)
        np.minimum.at(first_ns, codes, ts)
        last_ns = np.zeros(k, np.int64)
        np.maximum.at(last_ns, codes, ts)
        at_first = np.flatnonzero(ts == first_ns[codes])
        first_pos = np.full(k, n, np.int64)
        np.minimum.at(first_pos, codes[at_first], at_first)
    else:
        # Time-ordered packets: a group's first packet is its first occurrence, its last the last.
        first_pos = np.full(k, n, np.int64)
        first_pos[codes[::-1]] = np.arange(n - 1, -1, -1)
        first_ns = ts[first_pos]
        last_ns = np.zeros(k, np.int64)
        last_ns[codes] = ts  # later writes win: the last packet of each group
    ab = d == 0
    table: Table = {"key": np.asarray(uniq, dtype=np.uint64)}
    if isinstance(c, CanonicalColumns):
        table.update(c.take(KEY_COLUMNS, first_pos))  # only the k first packets, not every packet
    else:
        table.update({name: c[name][first_pos] for name in KEY_COLUMNS})
    table["first_ns"] = first_ns
    table["last_ns"] = last_ns
    table["first_dir"] = d[first_pos]
    table["first_flags"] = flags[first_pos]
    # One bincount over (flow, direction) pairs instead of masked gathers per direction.
    pair = codes.astype(np.int64) * 2 + (~ab)
    pk = np.bincount(pair, minlength=2 * k).reshape(k, 2)
    by = np.bincount(pair, weights=wire, minlength=2 * k).reshape(k, 2)
    table["pk_ab"], table["pk_ba"] = pk[:, 0].astype(np.int64), pk[:, 1].astype(np.int64)
    table["by_ab"], table["by_ba"] = by[:, 0].astype(np.int64), by[:, 1].astype(np.int64)
    tcp = c["proto"] == 6
    syn_ns = np.full(k, NO_TS, np.int64)
    syn_dir = np.zeros(k, np.int8)
    synack_ns = np.full(k, NO_TS, np.int64)
    syn = np.flatnonzero(tcp & ((flags & (TCP_SYN | TCP_ACK)) == TCP_SYN))
    if syn.size:
        order = syn[np.lexsort((ts[syn], codes[syn]))][::-1]  # earliest SYN written last
        syn_ns[codes[order]] = ts[order]
        syn_dir[codes[order]] = d[order]
    synack = np.flatnonzero(tcp & ((flags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK)))
    if synack.size:
        np.minimum.at(synack_ns, codes[synack], ts[synack])
    table["syn_ns"], table["syn_dir"], table["synack_ns"] = syn_ns, syn_dir, synack_ns
    enc = np.zeros(k, np.int64)
    tunnelled = np.flatnonzero(encap)
    if tunnelled.size:
        np.bitwise_or.at(enc, codes[tunnelled], encap[tunnelled])
    table["encap"] = enc
    if kinds is not None:
        flat = codes.astype(np.int64) * n_kinds + kinds
        table["kb"] = np.bincount(flat, weights=wire, minlength=k * n_kinds).reshape(k, n_kinds).astype(np.int64)
        table["kp"] = np.bincount(flat, minlength=k * n_kinds).reshape(k, n_kinds).astype(np.int64)
    return table


def merge_tables(tables: list[Table]) -> Table:
    """Merge partial tables exactly (order of parts does not matter), with numpy only."""
    tables = [t for t in tables if t["key"].shape[0]]
    if len(tables) <= 1:
        return tables[0] if tables else {}
    cat = {name: np.concatenate([t[name] for t in tables]) for name in tables[0]}
    key = cat["key"]
    # The earliest packet decides the first direction, the earliest SYN the client: within each
    # key, rows sorted by time (ties in part order, lexsort is stable) and the first one taken.
    order = np.lexsort((cat["first_ns"], key))
    sk = key[order]
    starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
    if starts.shape[0] == key.shape[0]:
        return cat
    firsts = order[starts]
    out: Table = {"key": sk[starts]}
    for name in (*KEY_COLUMNS, "first_ns", "first_dir", "first_flags"):
        out[name] = cat[name][firsts]
    out["last_ns"] = np.maximum.reduceat(cat["last_ns"][order], starts)
    for name in (*SUM_COLUMNS, "kb", "kp"):
        if name in cat:
            out[name] = np.add.reduceat(cat[name][order], starts, axis=0)
    out["synack_ns"] = np.minimum.reduceat(cat["synack_ns"][order], starts)
    out["encap"] = np.bitwise_or.reduceat(cat["encap"][order], starts)
    by_syn = np.lexsort((cat["syn_ns"], key))[starts]  # same groups: the keys sort identically
    out["syn_ns"], out["syn_dir"] = cat["syn_ns"][by_syn], cat["syn_dir"][by_syn]
    return {name: out[name] for name in cat}


def table_frame(table: Table) -> pd.DataFrame:
    """A partial table as the DataFrame that travels between workers (kinds as kb_j/kp_j columns)."""
    if not table:
        return pd.DataFrame()
    cols = {name: v for name, v in table.items() if name not in ("key", "kb", "kp")}
    for name in ("kb", "kp"):
        if name in table:
            cols.update({f"{name}_{j}": table[name][:, j] for j in range(table[name].shape[1])})
    return pd.DataFrame(cols, index=pd.Index(table["key"], name="key"))


def frame_table(df: pd.DataFrame) -> Table:
    """The inverse of table_frame."""
    if df.empty:
        return {"key": np.zeros(0, np.uint64)}
    table: Table = {"key": df.index.to_numpy().astype(np.uint64)}
    table.update({name: df[name].to_numpy() for name in df.columns if not name.startswith(("kb_", "kp_"))})
    for name in ("kb", "kp"):
        cols = sorted((c for c in df.columns if c.startswith(name + "_")), key=lambda c: int(c[3:]))
        if cols:
            table[name] = np.column_stack([df[c].to_numpy() for c in cols])
    return table


def merge_partials(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Merge partial flow tables exactly (order of parts does not matter)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame()
    if len(parts) == 1:
        return parts[0]
    return table_frame(merge_tables([frame_table(p) for p in parts]))


def ip_text(hi: np.ndarray, lo: np.ndarray) -> list[str]:
    """Render 128-bit (hi, lo) addresses; IPv4-mapped values print as dotted quads."""
    cache: dict[tuple[int, int], str] = {}
    out = []
    for h, low in zip(hi.tolist(), lo.tolist(), strict=True):
        key = (h, low)
        s = cache.get(key)
        if s is None:
            if h == 0 and (low >> 32) == 0xFFFF:
                s = str(ipaddress.IPv4Address(low & 0xFFFFFFFF))
            else:
                s = str(ipaddress.IPv6Address((h << 64) | low))
            cache[key] = s
        out.append(s)
    return out


# ICMP request/reply pairs treated as one bidirectional conversation (Community ID v1 spec).
ICMP4_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
ICMP6_PAIRS = {128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135, 130: 131, 131: 130, 144: 145, 145: 144}


def community_id(src: str, dst: str, proto: int, sport: int, dport: int, seed: int = 0) -> str:
    """Community ID v1 of a flow (https://github.com/corelight/community-id-spec)."""
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    one_way = False
    if proto in (1, 58):
        pairs = ICMP4_PAIRS if proto == 1 else ICMP6_PAIRS
        if sport in pairs:
            dport = pairs[sport]
        else:
            one_way = True
    if not one_way and (s, sport) > (d, dport):
        s, d, sport, dport = d, s, dport, sport
    data = struct.pack("!H", seed) + s + d + struct.pack("!BB", proto, 0)
    if proto in (*PORTED_PROTOS, 1, 58):
        data += struct.pack("!HH", sport & 0xFFFF, dport & 0xFFFF)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")


def finalize(merged: pd.DataFrame, kind_names: tuple[str, ...] = ()) -> pd.DataFrame:
    """Turn the merged partial table into the flow table of the contract."""
    if merged.empty:
        return empty_flow_table(kind_names)
    m = merged
    has_syn = m["syn_ns"].to_numpy() != NO_TS
    client_is_a = np.where(has_syn, m["syn_dir"].to_numpy() == 0, m["first_dir"].to_numpy() == 0)

    def pick(a: str, b: str) -> np.ndarray:
        return np.where(client_is_a, m[a].to_numpy(), m[b].to_numpy())

    proto = m["proto"].to_numpy().astype(int)
    ported = np.isin(proto, PORTED_PROTOS)
    out = pd.DataFrame(
        {
            "transport": [TRANSPORT_NAMES.get(p, f"ip-{p}") for p in proto.tolist()],
            "ip_version": m["ver"].to_numpy().astype(np.int8),
            "client_ip": ip_text(pick("a_hi", "b_hi"), pick("a_lo", "b_lo")),
            "client_port": np.where(ported, pick("a_port", "b_port"), 0).astype(np.int32),
            "server_ip": ip_text(pick("b_hi", "a_hi"), pick("b_lo", "a_lo")),
            "server_port": np.where(ported, pick("b_port", "a_port"), 0).astype(np.int32),
            "first_ns": m["first_ns"].to_numpy(),
            "last_ns": m["last_ns"].to_numpy(),
            "packets_c2s": pick("pk_ab", "pk_ba"),
            "packets_s2c": pick("pk_ba", "pk_ab"),
            "bytes_c2s": pick("by_ab", "by_ba"),
            "bytes_s2c": pick("by_ba", "by_ab"),
        }
    )
    out["packets"] = out["packets_c2s"] + out["packets_s2c"]
    out["bytes"] = out["bytes_c2s"] + out["bytes_s2c"]
    syn, synack = m["syn_ns"].to_numpy(), m["synack_ns"].to_numpy()
    rtt_ok = has_syn & (synack != NO_TS) & (synack >= syn)
    out["tcp_rtt_ms"] = np.where(rtt_ok, (synack - syn) / 1e6, np.nan)
    first_flags = m["first_flags"].to_numpy().astype(int)
    out["community_id"] = [
        community_id(ci, si, p, (ff >> 8) if p in (1, 58) else cp, (ff & 0xFF) if p in (1, 58) else sp)
        for ci, si, p, cp, sp, ff in zip(
            out["client_ip"], out["server_ip"], proto.tolist(), out["client_port"].tolist(),
            out["server_port"].tolist(), first_flags.tolist(), strict=True,
        )
    ]
    out["encap"] = [R.encap_label(int(b)) for b in m["encap"].to_numpy().tolist()]
    for j, name in enumerate(kind_names):
        if f"kb_{j}" in m:
            # A kind's bytes are counted per packet; map A/B onto client/server isn't needed.
            out[f"kind_bytes_{name}"] = m[f"kb_{j}"].to_numpy()
            out[f"kind_packets_{name}"] = m[f"kp_{j}"].to_numpy()
    out["flow_key"] = merged.index.to_numpy()
    out["a_is_client"] = client_is_a
    out = out.sort_values(["first_ns", "flow_key"], kind="stable").reset_index(drop=True)
    out.insert(0, "flow_id", np.arange(len(out), dtype=np.int64))
    out["first_ts"] = out["first_ns"] / 1e9
    out["last_ts"] = out["last_ns"] / 1e9
    out = out.rename(columns={"first_ns": "first_ts_ns", "last_ns": "last_ts_ns"})
    lead = [c for c in FLOW_COLUMNS if c in out]
    return out[lead + [c for c in out.columns if c not in lead]]


def empty_flow_table(kind_names: tuple[str, ...] = ()) -> pd.DataFrame:
    cols = list(FLOW_COLUMNS)
    for name in kind_names:
        cols += [f"kind_bytes_{name}", f"kind_packets_{name}"]
    return pd.DataFrame({c: pd.Series(dtype="object") for c in [*cols, "flow_key", "a_is_client"]})
