"""A campaign: many sessions (captures, or finished batch folders) compared across apps, vantages,
dates and any label of the study's manifest.

    campaign(inputs, manifest=None, output=None, by=("app", "vantage", "date"), diff=None, ...)

Captures are analysed first into OUT/batch (a batch folder: resumable). The session reports are
then read in parallel (local processes or a Dask cluster), each reduced to a digest
(campaign/digest.py) and folded into the campaign's counts (campaign/aggregate.py) as it arrives.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analyzer import __version__
from analyzer.batch.run import MANIFEST, MANIFEST_SCHEMA, load_manifest, run_batch
from analyzer.campaign.aggregate import Aggregator, regroup, with_share
from analyzer.campaign.diff import diff as diff_frames
from analyzer.campaign.diff import parse_diff
from analyzer.campaign.digest import digest_many
from analyzer.campaign.labels import STANDARD, Matcher, manifest_captures, read_manifest, session_labels
from analyzer.errors import OptionError
from analyzer.scan.parallel import default_workers, run_unordered

SCHEMA = "confscope.campaign/1"
GRAIN = ("app", "vantage", "date")
TABLE_NAMES = ("sessions", "countries", "key_exchange", "media", "findings", "consistency", "diff")


@dataclass
class Campaign:
    """The comparison as pandas frames (one per table) plus the JSON document (`campaign.json`)."""

    sessions: pd.DataFrame
    countries: pd.DataFrame
    key_exchange: pd.DataFrame
    media: pd.DataFrame
    findings: pd.DataFrame
    consistency: pd.DataFrame
    diff: pd.DataFrame
    failures: pd.DataFrame
    by: list[str]
    fine: dict[str, pd.DataFrame] = field(default_factory=dict)  # at (app, vantage, date, by) grain
    meta: dict[str, Any] = field(default_factory=dict)
    output: Path | None = None

    @property
    def inconsistent(self) -> pd.DataFrame:
        """Same app, same vantage, different countries (per role)."""
        return self.consistency[~self.consistency["consistent"].astype(bool)] if len(self.consistency) else \
            self.consistency

    def to_dict(self) -> dict[str, Any]:
        from analyzer.common.plain import to_plain

        def records(df: pd.DataFrame) -> list[dict[str, Any]]:
            return to_plain(df.to_dict(orient="records"))

        return {
            "schema": SCHEMA,
            "tool": {"name": "confscope", "version": __version__},
            **self.meta,
            "group_by": self.by,
            "totals": {"sessions": len(self.sessions), "failed": len(self.failures),
                       "inconsistent": len(self.inconsistent)},
            **{t: records(getattr(self, t)) for t in TABLE_NAMES},
            "failures": records(self.failures),
        }

    def write(self, out: str | os.PathLike) -> dict[str, Path]:
        """campaign.json, campaign.md, campaign.html and tables/<name>.parquet into `out`."""
        from analyzer.campaign.render import to_html, to_markdown
        from analyzer.report.tabular import write_parquet

        out = Path(out)
        (out / "tables").mkdir(parents=True, exist_ok=True)
        doc = self.to_dict()
        written = {}
        for name, text in (("json", json.dumps(doc, indent=1, default=str)), ("md", to_markdown(self)),
                           ("html", to_html(self))):
            path = out / f"campaign.{name}"
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
            written[name] = path
        for t in TABLE_NAMES:
            df = getattr(self, t)
            written[t] = write_parquet(df, out / "tables" / f"{t}.parquet")
        return written


def _is_batch_folder(p: Path) -> bool:
    return p.is_dir() and (p / MANIFEST).is_file() and load_manifest(p).get("schema") == MANIFEST_SCHEMA and \
        bool(load_manifest(p)["captures"])


def _batch_sessions(folder: Path) -> list[dict[str, Any]]:
    """The analysed sessions of a batch folder: name, capture path, report.json."""
    out = []
    for name, e in sorted(load_manifest(folder)["captures"].items()):
        if not isinstance(e, dict) or e.get("error"):
            continue
        report = folder / name / "report.json"
        if report.is_file():
            html = folder / name / "report.html"
            out.append({"name": name, "capture": e.get("path"), "report": str(report),
                        "html": str(html) if html.is_file() else None})
    return out


def campaign(
    inputs: str | os.PathLike | Iterable[str | os.PathLike] = (),
    *,
    manifest: str | os.PathLike | None = None,
    output: str | os.PathLike | None = None,
    by: Sequence[str] = GRAIN,
    diff: str | tuple[str, str, str] | None = None,
    workers: int | None = None,
    scheduler: Any = None,
    force: bool = False,
    chunk: int | None = None,
    **options: Any,
) -> Campaign:
    """Compare many calls. `inputs`: captures, directories of captures, or batch folders (made by
    `confscope batch`); with none, the captures the manifest names. `manifest`: CSV or TOML
    (capture, app, vantage, date, label, any other column). `by`: the labels to group by.
    `diff`: "LABEL=A:B" (or a tuple): what appeared or disappeared from A to B. `output`: where
    to write (required when captures must be analysed: their reports go to OUTPUT/batch).
    `workers` / `scheduler`: local processes or a Dask scheduler address / Client. `options`:
    those of `analyzer.analyze`, for captures analysed here.

    >>> import tempfile
    >>> from analyzer.capture.demo import write_demo_capture
    >>> d = tempfile.mkdtemp(prefix="confscope-campaign-")
    >>> p = write_demo_capture(f"{d}/zoom.pcap")
    >>> c = campaign([p], output=f"{d}/out", workers=1)
    >>> c.sessions[["session", "app", "vantage", "date"]].values.tolist()
    [['zoom', 'zoom', 'US', '2020-04-04']]
    >>> c.countries.query("role == 'key_exchange'")[["country", "share"]].values.tolist()
    [['CN', 0.627784], ['US', 0.372216]]
    """
    t0 = time.perf_counter()
    by = [str(b).strip().lower() for b in by if str(b).strip()]
    if not by:
        raise OptionError("--by needs at least one label")
    diff_spec = parse_diff(diff) if isinstance(diff, str) else diff
    rows = read_manifest(manifest) if manifest else []
    known = list(dict.fromkeys([*STANDARD, *(k for r in rows for k in r if k != "capture")]))
    for b in [*by, *([diff_spec[0]] if diff_spec else [])]:
        if b not in known:
            raise OptionError(f"no such label {b!r} (known: {', '.join(known)})")
    items = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    if not items and manifest:
        items = manifest_captures(rows, manifest)
    if not items:
        raise OptionError("campaign: no inputs (give captures, batch folders or a manifest)")
    out = Path(os.path.abspath(output)) if output is not None else None
    # A campaign's own folder stands for the batch it analysed (OUT/batch).
    items = [Path(i) / "batch" if (Path(i) / "campaign.json").is_file() and _is_batch_folder(Path(i) / "batch")
             else i for i in items]
    folders = [Path(i) for i in items if _is_batch_folder(Path(i))]
    captures = [i for i in items if not _is_batch_folder(Path(i))]
    batch_failed: list[dict[str, Any]] = []
    if captures:
        if out is None:
            raise OptionError("campaign: analysing captures needs an output folder (their reports go there)")
        res = run_batch(captures, out / "batch", workers=workers, scheduler=scheduler, force=force,
                        formats=("json", "html"), **options)
        batch_failed = [{"capture": r["capture"], "path": r.get("path"), "error": r["error"]} for r in res.failed]
        folders.append(out / "batch")
    refs: list[dict[str, Any]] = []
    for f in dict.fromkeys(p.resolve() for p in folders):
        refs += _batch_sessions(f)
    # The same name from two batch folders: keep both, told apart by their folder.
    names = [r["name"] for r in refs]
    for r in refs:
        r["session"] = r["name"] if names.count(r["name"]) == 1 else f"{Path(r['report']).parents[1].name}/{r['name']}"
    matcher = Matcher(rows, manifest)
    grain = list(dict.fromkeys([*GRAIN, *by, *([diff_spec[0]] if diff_spec else [])]))
    spool = None
    if out is not None:
        spool = out / "tables"
        spool.mkdir(parents=True, exist_ok=True)
    agg = Aggregator(grain, spool)
    nworkers = workers or default_workers()
    size = chunk or max(1, min(200, len(refs) // (nworkers * 4) or 1))
    chunks = [[(r["session"], r["report"]) for r in refs[i:i + size]] for i in range(0, len(refs), size)]
    by_session = {r["session"]: r for r in refs}
    for _i, res, err in run_unordered(digest_many, [(c,) for c in chunks], workers=nworkers, scheduler=scheduler):
        if err is not None:
            agg.failures.append({"session": "", "report": "", "error": f"{type(err).__name__}: {err}"[:300]})
            continue
        for d in res:
            ref = by_session[d["name"]]
            if d.get("error"):
                agg.failures.append({"session": d["name"], "report": d["report"], "error": d["error"]})
                continue
            labels, guessed = session_labels(matcher.find(ref["name"], ref.get("capture") or d.get("capture_path")),
                                             d["inferred"])
            for k in grain:  # a label the manifest has for other sessions only
                if k not in labels:
                    labels[k] = "unknown"
            link = ref.get("html") or ref["report"]
            session = {"session": d["name"], "capture": ref.get("capture"),
                       "report": os.path.relpath(link, out) if out else link,
                       **labels, "inferred": guessed, "packets": d["packets"], "bytes": d["bytes"]}
            agg.add(session, labels, d)
    agg.close()
    result = _frames(agg, by, grain, diff_spec)
    result.meta = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "inputs": [str(i) for i in items],
        "manifest": str(manifest) if manifest else None,
        "manifest_unmatched": matcher.unmatched(),
        "captures_failed": batch_failed,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    result.output = out
    if out is not None:
        result.write(out)
    return result


def _frames(agg: Aggregator, by: list[str], grain: list[str], diff_spec: tuple[str, str, str] | None) -> Campaign:
    fine = {"routes": agg.fine_routes(), "key_exchange": agg.fine_key_exchange(), "media": agg.fine_media(),
            "findings": agg.fine_findings()}
    sessions = pd.DataFrame(agg.sessions)
    if sessions.empty:
        sessions = pd.DataFrame(columns=["session", "capture", "report", *STANDARD, "inferred", "packets", "bytes"])
    sessions = sessions.sort_values("session", kind="stable").reset_index(drop=True)
    countries = with_share(regroup(fine["routes"], by, ["role", "country"], ["bytes", "sessions", "flows"]),
                           [*by, "role"])
    kx = fine["key_exchange"]
    key_exchange = regroup(kx, by, ["country", "location_confidence"], ["sessions", "bytes"])
    if len(kx):
        hosts = kx.groupby([*by, "country", "location_confidence"], dropna=False)["hostnames"].agg(
            lambda s: sorted({h for v in s for h in v})[:20]).reset_index()
        key_exchange = key_exchange.merge(hosts, on=[*by, "country", "location_confidence"], how="left")
    else:
        key_exchange["hostnames"] = pd.Series(dtype=object)
    media = regroup(fine["media"], by, ["protocol", "country", "asn", "org"],
                    ["sessions", "bytes", "streams", "ecb_like", "unencrypted_like"])
    findings = regroup(fine["findings"], by, ["code", "severity"], ["sessions"])
    d = diff_frames(fine["routes"], fine["key_exchange"], fine["findings"], *diff_spec) if diff_spec else \
        pd.DataFrame(columns=["dimension", "a", "b", "app", "kind", "role", "item", "change", "sessions_a",
                              "sessions_b", "bytes_a", "bytes_b"])
    return Campaign(
        sessions=sessions, countries=countries, key_exchange=key_exchange, media=media, findings=findings,
        consistency=agg.consistency(), diff=d,
        failures=pd.DataFrame(agg.failures, columns=["session", "report", "error"]), by=by, fine=fine,
    )
