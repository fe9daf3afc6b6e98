"""Differences between two flow tables (e.g. native vs tshark), keyed on the 5-tuple.

Flows are matched on (transport, unordered endpoint pair), so two engines that disagree only on
which side is the client still match; that disagreement is reported separately.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pandas as pd

EXIT_SAME, EXIT_DIFFERENT, EXIT_UNUSABLE = 0, 1, 2
DEFAULT_TRANSPORTS = ("tcp", "udp")


def flow_index(flows: pd.DataFrame, transports: tuple[str, ...] | None = DEFAULT_TRANSPORTS) -> pd.DataFrame:
    """One row per flow with a direction-free key `tuple5`; duplicate keys are summed."""
    cols = ["tuple5", "transport", "client_ip", "client_port", "server_ip", "server_port", "packets", "bytes"]
    if flows is None or flows.empty:
        empty = ["tuple5", "transport", "client", "server_ip", "server_port", "packets", "bytes", "rows"]
        return pd.DataFrame({c: pd.Series(dtype="object") for c in empty}).set_index("tuple5")
    f = flows
    if transports is not None:
        f = f[f["transport"].isin(transports)]
    c = list(zip(f["client_ip"].astype(str), f["client_port"].astype(int), strict=True))
    s = list(zip(f["server_ip"].astype(str), f["server_port"].astype(int), strict=True))
    keys = [
        f"{t} {min(a, b)[0]}:{min(a, b)[1]} {max(a, b)[0]}:{max(a, b)[1]}"
        for t, a, b in zip(f["transport"], c, s, strict=True)
    ]
    out = f[cols[1:]].copy()
    out["tuple5"] = keys
    out["client"] = [f"{ip}:{port}" for ip, port in c]
    agg = out.groupby("tuple5").agg(
        transport=("transport", "first"),
        client=("client", "first"),
        server_ip=("server_ip", "first"),
        server_port=("server_port", "first"),
        packets=("packets", "sum"),
        bytes=("bytes", "sum"),
        rows=("packets", "size"),
    )
    return agg


@dataclass
class FlowDiff:
    """What differs between flow tables `a` and `b` (names say which engine each is)."""

    name_a: str
    name_b: str
    total_a: int
    total_b: int
    equal_flows: int  # same 5-tuple and same packet count
    only_a: pd.DataFrame = field(repr=False)
    only_b: pd.DataFrame = field(repr=False)
    packet_diffs: pd.DataFrame = field(repr=False)  # tuple5 -> packets_a, packets_b
    client_diffs: pd.DataFrame = field(repr=False)  # tuple5 -> client_a, client_b

    @property
    def identical(self) -> bool:
        return not (len(self.only_a) or len(self.only_b) or len(self.packet_diffs))

    def summary(self, limit: int = 20) -> str:
        lines = [
            f"{self.name_a}: {self.total_a} flows, {self.name_b}: {self.total_b} flows; "
            f"{self.equal_flows} equal (5-tuple and packets)",
        ]
        for title, df, cols in (
            (f"only in {self.name_a}", self.only_a, ["packets"]),
            (f"only in {self.name_b}", self.only_b, ["packets"]),
            ("packet counts differ", self.packet_diffs, [f"packets_{self.name_a}", f"packets_{self.name_b}"]),
            ("client side differs", self.client_diffs, [f"client_{self.name_a}", f"client_{self.name_b}"]),
        ):
            if not len(df):
                continue
            lines.append(f"{title}: {len(df)}")
            for key, row in df.head(limit).iterrows():
                lines.append(f"  {key}  " + "  ".join(f"{c}={row[c]}" for c in cols))
            if len(df) > limit:
                lines.append(f"  ... {len(df) - limit} more")
        if self.identical:
            lines.append("no differences")
        return "\n".join(lines)


def compare_flows(
    a: pd.DataFrame,
    b: pd.DataFrame,
    *,
    transports: tuple[str, ...] | None = DEFAULT_TRANSPORTS,
    names: tuple[str, str] = ("native", "tshark"),
) -> FlowDiff:
    """Compare two flow tables on 5-tuples and packets per flow (`transports=None`: all flows)."""
    ia, ib = flow_index(a, transports), flow_index(b, transports)
    na, nb = names
    both = ia.index.intersection(ib.index)
    pa, pb = ia.loc[both, "packets"], ib.loc[both, "packets"]
    differ = both[(pa != pb).to_numpy()]
    packet_diffs = pd.DataFrame(
        {f"packets_{na}": ia.loc[differ, "packets"], f"packets_{nb}": ib.loc[differ, "packets"]}
    )
    ca, cb = ia.loc[both, "client"], ib.loc[both, "client"]
    cdiff = both[(ca != cb).to_numpy()]
    client_diffs = pd.DataFrame({f"client_{na}": ia.loc[cdiff, "client"], f"client_{nb}": ib.loc[cdiff, "client"]})
    return FlowDiff(
        name_a=na,
        name_b=nb,
        total_a=len(ia),
        total_b=len(ib),
        equal_flows=len(both) - len(differ),
        only_a=ia.loc[ia.index.difference(ib.index)],
        only_b=ib.loc[ib.index.difference(ia.index)],
        packet_diffs=packet_diffs,
        client_diffs=client_diffs,
    )


def run_verify(path: str | os.PathLike, timeout: float | None = None) -> tuple[str, int]:
    """`confscope verify CAPTURE`: (text to print, exit code 0 same / 1 different / 2 unusable).

    tshark's output is streamed and bounded (engines/tshark.py: MAX_PACKETS, gzip through the
    native reader's bounds) and tshark is stopped after `timeout` seconds (default TIMEOUT_S)."""
    from analyzer.engines import build_flows
    from analyzer.engines.tshark import TIMEOUT_S, tshark_flows

    # An unusable capture or a missing tshark raise ConfscopeError: the CLI prints it like every
    # other command's error (one line on stderr, exit 2 = EXIT_UNUSABLE).
    native = build_flows(path, engine="native")
    other = tshark_flows(path, timeout=TIMEOUT_S if timeout is None else timeout)
    diff = compare_flows(native, other, transports=DEFAULT_TRANSPORTS)
    allflows = compare_flows(native, other, transports=None)
    text = (
        f"{os.fspath(path)}: TCP/UDP flows\n{diff.summary()}\n"
        f"all transports: {allflows.equal_flows} of {allflows.total_a} native flows equal in tshark"
    )
    return text, EXIT_SAME if diff.identical else EXIT_DIFFERENT
