"""Campaign benchmark: a generated corpus of small calls, analysed by `run_batch` on a Dask
LocalCluster, then compared by `campaign` over 10,000 sessions, locally and on the cluster.

    python bench/campaign.py [--captures 2000] [--sessions 10000] [--where /tmp/confscope-campaign-bench]
                             [--json OUT]

The calls are the project's demo call (capture/demo.py) with variations: 60 dates, 3 vantages
(manifest), the zone controller (key exchange) in CN, US, DE or IN, the media server in US, DE or
GB. The 10,000 sessions are the batch folder seen 10,000/captures times (hard-linked copies under
other folder names), so the campaign step reads real session reports. Each measured step runs in
its own process (the client), the cluster in another: the client's peak RSS (VmHWM) is the
client's alone. Nothing is written into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

KX = ("109.244.194.121", "13.52.0.10", "52.28.10.10", "3.7.35.10")  # CN, US, DE, IN
MEDIA = ("162.255.38.14", "52.28.10.11", "18.130.0.10")  # US, DE, GB
VANTAGES = ("DE", "US", "BR")


def make_corpus(n: int, where: Path) -> Path:
    from analyzer.capture.demo import MMR, ZONE_CONTROLLER, demo_variant, write_demo_capture

    calls = where / "calls"
    calls.mkdir(parents=True, exist_ok=True)
    base = write_demo_capture(where / "base.pcap").read_bytes()
    rows = ["capture,vantage,date,label"]
    for i in range(n):
        ip_map = {ZONE_CONTROLLER[1]: KX[(i // 7) % len(KX)], MMR[1]: MEDIA[(i // 11) % len(MEDIA)]}
        day = i % 60
        path = calls / f"call{i:05d}.pcap"
        if not path.exists():
            path.write_bytes(demo_variant(base, days=2100 + day, ip_map=ip_map))
        date = time.strftime("%Y-%m-%d", time.gmtime(1586000000 + (2100 + day) * 86400))
        rows.append(f"{path.name},{VANTAGES[i % len(VANTAGES)]},{date},rep{i // 60}")
    (calls / "study.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return calls


def replicate(batch: Path, copies: int, where: Path) -> list[Path]:
    """The batch folder plus copies-1 hard-linked copies (other names: other sessions)."""
    folders = [batch]
    for k in range(1, copies):
        dst = where / f"batch-copy{k}"
        if not dst.exists():
            for src in batch.rglob("*"):
                target = dst / src.relative_to(batch)
                if src.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.link(src, target)
        folders.append(dst)
    return folders


def _hwm_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def step(args: argparse.Namespace) -> None:
    """One measured step in this (client) process; prints a JSON line."""
    t0 = time.perf_counter()
    if args.step == "batch":
        from analyzer.batch.run import run_batch

        res = run_batch([args.calls], args.out, scheduler=args.scheduler, workers=args.workers, formats=["json"])
        n, failed = len(res.analysed) + len(res.skipped), len(res.failed)
    else:
        from analyzer.campaign import campaign

        folders = args.folders.split(",")
        c = campaign(folders, manifest=args.manifest, output=args.out, scheduler=args.scheduler,
                     workers=args.workers, diff="vantage=DE:US")
        n, failed = len(c.sessions), len(c.failures)
    secs = time.perf_counter() - t0
    print(json.dumps({"step": args.step, "scheduler": bool(args.scheduler), "sessions": n, "failed": failed,
                      "seconds": round(secs, 2), "sessions_per_s": round(n / secs, 1),
                      "client_peak_rss_mb": round(_hwm_kb() / 1024, 1)}))


def _run_step(extra: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *extra], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captures", type=int, default=2000)
    ap.add_argument("--sessions", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--where", default="/tmp/confscope-campaign-bench")
    ap.add_argument("--json")
    ap.add_argument("--step", choices=("batch", "campaign"), help=argparse.SUPPRESS)
    ap.add_argument("--calls", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--folders", help=argparse.SUPPRESS)
    ap.add_argument("--manifest", help=argparse.SUPPRESS)
    ap.add_argument("--scheduler", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:
        step(args)
        return
    import distributed

    where = Path(args.where)
    t0 = time.perf_counter()
    calls = make_corpus(args.captures, where)
    made = time.perf_counter() - t0
    results: dict = {"captures": args.captures, "corpus_seconds": round(made, 1),
                     "capture_bytes": (calls / "call00000.pcap").stat().st_size}
    with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        addr = cluster.scheduler_address
        w = ["--workers", str(args.workers)]
        results["batch_dask"] = _run_step(["--step", "batch", "--calls", str(calls), "--out", str(where / "batch"),
                                           "--scheduler", addr, *w])
        copies = max(1, -(-args.sessions // args.captures))
        folders = ",".join(str(f) for f in replicate(where / "batch", copies, where))
        common = ["--step", "campaign", "--folders", folders, "--manifest", str(calls / "study.csv"), *w]
        results["campaign_dask"] = _run_step([*common, "--out", str(where / "camp-dask"), "--scheduler", addr])
    results["campaign_local"] = _run_step([*common, "--out", str(where / "camp-local")])
    text = json.dumps(results, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
