"""Run confscope beside its peers on the same capture: paired wall time, packets/s and peak RSS.

Method (see bench/README.md): every command is a whole process (start-up and output included),
stdout to /dev/null, capture warm in the page cache. After one warm-up run of every command, each
round runs the reference (the first confscope command) between every two peers:
R P1 R P2 R ... Pk R. A peer's paired ratio is its wall time over the mean of the two reference
runs around it, so ratios survive the machine's drift. Peak RSS is GNU time's %M for the command:
the largest single process of the command tree (its own peak, or that of a descendant it reaped).

`--scale` instead runs the confscope commands on captures of several sizes (default 1M and 4M
packets), alternating sizes, to check that peak RSS does not grow with the file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import make_capture  # noqa: E402  (sibling script, not a package)

# Commands run as installed software runs: pip byte-compiles what it installs, so a shell that sets
# PYTHONDONTWRITEBYTECODE (as some sandboxes do) would charge every run for compiling the sources.
RUN_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _py_cmd(script: str) -> str:
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(BENCH_DIR / 'peers' / script))} {{file}}"


DEFAULT_CONFSCOPE = ("confscope flows {file} -o /dev/null --format csv",)
PEERS = {
    "ndpiReader": "ndpiReader -i {file}",
    "nfstream": _py_cmd("nfstream_flows.py"),
    "tshark": "tshark -r {file} -q -z conv,udp -z conv,tcp",
    "dpkt": _py_cmd("dpkt_flows.py"),
}
DEFAULT_DIR = make_capture.DEFAULT_OUTPUT.parent


@dataclass
class Tool:
    name: str
    template: str
    walls: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    error: str | None = None
    last_stderr: str = ""

    def argv(self, file: Path) -> list[str]:
        return [a.replace("{file}", str(file)) for a in shlex.split(self.template)]


@dataclass
class RunResult:
    wall: float
    rss_kib: int
    cpu: float  # user + system seconds of the command and its reaped descendants
    rc: int
    stderr_tail: str


GNU_TIME = shutil.which("time") and Path("/usr/bin/time")


def run_once(argv: list[str], timeout: float) -> RunResult:
    """One whole-process run: wall time around spawn..exit, and the command's peak RSS.

    The command runs under GNU time (`/usr/bin/time -f %M`, apt package `time`): Linux carries
    the pre-exec address space's high-water mark into ru_maxrss, so a command spawned straight
    from this Python process would never report less than this process's own RSS (~35 MiB).
    GNU time is a small C program, so its child starts from a ~2 MiB floor. Without it, the
    fallback is os.wait4's ru_maxrss, with that floor.
    """
    with tempfile.TemporaryDirectory() as tmp:
        err_path = Path(tmp) / "stderr"
        rss_path = Path(tmp) / "rss"
        full = argv
        if GNU_TIME and GNU_TIME.is_file():
            full = [str(GNU_TIME), "-f", "%M", "-o", str(rss_path), "--", *argv]
        with err_path.open("wb") as err:
            t0 = time.perf_counter()
            try:
                # An empty scratch cwd: NFStream's to_pandas() round-trips through a CSV file in the
                # cwd, and nothing measured should write into (or be disturbed in) the repository.
                proc = subprocess.Popen(
                    full, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, cwd=tmp, env=RUN_ENV
                )
            except OSError as exc:
                return RunResult(0.0, 0, 0.0, 127, str(exc))
            # Poll instead of blocking so a hung command can be killed; 2 ms of latency at most.
            killed = False
            try:
                while True:
                    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                    if pid:
                        break
                    if time.perf_counter() - t0 > timeout:
                        proc.kill()
                        killed = True
                        pid, status, usage = os.wait4(proc.pid, 0)
                        break
                    time.sleep(0.002)
            except BaseException:
                # Interrupted harness (Ctrl-C, SIGTERM): take the measured command down with it.
                _kill_tree(proc.pid)
                raise
            wall = time.perf_counter() - t0
        proc.returncode = -9 if killed else os.waitstatus_to_exitcode(status)
        tail = err_path.read_bytes()[-2000:].decode("utf-8", "replace").strip()
        rss_kib = int(usage.ru_maxrss)
        if rss_path.is_file():
            # GNU time writes "Command exited with non-zero status N" before %M on failure.
            lines = rss_path.read_text().split()
            if lines and lines[-1].isdigit():
                rss_kib = int(lines[-1])
    cpu = usage.ru_utime + usage.ru_stime
    return RunResult(wall, rss_kib, cpu, proc.returncode, tail)


def _kill_tree(pid: int) -> None:
    """Kill a command started by run_once and its direct children (GNU time's child)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = children.read_text().split() if children.is_file() else []
    for victim in [*map(int, kids), pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, 9)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def packet_count(file: Path) -> int | None:
    """Packets in the capture: from make_capture's sidecar, else from capinfos."""
    sidecar = file.with_name(file.name + ".json")
    if sidecar.is_file():
        try:
            return int(json.loads(sidecar.read_text())["packets"])
        except (ValueError, KeyError):
            pass
    if shutil.which("capinfos"):
        out = subprocess.run(["capinfos", "-M", "-c", "-T", str(file)], capture_output=True, text=True)
        try:
            return int(out.stdout.strip().splitlines()[-1].split("\t")[-1])
        except (ValueError, IndexError):
            return None
    return None


def ensure_capture(file: Path, packets: int) -> None:
    if file.is_file():
        return
    print(f"# building {file} ({packets:,} packets)", file=sys.stderr)
    want_ng = file.suffix == ".pcapng"
    pcap = file.with_suffix(".pcap")
    # many*.pcap: the campus-like capture (~5 packets per flow, make_capture --many-flows 5).
    per_flow = 5.0 if file.name.startswith("many") else None
    make_capture.build(
        make_capture.DEFAULT_SEEDS_DIR,
        make_capture.DEFAULT_SEEDS,
        packets,
        pcap,
        pcapng=want_ng,
        packets_per_flow=per_flow,
    )


def _attempt(tool: Tool, file: Path, timeout: float) -> RunResult | None:
    res = run_once(tool.argv(file), timeout)
    if res.rc != 0:
        tool.error = f"exit {res.rc}: {res.stderr_tail.splitlines()[-1] if res.stderr_tail else ''}"
        print(f"# {tool.name} failed ({tool.error}); dropped", file=sys.stderr)
        return None
    return res


def _record(tool: Tool, res: RunResult) -> None:
    tool.walls.append(res.wall)
    tool.last_stderr = res.stderr_tail.splitlines()[-1] if res.stderr_tail else ""
    tool.rss_kib.append(res.rss_kib)
    tool.cpus.append(res.cpu)
    print(
        f"#   {tool.name:<22} {res.wall:8.3f} s  cpu {res.cpu:8.3f} s  {res.rss_kib / 1024:7.1f} MiB",
        file=sys.stderr,
    )


def paired_runs(tools: list[Tool], ref_name: str | None, file: Path, repeat: int, timeout: float) -> Tool:
    """Warm up every tool, then `repeat` rounds of R P1 R P2 ... R; returns the reference used."""
    print("# warm-up", file=sys.stderr)
    for tool in tools:
        res = _attempt(tool, file, timeout)
        if res is not None:
            print(f"#   {tool.name:<22} {res.wall:8.3f} s (warm-up)", file=sys.stderr)
    alive = [t for t in tools if t.error is None]
    if not alive:
        raise SystemExit("bench: no command ran successfully")
    ref = next((t for t in alive if t.name == ref_name), None)
    if ref is None:
        ref = alive[0]
        print(f"# reference {ref_name!r} unavailable: ratios are against {ref.name}", file=sys.stderr)
    for rnd in range(repeat):
        print(f"# round {rnd + 1}/{repeat}", file=sys.stderr)
        prev = _attempt(ref, file, timeout)
        if prev is None:
            raise SystemExit(f"bench: reference {ref.name} failed: {ref.error}")
        _record(ref, prev)
        for tool in [t for t in alive if t is not ref and t.error is None]:
            res = _attempt(tool, file, timeout)
            after = _attempt(ref, file, timeout)
            if after is None:
                raise SystemExit(f"bench: reference {ref.name} failed: {ref.error}")
            _record(ref, after)
            if res is None:
                continue
            _record(tool, res)
            tool.ratios.append(res.wall / ((prev.wall + after.wall) / 2))
            prev = after
    ref.ratios = [1.0] * len(ref.walls)
    return ref


def _fmt_rate(pps: float) -> str:
    if pps >= 1e6:
        return f"{pps / 1e6:.2f} M"
    if pps >= 1e3:
        return f"{pps / 1e3:.0f} k"
    return f"{pps:.0f}"


def summarize(tool: Tool, packets: int | None) -> dict:
    """Medians and extremes of one tool's runs (the JSON row and the table row share this)."""
    if not tool.walls:
        return {"name": tool.name, "command": tool.template, "error": tool.error or "no runs"}
    med = statistics.median(tool.walls)
    row = {
        "name": tool.name,
        "command": tool.template,
        "runs": len(tool.walls),
        "wall_median_s": med,
        "wall_min_s": min(tool.walls),
        "wall_max_s": max(tool.walls),
        "pkts_per_s": packets / med if packets else None,
        "cpu_median_s": statistics.median(tool.cpus),
        "peak_rss_mib": max(tool.rss_kib) / 1024,
        "rss_median_mib": statistics.median(tool.rss_kib) / 1024,
        "walls_s": tool.walls,
        "cpus_s": tool.cpus,
        "rss_kib": tool.rss_kib,
        "stderr_last_line": tool.last_stderr,
    }
    if tool.error:
        row["error"] = tool.error
    if tool.ratios:
        row.update(
            ratio_median=statistics.median(tool.ratios),
            ratio_min=min(tool.ratios),
            ratio_max=max(tool.ratios),
            ratios=tool.ratios,
        )
    return row


def display(template: str) -> str:
    """The command as a reader would type it (repo-relative script paths, plain `python`)."""
    return (
        template.replace(shlex.quote(sys.executable), "python").replace(str(BENCH_DIR), "bench").replace("{file}", "F")
    )


def markdown_table(rows: list[dict], ref: str) -> str:
    lines = [
        f"| tool (command) | wall, median | pkt/s | ratio vs {ref} [min–max] | CPU | peak RSS | runs |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        cmd = f"**{r['name']}** `{display(r['command'])}`"
        if "error" in r and "runs" not in r:
            lines.append(f"| {cmd} | – | – | – | – | – | failed: {r['error']} |")
            continue
        rate = _fmt_rate(r["pkts_per_s"]) if r["pkts_per_s"] else "–"
        if r["name"] == ref:
            ratio = "1"
        elif "ratio_median" in r:
            ratio = f"{r['ratio_median']:.2f} [{r['ratio_min']:.2f}–{r['ratio_max']:.2f}]"
        else:
            ratio = "–"
        wall, rss = f"{r['wall_median_s']:.3f} s", f"{r['peak_rss_mib']:.0f} MiB"
        cpu = f"{r['cpu_median_s']:.2f} s"
        runs = str(r["runs"]) + (f", then failed: {r['error']}" if "error" in r else "")
        lines.append(f"| {cmd} | {wall} | {rate} | {ratio} | {cpu} | {rss} | {runs} |")
    return "\n".join(lines)


def tool_versions() -> dict[str, str]:
    """Best-effort versions of the peers, for the JSON record."""
    out: dict[str, str] = {"python": platform.python_version()}
    # Which confscope was measured: the repository's HEAD, "+dirty" with uncommitted changes.
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        repo = str(BENCH_DIR.parent)
        head = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--", "analyzer"], capture_output=True)
        if head.returncode == 0:
            out["confscope"] = head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    probes = {
        "tshark": ["tshark", "--version"],
        "ndpiReader": ["ndpiReader", "-h"],
        "nfstream": [sys.executable, "-c", "import nfstream; print(nfstream.__version__)"],
        "dpkt": [sys.executable, "-c", "import dpkt; print(dpkt.__version__)"],
    }
    for name, argv in probes.items():
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        text = (res.stdout + res.stderr).strip().splitlines()
        if text:
            out[name] = text[0].strip()
    return out


def confscope_tools(commands: list[str]) -> list[Tool]:
    tools = []
    for cmd in commands:
        words = shlex.split(cmd)
        name = " ".join(words[:2]) if len(words) > 1 else words[0]
        tools.append(Tool(name, cmd))
    return tools


def parse_peer(spec: str) -> Tool:
    name, sep, cmd = spec.partition("=")
    if sep:
        return Tool(name, cmd)
    if spec not in PEERS:
        raise SystemExit(f"bench: unknown peer {spec!r}; known: {', '.join(PEERS)} (or NAME=COMMAND)")
    return Tool(spec, PEERS[spec])


def compare(args: argparse.Namespace) -> dict:
    file: Path = args.file.resolve()
    ensure_capture(file, args.packets)
    packets = packet_count(file)
    tools = confscope_tools(args.confscope) + [parse_peer(p) for p in args.peers]
    ref = paired_runs(tools, tools[0].name, file, args.repeat, args.timeout)
    rows = [summarize(t, packets) for t in tools]
    table = markdown_table(rows, ref.name)
    result = {
        "mode": "compare",
        "file": str(file),
        "packets": packets,
        "file_bytes": file.stat().st_size,
        "repeat": args.repeat,
        "reference": ref.name,
        "reference_wanted": tools[0].name,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "versions": tool_versions(),
        "rss_method": "GNU time %M (ru_maxrss of the command: largest single process of its tree)"
        if GNU_TIME
        else "os.wait4 ru_maxrss (floor = the harness's own RSS)",
        "tools": rows,
        "table_md": table,
    }
    head = f"{file.name}: {packets:,} packets, {file.stat().st_size:,} bytes" if packets else file.name
    print(f"\n{head}; {args.repeat} paired rounds after one warm-up; reference {ref.name}\n")
    print(table)
    if ref.name != tools[0].name:
        print(f"\n{tools[0].name} is pending ({tools[0].error}); ratios are against {ref.name}.")
    return result


def scale(args: argparse.Namespace) -> dict:
    """confscope on several capture sizes, sizes alternating per round; peak RSS should stay flat."""
    files = []
    for n in args.sizes:
        f = args.dir.resolve() / f"big{_size_label(n)}.pcap"
        ensure_capture(f, n)
        files.append((n, f))
    rows = []
    for tool in confscope_tools(args.confscope):
        per_size = {n: Tool(f"{tool.name} @{_size_label(n)}", tool.template) for n, _ in files}
        for n, f in files:  # warm-up
            _attempt(per_size[n], f, args.timeout)
        for rnd in range(args.repeat):
            print(f"# {tool.name} round {rnd + 1}/{args.repeat}", file=sys.stderr)
            for n, f in files if rnd % 2 == 0 else files[::-1]:
                t = per_size[n]
                if t.error is None and (res := _attempt(t, f, args.timeout)) is not None:
                    _record(t, res)
        base = None
        for n, _f in files:
            row = summarize(per_size[n], n)
            row["packets"] = n
            if "runs" in row:
                base = base or row["peak_rss_mib"]
                row["rss_vs_smallest"] = row["peak_rss_mib"] / base
            rows.append(row)
    lines = [
        "| command | packets | wall, median | pkt/s | CPU | peak RSS | RSS vs smallest |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        if "runs" not in r:
            lines.append(f"| `{display(r['command'])}` | {r['packets']:,} | failed: {r['error']} | | | | |")
            continue
        lines.append(
            f"| `{display(r['command'])}` | {r['packets']:,} | {r['wall_median_s']:.3f} s | "
            f"{_fmt_rate(r['pkts_per_s'])} | {r['cpu_median_s']:.2f} s | {r['peak_rss_mib']:.0f} MiB | "
            f"{r['rss_vs_smallest']:.2f} |"
        )
    table = "\n".join(lines)
    print(f"\nscale: {args.repeat} rounds per size after one warm-up\n")
    print(table)
    return {
        "mode": "scale",
        "sizes": args.sizes,
        "repeat": args.repeat,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpus": os.cpu_count(),
        "versions": tool_versions(),
        "rows": rows,
        "table_md": table,
    }


def _size_label(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def _raise_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    # SIGTERM must unwind through run_once so the command being measured is not orphaned.
    signal.signal(signal.SIGTERM, _raise_exit)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", nargs="?", type=Path, help="capture (built with make_capture if missing)")
    ap.add_argument("--packets", type=int, default=1_000_000, help="size to build when FILE is missing")
    ap.add_argument("--repeat", type=int, default=5, help="paired rounds after the warm-up (default 5)")
    ap.add_argument(
        "--confscope",
        action="append",
        metavar="CMD",
        help="confscope command, {file} = capture; repeatable, the first is the reference "
        f"(default: {DEFAULT_CONFSCOPE[0]!r})",
    )
    ap.add_argument(
        "--peers",
        nargs="*",
        default=list(PEERS),
        metavar="PEER",
        help=f"peers to run: {', '.join(PEERS)} or NAME=COMMAND (default: all)",
    )
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per run before it is killed")
    ap.add_argument("--json", type=Path, help="write results here (default: next to the capture)")
    ap.add_argument("--scale", action="store_true", help="peak-RSS scaling of confscope across --sizes")
    ap.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1_000_000, 4_000_000],
        help="packet counts for --scale (default 1000000,4000000)",
    )
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where --scale captures live")
    args = ap.parse_args(argv)
    args.confscope = args.confscope or list(DEFAULT_CONFSCOPE)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    if args.scale:
        result = scale(args)
        out = args.json or args.dir / "scale.json"
    else:
        if args.file is None:
            args.file = args.dir / f"big{_size_label(args.packets)}.pcap"
        result = compare(args)
        out = args.json or args.file.with_name(f"results-{args.file.stem}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n(results: {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
