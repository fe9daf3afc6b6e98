"""Fold session digests into campaign tables, one session at a time.

Memory grows with the number of distinct (group, role, country) cells and one small row per
session, never with flows: 10,000 sessions are 10,000 digests folded and dropped. Per-session
rows (routes, key exchange, media, findings) go to Parquet files in chunks as they arrive.

Counts are kept at the finest grain (app, vantage, date and the requested groups), so that the
tables per requested group, the charts (per app, per vantage, per date) and the diff are sums of
it: groups are disjoint sets of sessions, so session counts add up.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

CHUNK_ROWS = 20_000
SESSION_TABLES = {
    "session_routes": ("session", "app", "role", "country", "bytes", "flows"),
    "session_key_exchange": ("session", "app", "country", "location_confidence", "protocol", "hostname", "asn",
                             "bytes"),
    "session_media": ("session", "app", "protocol", "country", "asn", "org", "bytes", "streams", "ecb_like",
                      "unencrypted_like"),
    "session_findings": ("session", "code", "severity"),
}


class _Spool:
    """Rows appended to one Parquet file in chunks (or nowhere when there is no output folder)."""

    def __init__(self, path: Path | None, columns: tuple[str, ...]) -> None:
        self.path, self.columns = path, columns
        self.rows: list[tuple] = []
        self.writer: Any = None
        self.count = 0

    def add(self, row: tuple) -> None:
        self.count += 1
        if self.path is None:
            return
        self.rows.append(row)
        if len(self.rows) >= CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.path is None or (not self.rows and self.writer is not None):
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols = list(zip(*self.rows, strict=True)) if self.rows else [()] * len(self.columns)
        arrays = [pa.array([_cell(v) for v in c]) if c else pa.nulls(0, pa.string()) for c in cols]
        # Types from the first chunk would vary (all-null columns): text for labels, int64 counts.
        schema = pa.schema([(n, pa.int64() if n in _INT_COLUMNS else pa.string()) for n in self.columns])
        table = pa.Table.from_arrays([a.cast(f.type) for a, f in zip(arrays, schema, strict=True)], schema=schema)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, schema)
        self.writer.write_table(table)
        self.rows = []

    def close(self) -> None:
        self.flush()
        if self.writer is not None:
            self.writer.close()


_INT_COLUMNS = {"bytes", "flows", "asn", "streams", "ecb_like", "unencrypted_like", "sessions", "packets"}


def _cell(v: Any) -> Any:
    if v is None or isinstance(v, int | str):
        return v
    return str(v)


class Aggregator:
    """Campaign counts, fed one session at a time (`add`), read as pandas frames at the end."""

    def __init__(self, grain: list[str], spool_dir: Path | None = None) -> None:
        self.grain = grain
        self.sessions: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self.routes: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])  # bytes, sessions, flows
        self.kx: dict[tuple, list[Any]] = defaultdict(lambda: [0, 0, Counter()])  # sessions, bytes, hostnames
        self.media: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
        self.findings: dict[tuple, int] = Counter()
        # (app, vantage, role) -> countries of each session (frozenset) -> session names (first few).
        self.routesets: dict[tuple, dict[frozenset, list[Any]]] = defaultdict(dict)
        self.spools = {n: _Spool(spool_dir / f"{n}.parquet" if spool_dir else None, cols)
                       for n, cols in SESSION_TABLES.items()}

    def add(self, session: dict[str, Any], labels: dict[str, str], digest: dict[str, Any]) -> None:
        name = session["session"]
        self.sessions.append(session)
        g = tuple(labels.get(k, "") for k in self.grain)
        app = labels.get("app", "unknown")
        routes = digest.get("routes") or {}
        rows = routes.get(app)
        if rows is None:  # the classifier did not see the labelled app: every flow counts
            merged: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
            for r in routes.values():
                for role, country, b, n in r:
                    merged[(role, country)][0] += b
                    merged[(role, country)][1] += n
            rows = [[r, c, b, n] for (r, c), (b, n) in merged.items()]
        per_role: dict[str, set[str]] = defaultdict(set)
        for role, country, b, n in rows:
            cell = self.routes[(*g, role, country)]
            cell[0] += b
            cell[1] += 1
            cell[2] += n
            per_role[role].add(country)
            self.spools["session_routes"].add((name, app, role, country, b, n))
        for role, ccs in per_role.items():
            seen = self.routesets[(app, labels.get("vantage", "unknown"), role)].setdefault(frozenset(ccs), [0, []])
            seen[0] += 1
            # The first five names in order (not in arrival order, which differs run to run).
            if len(seen[1]) < 5 or name < seen[1][-1]:
                seen[1] = sorted([*seen[1], name])[:5]
        kx_seen: set[tuple] = set()
        for k in digest.get("key_exchange") or []:
            key = (*g, k["country"], k.get("location_confidence") or "")
            cell = self.kx[key]
            if key not in kx_seen:
                cell[0] += 1
                kx_seen.add(key)
            cell[1] += k.get("bytes") or 0
            if k.get("hostname") and len(cell[2]) < 50:
                cell[2][str(k["hostname"])] += 1
            self.spools["session_key_exchange"].add((name, k.get("app"), k["country"], k.get("location_confidence"),
                                                     k.get("protocol"), k.get("hostname"), k.get("asn"),
                                                     k.get("bytes")))
        m_seen: set[tuple] = set()
        for m in digest.get("media") or []:
            key = (*g, str(m.get("protocol")), m["country"], m.get("asn") or 0, str(m.get("org") or ""))
            cell = self.media[key]
            if key not in m_seen:
                cell[0] += 1
                m_seen.add(key)
            for i, f in enumerate(("bytes", "streams", "ecb_like", "unencrypted_like"), 1):
                cell[i] += m.get(f) or 0
            self.spools["session_media"].add((name, m.get("app"), m.get("protocol"), m["country"], m.get("asn"),
                                              m.get("org"), m.get("bytes"), m.get("streams"), m.get("ecb_like"),
                                              m.get("unencrypted_like")))
        for code, sev in {(f["code"], f["severity"]) for f in digest.get("findings") or []}:
            self.findings[(*g, code, sev)] += 1
        for f in digest.get("findings") or []:
            self.spools["session_findings"].add((name, f["code"], f["severity"]))

    def close(self) -> None:
        for s in self.spools.values():
            s.close()

    # ---- frames ------------------------------------------------------------------------------

    def fine_routes(self) -> pd.DataFrame:
        cols = [*self.grain, "role", "country", "bytes", "sessions", "flows"]
        return pd.DataFrame([(*k, *v) for k, v in self.routes.items()], columns=cols)

    def fine_key_exchange(self) -> pd.DataFrame:
        cols = [*self.grain, "country", "location_confidence", "sessions", "bytes", "hostnames"]
        return pd.DataFrame([(*k, v[0], v[1], sorted(v[2])) for k, v in self.kx.items()], columns=cols)

    def fine_media(self) -> pd.DataFrame:
        cols = [*self.grain, "protocol", "country", "asn", "org", "sessions", "bytes", "streams", "ecb_like",
                "unencrypted_like"]
        return pd.DataFrame([(*k, *v) for k, v in self.media.items()], columns=cols)

    def fine_findings(self) -> pd.DataFrame:
        cols = [*self.grain, "code", "severity", "sessions"]
        return pd.DataFrame([(*k, v) for k, v in self.findings.items()], columns=cols)

    def consistency(self) -> pd.DataFrame:
        """Calls of one app from one vantage whose roles reached different countries."""
        rows = []
        for (app, vantage, role), sets in sorted(self.routesets.items()):
            n = sum(v[0] for v in sets.values())
            count: Counter = Counter()
            for ccs, (k, _names) in sets.items():
                for c in ccs:
                    count[c] += k
            always = sorted(c for c, k in count.items() if k == n)
            sometimes = {c: k for c, k in sorted(count.items()) if k < n}
            rows.append({
                "app": app, "vantage": vantage, "role": role, "sessions": n, "routes": len(sets),
                "consistent": len(sets) == 1, "always": always, "sometimes": sometimes,
                "examples": dict(sorted((",".join(sorted(ccs)) or "-", names) for ccs, (_k, names) in sets.items())),
            })
        return pd.DataFrame(rows, columns=["app", "vantage", "role", "sessions", "routes", "consistent", "always",
                                           "sometimes", "examples"])


def regroup(fine: pd.DataFrame, by: list[str], keys: list[str], sums: list[str]) -> pd.DataFrame:
    """Sum a fine-grain frame over the groups `by` (+ `keys`)."""
    if fine.empty:
        return pd.DataFrame(columns=[*by, *keys, *sums])
    return fine.groupby([*by, *keys], dropna=False, sort=True)[sums].sum().reset_index()


def with_share(df: pd.DataFrame, by: list[str], col: str = "bytes") -> pd.DataFrame:
    """Add `share`: this row's part of its group's (by) total."""
    out = df.copy()
    if out.empty:
        out["share"] = pd.Series(dtype=float)
        return out
    total = out.groupby(by, dropna=False)[col].transform("sum")
    out["share"] = (out[col] / total.where(total > 0)).fillna(0.0).round(6)
    return out
