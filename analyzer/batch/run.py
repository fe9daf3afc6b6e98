"""Many captures: the same per-capture task on a local process pool or a Dask cluster.

`analyze_many` is the Python API (a Dataset in memory); `run_batch` writes a batch folder
(report folders, Parquet datasets of one schema, a summary, a manifest for resuming), which
`confscope batch` (cli/batch.py) drives. Nothing here prints.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import resource
import shutil
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analyzer import __version__
from analyzer.batch.dataset import Dataset, build_dataset, session_summary
from analyzer.batch.schema import PARTITION, TABLES, batch_tables
from analyzer.capture.source import is_stream_path
from analyzer.common.files import MANIFEST_MAX_BYTES, FileTooLarge, read_bounded
from analyzer.common.hashing import file_sha256
from analyzer.errors import ConfscopeError, OptionError
from analyzer.report import write_reports
from analyzer.report.sanitize import one_line
from analyzer.scan.parallel import default_workers, run_unordered
from analyzer.session.anonymize import key_fingerprint
from analyzer.session.options import SESSION_OPTIONS, check_options

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz", ".cap.gz", ".dmp")
MANIFEST = "manifest.json"
MANIFEST_SCHEMA = "confscope.batch-manifest/1"
FLOWS_DATASET = "flows"
# Recorded per capture in the manifest: a capture written before the tables had one fixed schema
# is redone when resuming (its partitions would not match the others).
TABLES_VERSION = 2  # 2: the endpoints table
# A lone capture above this is split across the workers (`run_batch(split_min_bytes=)`,
# `confscope batch --split-min-mb`). A session's media tap is one sequential pass
# (analyzer/scan/scanner.py) and a split session has no media streams, so the default only splits
# very large files.
SPLIT_MIN_BYTES = 4 * 1024**3


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> tuple[list[str], list[str]]:
    """DIR (searched recursively for capture suffixes), GLOB or FILE -> (captures, unmatched).

    A FILE is taken whatever its name (a bad one fails alone); duplicates are dropped.
    """
    found: list[str] = []
    unmatched: list[str] = []
    for item in inputs:
        text = os.fspath(item)
        p = Path(text)
        if p.is_dir():
            hits = sorted(str(q) for q in p.rglob("*") if q.is_file() and q.name.lower().endswith(CAPTURE_SUFFIXES))
        elif p.exists():
            hits = [text]
        elif glob.has_magic(text):
            hits = sorted(q for q in glob.glob(text, recursive=True) if Path(q).is_file())
        else:
            hits = []
        if not hits:
            unmatched.append(text)
        found += hits
    seen: set[str] = set()
    out = []
    for f in found:
        key = os.path.realpath(f)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out, unmatched


def validate_options(options: dict[str, Any]) -> dict[str, Any]:
    """Check session options before any work starts; returns them normalised (the anonymisation
    key resolved from env:/file: forms, so workers need not see the environment)."""
    checked = check_options(options)
    return checked.as_options({k: options.get(k) for k in SESSION_OPTIONS})


def public_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options as written to summary.json: set ones only, the anonymisation key as `true`
    (the key inverts the pseudonyms, so neither it nor anything cheaply derived is written)."""
    out = {k: v for k, v in options.items() if v}
    if "anonymize" in out:
        out["anonymize"] = True
    return out


def options_hash(options: dict[str, Any], formats: Iterable[str] = ()) -> str:
    """What makes two runs on the same capture give the same report: the tool version, the
    options and the contents (not names) of the files they name."""

    def content(path: Any) -> str | None:
        return file_sha256(path) if path and Path(path).is_file() else None

    key = {
        "version": __version__,
        "allow": options.get("allow"),
        "region": options.get("region"),
        "vantage": options.get("vantage"),
        "policy": content(options.get("policy")),
        # Another key gives other pseudonyms: the key counts, through a stretched keyed fingerprint
        # only (a plain SHA-256 of a passphrase is cheap to brute-force).
        "anonymize": key_fingerprint(options["anonymize"]) if options.get("anonymize") else None,
        "anonymize_servers": bool(options.get("anonymize_servers")),
        "geoip": [content(g) for g in options.get("geoip") or []],
        "formats": sorted(formats),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def capture_task(spec: dict[str, Any]) -> dict[str, Any]:
    """Analyse one capture (or one merged set); never raises. Runs in a worker process.

    spec: capture (name), path (or paths), options; optional out_dir + formats (write reports),
    tables_dir (write this capture's partition of every table of batch/schema.py), tables (return
    the pandas tables), split_workers.
    """
    t0 = time.perf_counter()
    result: dict[str, Any] = {"capture": spec["capture"], "path": spec["path"], "error": None}
    try:
        session = _run_session(spec)
        report, flows = session.report, session.flows
        result["summary"] = session_summary(report, flows)
        if spec.get("out_dir"):
            out = Path(spec["out_dir"])
            write_reports(session.report, session.flows, out, spec.get("formats") or ("json",))
        if spec.get("tables_dir"):
            write_partitions(Path(spec["tables_dir"]), spec["capture"], report, flows)
        if spec.get("tables"):
            result["report"] = report
            result["tables"] = {
                "flows": flows,
                "countries": session.countries,
                "key_exchange": session.key_exchange,
                "media": session.media,
                "findings": session.findings,
            }
    except ConfscopeError as exc:
        result["error"] = _one_line(exc)
    except MemoryError:
        result["error"] = "out of memory"
    except Exception as exc:  # a bug must not stop the batch: keep the place it happened
        where = traceback.extract_tb(exc.__traceback__)[-1]
        result["error"] = _one_line(
            f"internal error {type(exc).__name__}: {exc} ({Path(where.filename).name}:{where.lineno})"
        )
    result["seconds"] = time.perf_counter() - t0
    result["pid"] = os.getpid()
    result["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return result


def partition_dir(root: Path, table_name: str, capture: str) -> Path:
    """OUT/<table>/capture=<name>: a hive partition, so every reader gets the `capture` column."""
    return root / table_name / f"{PARTITION}={capture}"


def write_partitions(root: Path, capture: str, report: dict[str, Any], flows: Any) -> None:
    """Write this capture's rows of every batch table, each with its declared schema. A table
    with no rows still gets a file: with fixed types an empty file agrees with the others, and
    its presence says "analysed, nothing of this kind" rather than "not analysed"."""
    from analyzer.report.tabular import write_parquet

    for t in batch_tables():
        part = partition_dir(root, t.name, capture)
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(parents=True, exist_ok=True)
        tmp = part / ".part-0.parquet.tmp"  # hidden: dataset readers skip it
        write_parquet(t.frame(report, flows), tmp, schema=t.arrow_schema())
        tmp.replace(part / "part-0.parquet")


def remove_partitions(root: Path, capture: str) -> None:
    for t in batch_tables():
        shutil.rmtree(partition_dir(root, t.name, capture), ignore_errors=True)


def _run_session(spec: dict[str, Any]) -> Any:
    options = spec["options"]
    if spec.get("paths"):
        from analyzer.session.multifile import analyze_files

        return analyze_files(spec["paths"], workers=spec.get("split_workers", 1), **options)
    if spec.get("split_workers", 1) > 1:
        from analyzer.session.multifile import analyze_split

        return analyze_split(spec["path"], workers=spec["split_workers"], **options)
    from analyzer.session.build import analyze

    return analyze(spec["path"], **options)


def _one_line(text: object) -> str:
    return one_line(str(text))


def capture_names(paths: list[str], reserved: dict[str, str] | None = None) -> list[str]:
    """Unique report-folder names (the stems `confscope analyze` uses); `reserved` maps a path to
    the name an earlier run gave it, so resumed runs keep their folders."""
    from analyzer.report import report_dir

    reserved = reserved or {}
    # The batch's own folders and files are not capture names (a capture called flows.pcap).
    used = set(reserved.values()) | set(TABLES) | {"summary", "campaign", "batch"}
    names = []
    for p in paths:
        if p in reserved:
            names.append(reserved[p])
        else:
            names.append(report_dir("", p, used).name)
    return names


def analyze_many(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    workers: int | None = None,
    scheduler: Any = None,
    worker_memory: int | None = None,
    **options: Any,
) -> Dataset:
    """Analyse many captures in parallel into one Dataset.

    `paths`: files, directories (searched recursively) or glob patterns. `workers`: local
    processes (default: the number of cores); `scheduler`: a Dask scheduler address
    ("tcp://host:8786") or a `distributed.Client`, used instead of local processes. `options`
    are those of `analyzer.analyze` (geoip, allow, region, policy, vantage), checked before any
    work starts. A capture that cannot be analysed is listed in `failures`, never raised; one
    whose worker process dies costs only itself (scan/parallel.py). `worker_memory` bounds each
    local worker's address space (bytes).

    >>> from analyzer.capture.demo import write_demo_capture
    >>> p = write_demo_capture("/tmp/confscope-many-doctest.pcap")
    >>> ds = analyze_many([p, "/tmp/confscope-no-such.pcap"], workers=1, region="north-america")
    >>> ds.sessions_with_violations, ds.failures["capture"].tolist()
    (['confscope-many-doctest'], ['confscope-no-such.pcap'])
    >>> ds.countries_per_app.set_index("app").loc["zoom", "countries"]
    ['CN', 'US']
    """
    opts = validate_options(options)
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    found, unmatched = expand_inputs(items)
    names = capture_names(found)
    specs = [{"capture": n, "path": p, "options": opts, "tables": True} for n, p in zip(names, found, strict=True)]
    results: list[dict[str, Any] | None] = [None] * len(specs)
    for i, res, err in run_unordered(
        capture_task, [(s,) for s in specs], workers=workers or default_workers(), scheduler=scheduler,
        max_memory=worker_memory,
    ):
        results[i] = res if err is None else {"capture": names[i], "path": found[i], "error": _one_line(err)}
    done = [r for r in results if r is not None]
    done += [{"capture": Path(u).name, "path": u, "error": "no such file (or no capture matches)"} for u in unmatched]
    return build_dataset(done, public_options(opts))


# ---- a batch folder (`confscope batch`) ---------------------------------------------------------


def load_manifest(out: Path) -> dict[str, Any]:
    path = out / MANIFEST
    try:
        data = json.loads(read_bounded(path, MANIFEST_MAX_BYTES, "manifest").decode("utf-8"))
    except FileTooLarge as exc:
        # Not ours (or damaged): refuse rather than overwrite what may be someone's big file.
        raise OptionError(str(exc)) from None
    except (OSError, ValueError):
        return {"schema": MANIFEST_SCHEMA, "captures": {}}
    if (
        not isinstance(data, dict)
        or data.get("schema") != MANIFEST_SCHEMA
        or not isinstance(data.get("captures"), dict)
    ):
        return {"schema": MANIFEST_SCHEMA, "captures": {}}
    return data


def save_manifest(out: Path, manifest: dict[str, Any]) -> None:
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(out / MANIFEST)


@dataclass
class BatchResult:
    """What `run_batch` did: per capture, analysed / skipped (already done) / failed."""

    out: Path
    results: list[dict[str, Any]]
    summary: dict[str, Any]
    summary_paths: dict[str, Path]

    @property
    def analysed(self) -> list[dict[str, Any]]:
        return [r for r in self.results if not r.get("error") and not r.get("skipped")]

    @property
    def skipped(self) -> list[dict[str, Any]]:
        return [r for r in self.results if not r.get("error") and r.get("skipped")]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r.get("error")]

    @property
    def exit_code(self) -> int:
        """2 nothing could be analysed; 1 a capture failed, or a policy violation / critical
        finding; else 0."""
        if not self.analysed and not self.skipped:
            return 2
        if self.failed:
            return 1
        return 1 if any(s.get("exit_code") for s in self.summary.get("sessions", [])) else 0


def run_batch(
    inputs: Iterable[str | os.PathLike],
    output: str | os.PathLike,
    *,
    workers: int | None = None,
    scheduler: Any = None,
    force: bool = False,
    merge: bool = False,
    formats: Iterable[str] = ("json", "md", "html", "csv", "parquet"),
    on_result: Callable[[dict[str, Any], int], None] | None = None,
    max_memory: int | None = None,
    split_min_bytes: int = SPLIT_MIN_BYTES,
    **options: Any,
) -> BatchResult:
    """Analyse captures into a batch folder: a report folder per capture, the tables of
    batch/schema.py as hive-partitioned Parquet datasets (OUT/<table>/capture=<name>/), a summary
    (summary.json/md/html) and a manifest for resuming (same bytes, same options: skipped).

    Input paths and the output folder are made absolute here, on the client, so that Dask
    workers (other working directories, other machines with a shared file system) find them.
    `on_result(result, total)` is called as each capture finishes (a progress bar);
    `max_memory` (bytes) limits each local worker's address space (a capture that needs more fails
    alone, the others go on). `split_min_bytes`: a lone capture at least this large is scanned as
    byte ranges by the workers (without media streams).
    """
    formats = list(formats)
    opts = validate_options(options)
    workers = workers if workers is not None else default_workers()
    if workers < 1:
        raise OptionError("--workers must be at least 1")
    found, unmatched = expand_inputs(inputs)
    if not found:
        raise OptionError(f"no captures found in {', '.join(os.fspath(i) for i in inputs)}")
    found = [os.path.abspath(f) for f in found]
    out = Path(os.path.abspath(output))
    out.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(out)
    entries: dict[str, Any] = manifest["captures"]
    ohash = options_hash(opts, formats)
    groups = [found] if merge else [[p] for p in found]
    # Earlier runs may have recorded relative paths: compare absolute ones.
    reserved = {
        os.path.abspath(e["path"]): name for name, e in entries.items() if isinstance(e, dict) and "path" in e
    }
    keys = [_group_key(g) for g in groups]
    names = capture_names(keys, reserved)
    todo, results = [], []
    for name, key, group in zip(names, keys, groups, strict=True):
        sha = _group_sha256(group)
        entry = entries.get(name)
        if not force and isinstance(entry, dict) and _same_done(entry, sha, ohash, out / name, out):
            results.append({**entry, "capture": name, "skipped": True})
            continue
        split = (
            workers
            if (
                len(groups) == 1
                and scheduler is None
                and len(group) == 1
                and _splittable(group[0], split_min_bytes)
            )
            else 1
        )
        spec = {
            "capture": name,
            "path": key,
            "options": opts,
            "out_dir": str(out / name),
            "formats": formats,
            "tables_dir": str(out),
            "split_workers": split if len(group) == 1 else workers,
        }
        if len(group) > 1:
            spec["paths"] = group
        todo.append((spec, sha))
    results += _run_todo(todo, workers, scheduler, out, manifest, ohash, on_result, max_memory)
    results += [
        {"capture": Path(u).name, "path": u, "error": "no such file (or no capture matches)"} for u in unmatched
    ]
    summary, paths = _finish(out, results, opts)
    return BatchResult(out=out, results=results, summary=summary, summary_paths=paths)


def _same_done(entry: dict[str, Any], sha: str | None, ohash: str, report_dir: Path, out: Path) -> bool:
    """Resumable: the same bytes under the same options already have a report and table rows
    (a folder from before the tables had one schema lacks some: redone)."""
    return bool(
        sha
        and entry.get("sha256") == sha
        and entry.get("options_hash") == ohash
        and entry.get("tables_schema") == TABLES_VERSION
        and not entry.get("error")
        and entry.get("summary")
        and (report_dir / "report.json").is_file()
        and all((partition_dir(out, t, report_dir.name) / "part-0.parquet").is_file() for t in TABLES)
    )


def _group_key(group: list[str]) -> str:
    # A merged set is named after its first file: <stem>-merged.
    return group[0] if len(group) == 1 else str(Path(group[0]).with_name(Path(group[0]).stem + "-merged"))


def _group_sha256(group: list[str]) -> str | None:
    if any(is_stream_path(p) for p in group):
        return None  # a pipe or FIFO can be read once: the worker reads (and hashes) it, no resume
    try:
        hashes = [file_sha256(p) for p in group]
    except OSError:
        return None
    return hashes[0] if len(hashes) == 1 else hashlib.sha256("".join(sorted(hashes)).encode()).hexdigest()


def _splittable(path: str, min_bytes: int = SPLIT_MIN_BYTES) -> bool:
    from analyzer.scan.split import is_splittable

    try:
        return os.path.getsize(path) >= min_bytes and is_splittable(path)
    except OSError:
        return False


def _run_todo(
    todo: list[tuple[dict[str, Any], str | None]],
    workers: int,
    scheduler: Any,
    out: Path,
    manifest: dict[str, Any],
    ohash: str,
    on_result: Callable[[dict[str, Any], int], None] | None,
    max_memory: int | None,
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    if not todo:
        return results
    # A lone split capture already uses the workers inside its task.
    pool_workers = 1 if len(todo) == 1 else workers
    tasks = [(s,) for s, _ in todo]
    ran = run_unordered(capture_task, tasks, workers=pool_workers, scheduler=scheduler, max_memory=max_memory)
    for i, res, err in ran:
        spec, sha = todo[i]
        if err is not None:
            res = {"capture": spec["capture"], "path": spec["path"], "error": _one_line(err)}
        entry = {
            "path": spec["path"],
            "sha256": sha,
            "options_hash": ohash,
            "tables_schema": TABLES_VERSION,
            "error": res.get("error"),
            "summary": res.get("summary"),
            "seconds": res.get("seconds"),
            "files": spec.get("paths"),
        }
        if entry["error"]:
            remove_partitions(out, spec["capture"])
        manifest["captures"][spec["capture"]] = entry
        save_manifest(out, manifest)
        results.append({**entry, "capture": spec["capture"]})
        if on_result is not None:
            on_result(results[-1], len(todo))
    return results


def _finish(out: Path, results: list[dict[str, Any]], opts: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Path]]:
    from analyzer.batch.dataset import cross_summary
    from analyzer.batch.summary import write_summary

    sessions = [
        {"capture": r["capture"], "path": r["path"], "skipped": bool(r.get("skipped")), **(r["summary"] or {}),
         "reports": _report_links(out / r["capture"])}
        for r in results
        if not r.get("error") and r.get("summary")
    ]
    failures = [{"capture": r["capture"], "path": r["path"], "error": r["error"]} for r in results if r.get("error")]
    summary = cross_summary(sessions, failures, public_options(opts))
    return summary, write_summary(summary, out)


def _report_links(folder: Path) -> dict[str, str]:
    """The report files of one capture, relative to the batch folder (links in summary.html)."""
    from analyzer.report import FILENAMES

    return {fmt: f"{folder.name}/{name}" for fmt, name in FILENAMES.items() if (folder / name).is_file()}


def table_dataset(out: str | os.PathLike, name: str = FLOWS_DATASET) -> Any:
    """A `pyarrow.dataset.Dataset` over one table of a batch folder (OUT/<name>/capture=*/), with
    the declared schema and `capture` as a string column. Scanning it streams record batches."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    from analyzer.batch.schema import table

    schema = table(name).arrow_schema(partition=True)
    part = ds.partitioning(pa.schema([schema.field(PARTITION)]), flavor="hive")
    return ds.dataset(Path(out) / name, format="parquet", partitioning=part, schema=schema)


def read_table(out: str | os.PathLike, name: str = FLOWS_DATASET) -> Any:
    """One table of a batch folder as a pandas DataFrame (leading `capture` column)."""
    root = Path(out) / name
    if not root.is_dir():
        import pandas as pd

        from analyzer.batch.schema import table

        return pd.DataFrame(columns=[PARTITION, *table(name).names])
    # Maps (bytes_by_role) as dicts, as in the session API, not lists of pairs.
    return table_dataset(out, name).to_table().to_pandas(maps_as_pydicts="strict")


def read_flows_dataset(out: str | os.PathLike) -> Any:
    """The flows of a batch output folder as a pandas DataFrame with a `capture` column."""
    return read_table(out, FLOWS_DATASET)
