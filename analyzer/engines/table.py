"""Per-packet rows from an independent engine -> the flow table of docs/internals.md.

This is deliberately separate code from `analyzer.scan.flows` (plain pandas group-bys over text
addresses, its own Community ID): the cross-check engines must not share the native path's logic.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import struct

import numpy as np
import pandas as pd

from analyzer.scan.flows import FLOW_COLUMNS

# Columns every engine fills, one row per frame that yielded an IP header.
PACKET_COLUMNS = (
    "frame",  # 1-based frame number
    "ts_ns",  # integer nanoseconds
    "wirelen",  # original frame length
    "ver",  # 4 or 6
    "proto",  # innermost IP protocol number
    "src",
    "dst",  # innermost addresses as text
    "sport",
    "dport",  # -1 when unknown (fragment tails before attribution)
    "tcp_flags",  # -1 for non-TCP
    "icmp_type",
    "icmp_code",  # -1 for non-ICMP
    "frag_key",  # "" unless the packet is part of a fragmented datagram (src|dst|id)
    "frag_tail",  # True for non-first fragments
    "encap",  # comma-separated tunnel/link encapsulation names
)
NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6", 132: "sctp", 136: "udplite"}
PORTED = (6, 17, 132, 136)
ENCAP_ORDER = ("vlan", "mpls", "pppoe", "gre", "ip-in-ip", "gtp-u", "vxlan", "ppp", "erspan")
# Community ID v1: ICMP types that have a reverse type, so both directions share one ID.
ICMP4_REVERSE = {0: 8, 8: 0, 9: 10, 10: 9, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17}
ICMP6_REVERSE = {
    128: 129,
    129: 128,
    130: 131,
    131: 130,
    133: 134,
    134: 133,
    135: 136,
    136: 135,
    144: 145,
    145: 144,
}


def attribute_fragments(pk: pd.DataFrame) -> pd.DataFrame:
    """Give non-first fragments the ports of the latest earlier first fragment of their datagram,
    or, when the tail came first (common: senders emit the last fragment first), the next one."""
    tails = pk["frag_tail"].to_numpy(bool)
    if not tails.any():
        return pk
    pk = pk.sort_values("frame", kind="stable").reset_index(drop=True)
    tails = pk["frag_tail"].to_numpy(bool)
    heads = pk.loc[(pk["frag_key"] != "") & ~pk["frag_tail"], ["frame", "frag_key", "sport", "dport"]]
    t = pk.loc[tails, ["frame", "frag_key"]]
    back = pd.merge_asof(t, heads, on="frame", by="frag_key", direction="backward", allow_exact_matches=False)
    fwd = pd.merge_asof(t, heads, on="frame", by="frag_key", direction="forward", allow_exact_matches=False)
    sport = back["sport"].fillna(fwd["sport"]).fillna(-1).astype(np.int64).to_numpy()
    dport = back["dport"].fillna(fwd["dport"]).fillna(-1).astype(np.int64).to_numpy()
    pk.loc[tails, "sport"] = sport
    pk.loc[tails, "dport"] = dport
    # Ported protocols whose first fragment never appeared have no 5-tuple at all.
    orphan = tails & pk["proto"].isin(PORTED).to_numpy() & (pk["sport"].to_numpy() < 0)
    return pk.loc[~orphan]


def community_id_v1(src: str, dst: str, proto: int, sport: int, dport: int, seed: int = 0) -> str:
    """Community ID v1 (corelight community-id-spec): base64(SHA1(seed, ordered tuple))."""
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    ab, bb = a.packed, b.packed
    pa, pb = sport, dport
    ordered = True
    if proto in (1, 58):
        reverse = ICMP4_REVERSE if proto == 1 else ICMP6_REVERSE
        if sport in reverse:
            pb = reverse[sport]
        else:
            ordered = False  # one-way ICMP types keep their direction
    if ordered and (bb < ab or (bb == ab and pb < pa)):
        ab, bb, pa, pb = bb, ab, pb, pa
    blob = seed.to_bytes(2, "big") + ab + bb + bytes((proto, 0))
    if proto in (*PORTED, 1, 58):
        blob += struct.pack(">HH", pa & 0xFFFF, pb & 0xFFFF)
    return "1:" + base64.b64encode(hashlib.sha1(blob).digest()).decode()


def _endpoint_order(ip: pd.Series) -> pd.Series:
    """A sortable key per address (numeric within a family) to pick a canonical endpoint."""
    cache: dict[str, tuple[int, int]] = {}

    def k(text: str) -> tuple[int, int]:
        if text not in cache:
            a = ipaddress.ip_address(text)
            cache[text] = (a.version, int(a))
        return cache[text]

    return ip.map(k)


def packets_to_flows(pk: pd.DataFrame) -> pd.DataFrame:
    """Group packet rows into bidirectional flows (client = first sender, or SYN sender)."""
    # The same columns as the native table: the engines are compared column by column.
    cols = list(FLOW_COLUMNS)
    if pk.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in cols})
    pk = attribute_fragments(pk)
    pk = pk.sort_values(["ts_ns", "frame"], kind="stable").reset_index(drop=True)
    ported = pk["proto"].isin(PORTED)
    sport = pk["sport"].where(ported, 0)
    dport = pk["dport"].where(ported, 0)
    skey, dkey = _endpoint_order(pk["src"]), _endpoint_order(pk["dst"])
    src_first = [(s, sp) <= (d, dp) for s, sp, d, dp in zip(skey, sport, dkey, dport, strict=True)]
    src_first = np.array(src_first, dtype=bool)
    ep_a = np.where(src_first, pk["src"] + "|" + sport.astype(str), pk["dst"] + "|" + dport.astype(str))
    ep_b = np.where(src_first, pk["dst"] + "|" + dport.astype(str), pk["src"] + "|" + sport.astype(str))
    pk["key"] = pk["proto"].astype(str) + "/" + pd.Series(ep_a) + "/" + pd.Series(ep_b)
    pk["sender"] = pk["src"] + "|" + sport.astype(str)
    flags = pk["tcp_flags"]
    is_syn = (pk["proto"] == 6) & (flags >= 0) & ((flags & 0x12) == 0x02)
    is_synack = (pk["proto"] == 6) & (flags >= 0) & ((flags & 0x12) == 0x12)

    g = pk.groupby("key", sort=False)
    first_rows = g.head(1)
    first = first_rows.set_index("key")
    syn_first = pk[is_syn].groupby("key", sort=False).head(1).set_index("key")
    synack_ts = pk[is_synack].groupby("key", sort=False)["ts_ns"].min()

    out = first[["ver", "proto", "src", "dst", "ts_ns", "icmp_type", "icmp_code"]].copy()
    out["sport"] = sport[first_rows.index].to_numpy()
    out["dport"] = dport[first_rows.index].to_numpy()
    has_syn = out.index.isin(syn_first.index)
    # TCP: the SYN's sender is the client even if other packets were captured before it.
    for c_ in ("src", "dst"):
        out.loc[has_syn, c_] = syn_first[c_].reindex(out.index[has_syn]).to_numpy()
    syn_ports = syn_first[["sport", "dport"]].reindex(out.index[has_syn])
    out.loc[has_syn, "sport"] = syn_ports["sport"].to_numpy()
    out.loc[has_syn, "dport"] = syn_ports["dport"].to_numpy()
    syn_ts = syn_first["ts_ns"].reindex(out.index)
    out["client"] = out["src"] + "|" + out["sport"].astype(str)

    pk["c2s"] = pk["sender"].to_numpy() == out["client"].reindex(pk["key"]).to_numpy()
    c2s = pk[pk["c2s"]].groupby("key")
    s2c = pk[~pk["c2s"]].groupby("key")
    out["packets_c2s"] = c2s.size().reindex(out.index, fill_value=0)
    out["packets_s2c"] = s2c.size().reindex(out.index, fill_value=0)
    out["bytes_c2s"] = c2s["wirelen"].sum().reindex(out.index, fill_value=0)
    out["bytes_s2c"] = s2c["wirelen"].sum().reindex(out.index, fill_value=0)
    out["first_ts_ns"] = g["ts_ns"].min()
    out["last_ts_ns"] = g["ts_ns"].max()
    rtt = (synack_ts.reindex(out.index) - syn_ts) / 1e6
    out["tcp_rtt_ms"] = rtt.where(rtt >= 0)
    encaps = g["encap"].agg(lambda s: {e for v in s for e in v.split(",") if e})
    out["encap"] = [",".join(e for e in ENCAP_ORDER if e in names) for names in encaps.reindex(out.index)]

    proto = out["proto"].astype(int)
    icmp = proto.isin((1, 58))
    out["community_id"] = [
        community_id_v1(s, d, p, int(t) if ic else int(sp), int(c) if ic else int(dp))
        for s, d, p, sp, dp, t, c, ic in zip(
            out["src"],
            out["dst"],
            proto,
            out["sport"],
            out["dport"],
            out["icmp_type"],
            out["icmp_code"],
            icmp,
            strict=True,
        )
    ]
    table = pd.DataFrame(
        {
            "transport": [NAMES.get(p, f"ip-{p}") for p in proto],
            "ip_version": out["ver"].astype(np.int8).to_numpy(),
            "client_ip": out["src"].to_numpy(),
            "client_port": out["sport"].astype(np.int32).to_numpy(),
            "server_ip": out["dst"].to_numpy(),
            "server_port": out["dport"].astype(np.int32).to_numpy(),
            "first_ts_ns": out["first_ts_ns"].astype(np.int64).to_numpy(),
            "last_ts_ns": out["last_ts_ns"].astype(np.int64).to_numpy(),
            "packets_c2s": out["packets_c2s"].astype(np.int64).to_numpy(),
            "packets_s2c": out["packets_s2c"].astype(np.int64).to_numpy(),
            "bytes_c2s": out["bytes_c2s"].astype(np.int64).to_numpy(),
            "bytes_s2c": out["bytes_s2c"].astype(np.int64).to_numpy(),
            "tcp_rtt_ms": out["tcp_rtt_ms"].astype(float).to_numpy(),
            "community_id": out["community_id"].to_numpy(),
            "encap": out["encap"].to_numpy(),
        }
    )
    table["packets"] = table["packets_c2s"] + table["packets_s2c"]
    table["bytes"] = table["bytes_c2s"] + table["bytes_s2c"]
    table["first_ts"] = table["first_ts_ns"] / 1e9
    table["last_ts"] = table["last_ts_ns"] / 1e9
    table = table.sort_values("first_ts_ns", kind="stable").reset_index(drop=True)
    table["flow_id"] = np.arange(len(table), dtype=np.int64)
    return table[cols]
