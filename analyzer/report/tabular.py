"""flows.csv (safe to open in a spreadsheet) and flows.parquet (typed, for pipelines).

Parquet choice: list columns (roles, ...) are `list<string>`; `bytes_by_role` (role -> bytes, the
same value type for every flow) is `map<string, int64>`, so DuckDB, Spark and R can query
`bytes_by_role['media']` directly (pandas reads a map as a list of (key, value) tuples;
`dict(v)` gives the dict back). Other dict columns, whose values vary in type, are JSON text;
their names are in the schema metadata key `confscope.json_columns`. The map column is declared
whatever the flows hold (batch datasets declare the same type in analyzer/batch/schema.py).
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import pyarrow as pa

from analyzer.errors import OptionError
from analyzer.report.sanitize import csv_cell, json_text, text, to_plain, visible

JSON_COLUMNS_KEY = b"confscope.json_columns"
# Dict columns with string keys and integer values, written as Parquet map<string, int64>.
MAP_COLUMNS = ("bytes_by_role",)


def _is_missing(v: Any) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    return isinstance(v, float) and v != v


def _kind(series: pd.Series) -> str:
    """'list', 'dict', 'bytes' or 'text' for an object column, from its non-missing values."""
    values = [v for v in series if not _is_missing(v)]
    if values and all(isinstance(v, list | tuple | np.ndarray | set | frozenset) for v in values):
        return "list"
    if values and all(isinstance(v, dict) for v in values):
        return "dict"
    if values and all(isinstance(v, bytes | bytearray | memoryview) for v in values):
        return "bytes"
    return "text"


def _json_text(v: Any) -> str | None:
    if _is_missing(v):
        return None
    return json.dumps(to_plain(v), ensure_ascii=False, sort_keys=True, allow_nan=False)


def _object_columns(flows: pd.DataFrame) -> dict[str, str]:
    """Kinds of the columns that can hold captured text or nested values (object and string dtypes;
    pandas 3 gives text columns the `str` dtype rather than object)."""
    return {
        c: _kind(flows[c])
        for c in flows.columns
        if flows[c].dtype == object or isinstance(flows[c].dtype, pd.StringDtype | pd.CategoricalDtype)
    }


def csv_frame(flows: pd.DataFrame) -> pd.DataFrame:
    """The flows as written to CSV: nested values as JSON text, formula-starting strings quoted."""
    out = flows.copy()
    for col, kind in _object_columns(flows).items():
        if kind in ("list", "dict"):
            out[col] = [csv_cell(_json_text(v)) for v in flows[col]]
        elif kind == "bytes":
            out[col] = [None if _is_missing(v) else bytes(v).hex() for v in flows[col]]
        else:
            out[col] = [
                None if _is_missing(v) else csv_cell(v if isinstance(v, str) else text(v)) for v in flows[col]
            ]
    out.columns = [csv_cell(str(c)) for c in out.columns]
    return out


def write_csv(flows: pd.DataFrame, path: str | Path) -> Path:
    """Write flows.csv (UTF-8, CRLF rows); no text cell starts with = + - @ tab or CR."""
    path = Path(path)
    # RFC 4180 line ends: with "\r\n" as terminator the writer quotes any field holding a CR or LF,
    # so a captured string cannot start a new row.
    csv_frame(flows).to_csv(path, index=False, encoding="utf-8", lineterminator="\r\n")
    return path


def parquet_table(flows: pd.DataFrame) -> pa.Table:
    """The flows as an Arrow table with stable types (see the module docstring)."""
    import pyarrow as pa  # only parquet output needs it (and its import costs memory)

    arrays: list[pa.Array] = []
    names: list[str] = []
    json_cols: list[str] = []
    kinds = _object_columns(flows)
    for col in flows.columns:
        series = flows[col]
        kind = kinds.get(col)
        if col in MAP_COLUMNS:
            values = [
                None if _is_missing(v) else [(visible(k), int(n)) for k, n in to_plain(v).items()]
                if isinstance(v, dict)
                else None
                for v in series
            ]
            arr = pa.array(values, type=pa.map_(pa.string(), pa.int64()))
        elif kind == "list":
            values = [None if _is_missing(v) else [visible(x) for x in to_plain(v)] for v in series]
            arr = pa.array(values, type=pa.list_(pa.string()))
        elif kind == "dict":
            arr = pa.array([json_text(t) if (t := _json_text(v)) else t for v in series], type=pa.string())
            json_cols.append(str(col))
        elif kind == "bytes":
            arr = pa.array([None if _is_missing(v) else bytes(v) for v in series], type=pa.binary())
        elif kind == "text":
            # Captured text is shown as it would display (see sanitize.visible): readers of a shared
            # dataset print cells to terminals and notebooks without escaping them.
            arr = pa.array([None if _is_missing(v) else visible(v) for v in series], type=pa.string())
        else:
            arr = pa.Array.from_pandas(series)
        arrays.append(arr)
        names.append(str(col))
    table = pa.Table.from_arrays(arrays, names=names)
    meta = dict(table.schema.metadata or {})
    meta[JSON_COLUMNS_KEY] = json.dumps(json_cols).encode()
    return table.replace_schema_metadata(meta)


def write_parquet(flows: pd.DataFrame, path: str | Path, schema: pa.Schema | None = None) -> Path:
    """Write flows.parquet keeping numeric types, lists as list<string>, bytes_by_role as a map,
    other dicts as JSON text; with `schema`, exactly its columns and types (see `typed_table`)."""
    path = Path(path)
    import pyarrow.parquet as pq

    pq.write_table(parquet_table(flows) if schema is None else typed_table(flows, schema), path)
    return path


def write_flow_table(flows: pd.DataFrame, fmt: str, output: str) -> None:
    """Write csv/json/parquet to a file, or csv/json to standard output for '-'."""
    if fmt == "parquet":
        if output == "-":
            raise OptionError("parquet needs an output file: -o FILE.parquet")
        write_parquet(flows, output)
        return
    if fmt == "csv":
        if output == "-":
            buf = io.StringIO()
            csv_frame(flows).to_csv(buf, index=False, lineterminator="\r\n")
            sys.stdout.write(buf.getvalue())
        else:
            write_csv(flows, output)
        return
    # Invisible and format characters as \\u escapes: same data, nothing hidden on a terminal.
    text = json_text(flows.to_json(orient="records", force_ascii=False, default_handler=str))
    if output == "-":
        sys.stdout.write(text + "\n")
    else:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")


def typed_table(df: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """`df` as an Arrow table of exactly `schema`: every declared column (all-null when `df` lacks
    it), each value converted to the declared type, so that tables written from different captures
    share one schema. Values that do not fit (a string in an integer column) become null rather
    than failing the table: captured data is hostile."""
    import pyarrow as pa

    arrays = []
    n = len(df)
    for f in schema:
        if f.name in df.columns:
            arrays.append(pa.array(_convert(list(df[f.name]), f.type), type=f.type))
        else:
            arrays.append(pa.nulls(n, type=f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _convert(values: list[Any], t: pa.DataType) -> list[Any]:
    import pyarrow as pa

    if pa.types.is_map(t):
        conv = _scalar(t.item_type)
        return [None if _is_missing(v) or not isinstance(v, dict) else
                [(text(k), conv(x)) for k, x in v.items()] for v in values]
    if pa.types.is_list(t):
        item = t.value_type
        if pa.types.is_struct(item):
            names = [item.field(i).name for i in range(item.num_fields)]
            convs = [_scalar(item.field(i).type) for i in range(item.num_fields)]

            def one(x: Any) -> Any:
                x = to_plain(x)
                if isinstance(x, dict):
                    return {k: c(x.get(k)) for k, c in zip(names, convs, strict=True)}
                if isinstance(x, list):
                    return {k: c(x[i]) if i < len(x) else None for i, (k, c) in enumerate(zip(names, convs,
                                                                                            strict=True))}
                return None
        else:
            one = _scalar(item)
        return [None if _is_missing(v) or not isinstance(v, list | tuple | set | frozenset | np.ndarray)
                else [one(x) for x in to_plain(v)] for v in values]
    return [_scalar(t)(v) for v in values]


def _scalar(t: pa.DataType) -> Any:
    import pyarrow as pa

    def as_int(v: Any) -> int | None:
        if _is_missing(v) or isinstance(v, str | bytes):
            return None
        try:
            i = int(v)
        except (TypeError, ValueError, OverflowError):
            return None
        bits = t.bit_width
        lo, hi = (0, 2**bits - 1) if pa.types.is_unsigned_integer(t) else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        return i if lo <= i <= hi else None

    def as_float(v: Any) -> float | None:
        if _is_missing(v) or isinstance(v, str | bytes):
            return None
        try:
            return float(v)
        except (TypeError, ValueError):
            return None

    def as_bool(v: Any) -> bool | None:
        return None if _is_missing(v) or not isinstance(v, bool | np.bool_ | int | np.integer) else bool(v)

    def as_text(v: Any) -> str | None:
        if _is_missing(v):
            return None
        if isinstance(v, str):
            return v
        if isinstance(v, list | tuple | dict | set | frozenset | np.ndarray):
            return _json_text(v)
        return text(v)

    def as_time(v: Any) -> pd.Timestamp | None:
        if _is_missing(v) or not isinstance(v, pd.Timestamp | int | np.integer):
            return None
        return v if isinstance(v, pd.Timestamp) else pd.Timestamp(int(v), unit="ns", tz="UTC")

    if pa.types.is_timestamp(t):
        return as_time
    if pa.types.is_integer(t):
        return as_int
    if pa.types.is_floating(t):
        return as_float
    if pa.types.is_boolean(t):
        return as_bool
    return as_text
