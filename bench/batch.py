"""Batch benchmark: many small captures (local pool with 1 and 2 workers, Dask LocalCluster) and
one large capture split across 2 workers against the sequential scan.

    python bench/batch.py [--captures 200] [--big /tmp/confscope-bench/big1m.pcap] [--json OUT]

Copies of the shared captures go to /tmp; nothing is written into the repository.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analyzer.batch.run import capture_task  # noqa: E402
from analyzer.scan.parallel import run_unordered  # noqa: E402

SHARED = REPO.parent / "shared" / "captures" / "real"
SOURCES = (
    "zoom.pcap",
    "teams.pcap",
    "webex.pcap",
    "signal.pcap",
    "discord.pcap",
    "rtp.pcapng",
    "sip.pcap",
    "stun.pcap",
    "zoom_p2p.pcapng",
    "telegram_videocall.pcapng",
)


def make_copies(n: int, where: Path) -> list[str]:
    where.mkdir(parents=True, exist_ok=True)
    srcs = [SHARED / s for s in SOURCES if (SHARED / s).is_file()]
    out = []
    for i, src in zip(range(n), itertools.cycle(srcs), strict=False):
        dst = where / f"c{i:04d}-{src.name}"
        shutil.copy(src, dst)
        out.append(str(dst))
    return out


def run_many(paths: list[str], workers: int, scheduler=None) -> dict:
    specs = [({"capture": Path(p).stem, "path": p, "options": {}},) for p in paths]
    t0 = time.perf_counter()
    rss: dict[int, int] = {}
    failed = 0
    for _i, res, err in run_unordered(capture_task, specs, workers=workers, scheduler=scheduler):
        if err is not None or res.get("error"):
            failed += 1
            continue
        rss[res["pid"]] = max(rss.get(res["pid"], 0), res["maxrss_kb"])
    dt = time.perf_counter() - t0
    return {
        "captures": len(paths),
        "failed": failed,
        "seconds": round(dt, 2),
        "captures_per_s": round(len(paths) / dt, 1),
        "worker_processes": len(rss),
        "peak_rss_mb_per_worker": round(max(rss.values()) / 1024, 1) if rss else None,
    }


def run_split(big: str) -> dict:
    from analyzer.scan.scanner import scan_capture
    from analyzer.scan.split import scan_split

    t0 = time.perf_counter()
    seq = scan_capture(big)
    t_seq = time.perf_counter() - t0
    rss_seq = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    par = scan_split(big, 2)
    t_par = time.perf_counter() - t0
    rss_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    same = seq.flows.drop(columns="flow_key").equals(par.flows.drop(columns="flow_key"))
    return {
        "file": big,
        "bytes": Path(big).stat().st_size,
        "packets": seq.info.frames,
        "flows": len(seq.flows),
        "sequential_s": round(t_seq, 2),
        "split2_s": round(t_par, 2),
        "speedup": round(t_seq / t_par, 2),
        "flows_equal": bool(same),
        "peak_rss_mb_sequential_process": round(rss_seq / 1024, 1),
        "peak_rss_mb_split_worker": round(rss_children / 1024, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--captures", type=int, default=200)
    ap.add_argument("--big", default="/tmp/confscope-bench/big1m.pcap")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="confscope-batch-bench-") as tmp:
        paths = make_copies(args.captures, Path(tmp))
        results["local_1"] = run_many(paths, 1)
        print("local 1 worker", results["local_1"], flush=True)
        results["local_2"] = run_many(paths, 2)
        print("local 2 workers", results["local_2"], flush=True)
        from distributed import LocalCluster

        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            run_many(paths[:4], 2, cluster.scheduler_address)  # warm the workers' imports
            results["dask_2"] = run_many(paths, 2, cluster.scheduler_address)
        print("dask LocalCluster 2 workers", results["dask_2"], flush=True)
    if args.big and Path(args.big).is_file():
        results["split"] = run_split(args.big)
        print("split", results["split"], flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
