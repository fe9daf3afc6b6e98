"""One schema for every table a batch (or campaign) writes, declared once.

A capture without STUN has no value in `stun_mapped`; without a fixed type the Parquet writer
would guess one from the values it sees (null, string or list), the partitions of a batch would
disagree and `pd.read_parquet(OUT/flows)` would fail. So every column of every table is declared
here with its type, and the writer (report/tabular.py) converts values to it.

A table is one declaration: a name, its columns, and where its rows come from (the flow table or
a list of the session report, `confscope.session/1`). Types are written as short names
(`TYPES`) so that importing this module does not import pyarrow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from analyzer.dissect import registry

if TYPE_CHECKING:
    import pyarrow as pa

# The column holding the capture's name: a hive partition key in a batch folder
# (OUT/<table>/capture=<name>/part-0.parquet), a plain column in a campaign's tables.
PARTITION = "capture"


def _types() -> dict[str, pa.DataType]:
    import pyarrow as pa

    addr = pa.struct([("ip", pa.string()), ("port", pa.int32())])
    # SDP a=rtpmap per m= endpoint (the flow fact sdp_rtpmap: ip, port, media, pt, encoding, clock)
    rtpmap = pa.struct([("ip", pa.string()), ("port", pa.int32()), ("media", pa.string()), ("pt", pa.int32()),
                        ("encoding", pa.string()), ("clock", pa.int64())])
    # one piece of location evidence of an endpoint (report endpoints[].evidence)
    evidence = pa.struct([("source", pa.string()), ("country", pa.string()), ("detail", pa.string())])
    return {
        "str": pa.string(),
        "bool": pa.bool_(),
        "i8": pa.int8(),
        "i32": pa.int32(),
        "i64": pa.int64(),
        "u64": pa.uint64(),
        "f64": pa.float64(),
        "list<str>": pa.list_(pa.string()),
        "list<i64>": pa.list_(pa.int64()),
        "list<addr>": pa.list_(addr),
        "list<rtpmap>": pa.list_(rtpmap),
        "list<evidence>": pa.list_(evidence),
        # bytes per role: keys vary per flow, values are byte counts.
        "map<str,i64>": pa.map_(pa.string(), pa.int64()),
        # the session's timezone-aware first_time/last_time beside the epoch columns
        "ts": pa.timestamp("ns", tz="UTC"),
    }


TYPE_NAMES = (
    "str", "bool", "i8", "i32", "i64", "u64", "f64", "list<str>", "list<i64>", "list<addr>", "list<rtpmap>",
    "list<evidence>", "map<str,i64>", "ts",
)


@dataclass(frozen=True)
class Table:
    """A table written per capture: its columns (name, type name) and its rows for one session."""

    name: str
    columns: tuple[tuple[str, str], ...]
    rows: Callable[[dict[str, Any], pd.DataFrame], pd.DataFrame | list[dict[str, Any]]]
    doc: str = ""

    @property
    def names(self) -> list[str]:
        return [c for c, _t in self.columns]

    def arrow_schema(self, partition: bool = False) -> pa.Schema:
        """The Arrow schema; with `partition`, the leading `capture` column too."""
        import pyarrow as pa

        types = _types()
        fields = [pa.field(c, types[t]) for c, t in self.columns]
        if partition:
            fields.insert(0, pa.field(PARTITION, pa.string()))
        return pa.schema(fields)

    def frame(self, report: dict[str, Any], flows: pd.DataFrame) -> pd.DataFrame:
        """This table's rows for one session, with exactly the declared columns (missing ones None)."""
        rows = self.rows(report, flows)
        df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        missing = [c for c in self.names if c not in df.columns]
        if missing:  # on a copy: the session's own frame stays as it is
            empty = pd.DataFrame({c: pd.Series([None] * len(df), index=df.index, dtype=object) for c in missing})
            df = pd.concat([df, empty], axis=1)
        return df[self.names]


def _kinds() -> tuple[tuple[str, str], ...]:
    # The payload kinds counted per flow (dissect/kinds.py): bytes and packets of each.
    from analyzer.dissect.kinds import KIND_NAMES

    return tuple((f"kind_{what}_{k}", "i64") for k in KIND_NAMES for what in ("bytes", "packets"))


FLOW_BASE = (
    ("flow_id", "i64"), ("transport", "str"), ("ip_version", "i8"), ("client_ip", "str"), ("client_port", "i32"),
    ("server_ip", "str"), ("server_port", "i32"), ("first_ts", "f64"), ("last_ts", "f64"), ("first_ts_ns", "i64"),
    ("first_time", "ts"), ("last_ts_ns", "i64"), ("last_time", "ts"), ("packets_c2s", "i64"), ("packets_s2c", "i64"),
    ("bytes_c2s", "i64"),
    ("bytes_s2c", "i64"), ("packets", "i64"), ("bytes", "i64"), ("tcp_rtt_ms", "f64"), ("community_id", "str"),
    ("encap", "str"),
)
# What classification adds, then the dissection facts as the protocol modules declare them
# (analyzer/dissect/registry.py; "protocol" is the classified one above).
FLOW_FACTS = (
    ("flow_key", "u64"), ("a_is_client", "bool"), ("app", "str"), ("app_confidence", "f64"),
    ("app_evidence", "list<str>"), ("protocol", "str"), ("hostname", "str"), ("roles", "list<str>"),
    ("bytes_by_role", "map<str,i64>"), ("other_by_kind", "map<str,i64>"),
    *((name, kind) for name, kind in registry.FACT_TYPES.items() if name != "protocol"),
)
FLOW_GEO = (
    ("server_country", "str"), ("server_asn", "i64"), ("server_org", "str"), ("server_scope", "str"),
    ("registered_country", "str"), ("geo_sources", "str"), ("geo_disagreement", "bool"), ("client_country", "str"),
    ("client_asn", "i64"), ("remote_ip", "str"), ("remote_country", "str"), ("remote_scope", "str"),
    ("remote_asn", "i64"), ("remote_org", "str"), ("min_rtt_ms", "f64"), ("geo_distance_km", "f64"),
    ("geo_bound_km", "f64"), ("geo_implausible", "bool"), ("server_country_confidence", "str"),
)

STREAM_COLUMNS = (
    ("verdict", "str"), ("verdict_reason", "str"), ("ssrc", "i64"), ("media_type", "str"), ("dir", "i64"),
    ("payload_type", "i64"), ("packets", "i64"), ("bytes", "i64"), ("duration_s", "f64"), ("bitrate_bps", "f64"),
    ("lost", "i64"), ("expected", "i64"), ("reordered", "i64"), ("jitter_ms", "f64"), ("ecb_blocks", "i64"),
    ("ecb_repeats", "i64"), ("ecb_like", "bool"), ("unencrypted_like", "bool"),
    # Frames, rates, clocks, RTCP and grouping (docs/media.md).
    ("stream_id", "i64"), ("meeting", "str"), ("participant", "str"), ("payload_types", "list<i64>"),
    ("wire_bytes", "i64"), ("udp_bytes", "i64"), ("payload_bytes", "i64"), ("payload_bitrate_bps", "f64"),
    ("rate_note", "str"), ("frames", "i64"), ("frames_marked", "i64"), ("frame_rate_fps", "f64"),
    ("frame_bytes_mean", "f64"), ("frame_bytes_std", "f64"), ("frame_bytes_min", "i64"), ("frame_bytes_max", "i64"),
    ("packets_per_frame", "f64"), ("loss_fraction", "f64"), ("duplicates", "i64"), ("clock_rate", "i64"),
    ("jitter_clock_assumed", "bool"), ("clock_source", "str"), ("sdp_encoding", "str"), ("frame_jitter_ms", "f64"),
    ("rtcp_sender_reports", "i64"), ("rtcp_rtt_samples", "i64"), ("rtcp_rtt_ms", "f64"),
)
_STREAM_FLOW = (
    ("flow_id", "i64"), ("app", "str"), ("protocol", "str"), ("server_ip", "str"), ("server_port", "i32"),
    ("country", "str"), ("asn", "i64"), ("org", "str"), ("location_confidence", "str"),
)


def _flow_rows(_report: dict[str, Any], flows: pd.DataFrame) -> pd.DataFrame:
    return flows


def _stream_rows(report: dict[str, Any], _flows: pd.DataFrame) -> list[dict[str, Any]]:
    # One row per media stream, with the flow it travelled on (where it went).
    out = []
    for m in report.get("media") or []:
        if not isinstance(m, dict):
            continue
        flow = {c: m.get(c) for c, _t in _STREAM_FLOW}
        out += [{**flow, **{c: s.get(c) for c, _t in STREAM_COLUMNS}} for s in m.get("streams") or []
                if isinstance(s, dict)]
    return out


def _list_rows(key: str) -> Callable[[dict[str, Any], pd.DataFrame], list[dict[str, Any]]]:
    def rows(report: dict[str, Any], _flows: pd.DataFrame) -> list[dict[str, Any]]:
        return [r for r in report.get(key) or [] if isinstance(r, dict)]

    return rows


def flow_table() -> Table:
    return Table("flows", FLOW_BASE + _kinds() + FLOW_FACTS + FLOW_GEO, _flow_rows,
                 "one row per flow: the session's flow table with its facts and geolocation")


TABLES: dict[str, Callable[[], Table]] = {
    "flows": flow_table,
    "media_streams": lambda: Table("media_streams", _STREAM_FLOW + STREAM_COLUMNS, _stream_rows,
                                   "one row per RTP/media stream, with the flow and country it went to"),
    "key_exchange": lambda: Table(
        "key_exchange",
        (("flow_id", "i64"), ("app", "str"), ("protocol", "str"), ("server_ip", "str"), ("server_port", "i32"),
         ("hostname", "str"), ("country", "str"), ("asn", "i64"), ("org", "str"), ("scope", "str"),
         ("bytes", "i64"), ("first_ts", "f64"), ("location_confidence", "str"), ("key_exchange_status", "str"),
         ("key_exchange_evidence", "str")),
        _list_rows("key_exchange"), "one row per flow where keys were exchanged"),
    "endpoints": lambda: Table(
        "endpoints",
        (("ip", "str"), ("country", "str"), ("confidence", "str"), ("evidence", "list<evidence>"),
         ("registered_country", "str"), ("asn", "i64"), ("org", "str"), ("hostnames", "list<str>"),
         ("min_rtt_ms", "f64"), ("anycast", "bool"), ("competing", "list<str>"), ("contradictions", "list<str>"),
         ("apps", "list<str>"), ("flows", "i64"), ("bytes", "i64")),
        _list_rows("endpoints"), "one row per remote public address: its location, confidence and evidence"),
    "findings": lambda: Table(
        "findings",
        (("code", "str"), ("severity", "str"), ("title", "str"), ("detail", "str"), ("flow_ids", "list<i64>"),
         ("confidence", "str"), ("evidence", "str")),
        _list_rows("findings"), "one row per finding"),
}


def table(name: str) -> Table:
    """The declaration of one table (KeyError for an unknown name)."""
    return TABLES[name]()


def batch_tables() -> list[Table]:
    return [table(n) for n in TABLES]
