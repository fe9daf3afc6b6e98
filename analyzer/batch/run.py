"""Many captures: the same per-capture task on a local process pool or a Dask cluster.

`analyze_many` is the Python API (a Dataset in memory); `run_batch_cli` is `confscope batch`
(report folders, a Parquet flows dataset, a summary, a manifest for resuming).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import resource
import shutil
import sys
import time
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from analyzer import __version__
from analyzer.batch.dataset import Dataset, build_dataset, session_summary
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
# A lone capture above this is split across the workers. Measured on 2 cores the split scan was
# slower than one pass (process start-up and result transfer outweigh the parallel decode), so the
# default only splits very large files; CONFSCOPE_SPLIT_MIN_BYTES changes it.
SPLIT_MIN_BYTES = int(os.environ.get("CONFSCOPE_SPLIT_MIN_BYTES", 4 * 1024**3))


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
    flows_dir (write the Parquet partition), tables (return the pandas tables), split_workers.
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
        if spec.get("flows_dir"):
            from analyzer.report.tabular import write_parquet

            part = Path(spec["flows_dir"])
            shutil.rmtree(part, ignore_errors=True)
            if len(flows):  # no rows, no file: an all-empty table has no column types to share
                part.mkdir(parents=True, exist_ok=True)
                write_parquet(flows, part / "part-0.parquet")
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
    used = set(reserved.values())
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


# ---- confscope batch ---------------------------------------------------------------------------


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


def run_batch_cli(args: Any) -> int:
    """`confscope batch`: returns the exit code (0, 1 policy violated, 2 usage)."""
    from analyzer.report import parse_formats

    formats = parse_formats(args.format)
    opts = validate_options({k: getattr(args, k, None) for k in SESSION_OPTIONS})
    workers = args.workers if args.workers is not None else default_workers()
    if workers < 1:
        raise OptionError("--workers must be at least 1")
    found, unmatched = expand_inputs(args.inputs)
    if not found:
        raise OptionError(f"no captures found in {', '.join(args.inputs)}")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(out)
    entries: dict[str, Any] = manifest["captures"]
    ohash = options_hash(opts, formats)
    if getattr(args, "merge", False):
        groups = [found]
    else:
        groups = [[p] for p in found]
    reserved = {e["path"]: name for name, e in entries.items() if isinstance(e, dict) and "path" in e}
    keys = [_group_key(g) for g in groups]
    names = capture_names(keys, reserved)
    todo, results = [], []
    for name, key, group in zip(names, keys, groups, strict=True):
        sha = _group_sha256(group)
        entry = entries.get(name)
        if not args.force and isinstance(entry, dict) and _same_done(entry, sha, ohash, out / name):
            results.append({**entry, "capture": name, "skipped": True})
            continue
        split = (
            workers
            if (len(groups) == 1 and args.scheduler is None and len(group) == 1 and _splittable(group[0]))
            else 1
        )
        spec = {
            "capture": name,
            "path": key,
            "options": opts,
            "out_dir": str(out / name),
            "formats": formats,
            "flows_dir": str(out / FLOWS_DATASET / f"capture={name}"),
            "split_workers": split if len(group) == 1 else workers,
        }
        if len(group) > 1:
            spec["paths"] = group
        todo.append((spec, sha))
    mib = getattr(args, "worker_memory", None)
    ran = _run_with_progress(
        todo, workers, args.scheduler, getattr(args, "progress", "auto"), out, manifest, ohash,
        max_memory=mib * 1024 * 1024 if mib else None,
    )
    results += ran
    results += [
        {"capture": Path(u).name, "path": u, "error": "no such file (or no capture matches)"} for u in unmatched
    ]
    return _finish(out, results, opts, formats)


def _same_done(entry: dict[str, Any], sha: str | None, ohash: str, report_dir: Path) -> bool:
    """Resumable: the same bytes under the same options already have a report."""
    return bool(
        sha
        and entry.get("sha256") == sha
        and entry.get("options_hash") == ohash
        and not entry.get("error")
        and entry.get("summary")
        and (report_dir / "report.json").is_file()
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


def _splittable(path: str) -> bool:
    from analyzer.scan.split import is_splittable

    try:
        return os.path.getsize(path) >= SPLIT_MIN_BYTES and is_splittable(path)
    except OSError:
        return False


def _run_with_progress(
    todo: list[tuple[dict[str, Any], str | None]],
    workers: int,
    scheduler: Any,
    mode: str,
    out: Path,
    manifest: dict[str, Any],
    ohash: str,
    max_memory: int | None = None,
) -> list[dict[str, Any]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    show = mode == "always" or (mode == "auto" and sys.stderr.isatty())
    results: list[dict[str, Any]] = []
    if not todo:
        return results
    # A lone split capture already uses the workers inside its task.
    pool_workers = 1 if len(todo) == 1 else workers
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
        disable=not show,
    ) as bar:
        task = bar.add_task("captures", total=len(todo))
        for i, res, err in run_unordered(
            capture_task, [(s,) for s, _ in todo], workers=pool_workers, scheduler=scheduler, max_memory=max_memory
        ):
            spec, sha = todo[i]
            if err is not None:
                res = {"capture": spec["capture"], "path": spec["path"], "error": _one_line(err)}
            entry = {
                "path": spec["path"],
                "sha256": sha,
                "options_hash": ohash,
                "error": res.get("error"),
                "summary": res.get("summary"),
                "seconds": res.get("seconds"),
                "files": spec.get("paths"),
            }
            if entry["error"]:
                shutil.rmtree(spec["flows_dir"], ignore_errors=True)
            manifest["captures"][spec["capture"]] = entry
            save_manifest(out, manifest)
            results.append({**entry, "capture": spec["capture"]})
            bar.advance(task)
    return results


def _finish(out: Path, results: list[dict[str, Any]], opts: dict[str, Any], formats: list[str]) -> int:
    from analyzer.batch.dataset import cross_summary
    from analyzer.batch.summary import write_summary

    sessions = [
        {"capture": r["capture"], "path": r["path"], "skipped": bool(r.get("skipped")), **(r["summary"] or {})}
        for r in results
        if not r.get("error") and r.get("summary")
    ]
    failures = [{"capture": r["capture"], "path": r["path"], "error": r["error"]} for r in results if r.get("error")]
    summary = cross_summary(sessions, failures, public_options(opts))
    write_summary(summary, out)
    for f in failures:
        print(f"confscope: {one_line(f['capture'])}: {one_line(f['error'])}", file=sys.stderr)
    if not sessions or failures:
        # A capture that could not be analysed (unreadable, or its worker died) must not pass
        # for a clean run in a pipeline: 2, as for unreadable input.
        return 2
    return 1 if any(s.get("exit_code") for s in sessions) else 0


def read_flows_dataset(out: str | os.PathLike) -> Any:
    """The flows of a batch output folder as a pandas DataFrame with a `capture` column.

    Uses the hive-partitioned Parquet dataset OUT/flows/capture=<name>/. Captures whose columns
    got different types (a column that is all-null in one capture) are read one by one.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    root = Path(out) / FLOWS_DATASET
    try:
        table = ds.dataset(root, format="parquet", partitioning="hive").to_table()
        df = table.to_pandas()
        df["capture"] = df["capture"].astype(str)
        return df
    except (pa.ArrowException, FileNotFoundError):
        parts = [
            pq.read_table(f).to_pandas().assign(capture=f.parent.name.split("=", 1)[1])
            for f in sorted(root.glob("capture=*/*.parquet"))
        ]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["capture"])
