"""Mutation fuzzer: damage the shared real captures and run `confscope analyze` on every mutant.

A mutant *crashes* when the run ends with a traceback, a signal or an exit code outside
{0, 1, 2} (3 is the CLI's "internal error", i.e. a bug); it *hangs* when it outlives the timeout.
Mutants are deterministic: mutant `i` of seed `S` is rebuilt from `random.Random(f"{S}:{i}")`, so
`--seed S --only i` replays one. Crashing and hanging mutants are saved with a JSON note.

    python bench/fuzz.py --count 10000 --jobs 2             # long run, in-process (fast)
    python bench/fuzz.py --count 50 --mode subprocess       # each mutant in a fresh interpreter
    python bench/fuzz.py --target reassembly --count 10000  # DTLS/QUIC/TCP reassembly (fuzz_reassembly.py)

The container parsing here is deliberately independent of analyzer.capture (an oracle that
shared the reader's bugs would hide them); it only needs to find record and block boundaries
of the *undamaged* bases.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import io
import json
import multiprocessing
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CAPTURES = Path(os.environ.get("CONFSCOPE_SHARED", REPO.parent / "shared")) / "captures" / "real"
BASE_MAX_BYTES = 48 * 1024  # bases are cut at a record boundary: small mutants keep runs fast
OK_CODES = frozenset({0, 1, 2})
INTERESTING_U32 = (
    0,
    1,
    3,
    11,
    12,
    15,
    16,
    28,
    31,
    32,
    0x7FFF,
    0xFFFF,
    0x10000,
    0x40000,
    0x1000000,
    0x4000000,
    0x4000004,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFF0,
    0xFFFFFFFC,
    0xFFFFFFFF,
)
SHB_TYPE = 0x0A0D0D0A
PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}


@dataclass
class Base:
    """One undamaged capture prefix with the spans of its records (pcap) or blocks (pcapng)."""

    name: str
    data: bytes
    fmt: str  # "pcap" or "pcapng"
    order: str  # struct byte-order prefix
    spans: list[tuple[int, int]] = field(default_factory=list)  # [start, end) of each record/block
    header: int = 0  # bytes before the first record (pcap file header); 0 for pcapng

    def blocks_of(self, btype: int) -> list[tuple[int, int]]:
        return [s for s in self.spans if self.fmt == "pcapng" and _u32(self.data, s[0], self.order) == btype]


def _u32(data: bytes, pos: int, order: str) -> int:
    return struct.unpack_from(order + "I", data, pos)[0]


def parse_base(name: str, data: bytes, max_bytes: int = BASE_MAX_BYTES) -> Base | None:
    """Index a well-formed capture and cut it to at most `max_bytes` at a record boundary."""
    if data[:4] in PCAP_MAGICS and len(data) >= 24:
        order = PCAP_MAGICS[data[:4]]
        spans, pos = [], 24
        while pos + 16 <= len(data):
            cap = _u32(data, pos + 8, order)
            end = pos + 16 + cap
            if end > len(data) or (end > max_bytes and spans):
                break
            spans.append((pos, end))
            pos = end
        return Base(name, data[:pos], "pcap", order, spans, 24) if spans else None
    if data[:4] == b"\x0a\x0d\x0d\x0a" and len(data) >= 28:
        order = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        spans, pos = [], 0
        while pos + 12 <= len(data):
            blen = _u32(data, pos + 4, order)
            end = pos + blen
            if blen < 12 or end > len(data) or (end > max_bytes and len(spans) > 2):
                break
            spans.append((pos, end))
            pos = end
        return Base(name, data[:pos], "pcapng", order, spans, 0) if len(spans) > 1 else None
    return None


def load_bases(directory: Path = DEFAULT_CAPTURES, max_bytes: int = BASE_MAX_BYTES) -> list[Base]:
    """Every readable pcap/pcapng capture of `directory`, cut to `max_bytes` (gzip is left out)."""
    bases = []
    for path in sorted(directory.iterdir()) if directory.is_dir() else []:
        if path.is_file():
            base = parse_base(path.name, path.read_bytes(), max_bytes)
            if base is not None:
                bases.append(base)
    return bases


# -- mutators: (base, other base, rng) -> mutant bytes -------------------------------------------
Mutator = Callable[[Base, Base, random.Random], bytes]


def _put_u32(data: bytearray, pos: int, value: int, order: str) -> None:
    if 0 <= pos <= len(data) - 4:
        struct.pack_into(order + "I", data, pos, value & 0xFFFFFFFF)


def _some_u32(rng: random.Random, near: int = 0) -> int:
    choice = rng.random()
    if choice < 0.6:
        return rng.choice(INTERESTING_U32)
    if choice < 0.8:
        return max(0, near + rng.randint(-16, 16))
    return rng.getrandbits(32)


def bit_flips(base: Base, other: Base, rng: random.Random) -> bytes:
    data = bytearray(base.data)
    for _ in range(rng.choice((1, 2, 4, 8, 32))):
        pos = rng.randrange(len(data))
        data[pos] ^= 1 << rng.randrange(8)
    return bytes(data)


def byte_garbage(base: Base, other: Base, rng: random.Random) -> bytes:
    """A run of random or constant bytes written over a random place."""
    data = bytearray(base.data)
    pos = rng.randrange(len(data))
    n = min(rng.choice((1, 4, 16, 64, 512)), len(data) - pos)
    fill = rng.choice((b"\x00", b"\xff", None))
    data[pos : pos + n] = fill * n if fill else rng.randbytes(n)
    return bytes(data)


def truncate(base: Base, other: Base, rng: random.Random) -> bytes:
    return base.data[: rng.randrange(1, len(base.data))]


def corrupt_length(base: Base, other: Base, rng: random.Random) -> bytes:
    """A record's caplen/wirelen, or a block's leading and/or trailing length, set to a lie."""
    data = bytearray(base.data)
    start, end = rng.choice(base.spans)
    if base.fmt == "pcap":
        field_pos = start + rng.choice((8, 12))
        _put_u32(data, field_pos, _some_u32(rng, _u32(base.data, field_pos, base.order)), base.order)
    else:
        value = _some_u32(rng, end - start)
        where = rng.choice(("lead", "trail", "both"))
        if where in ("lead", "both"):
            _put_u32(data, start + 4, value, base.order)
        if where in ("trail", "both"):
            _put_u32(data, end - 4, value, base.order)
    return bytes(data)


def absurd_caplen(base: Base, other: Base, rng: random.Random) -> bytes:
    """pcap: snaplen and a record's caplen far beyond anything real; pcapng: EPB caplen > block."""
    data = bytearray(base.data)
    if base.fmt == "pcap":
        if rng.random() < 0.5:
            _put_u32(data, 16, rng.choice((0, 0xFFFFFFFF, 0x7FFFFFFF, 0x1000000, 0x1000001)), base.order)
        start, _end = rng.choice(base.spans)
        _put_u32(data, start + 8, rng.choice((0x1000000, 0x3FFFFFF, 0x7FFFFFFF, 0xFFFFFFFF)), base.order)
        return bytes(data)
    packets = base.blocks_of(6) + base.blocks_of(2)
    if not packets:
        return corrupt_length(base, other, rng)
    start, _end = rng.choice(packets)
    _put_u32(data, start + 20, rng.choice((0xFFFFFFFF, 0x7FFFFFFF, 0x10000, _end - start - 31)), base.order)
    _put_u32(data, start + 24, rng.choice((0, 0xFFFFFFFF)), base.order)
    return bytes(data)


def splice(base: Base, other: Base, rng: random.Random) -> bytes:
    """Records of `other` inserted between records of `base` (byte orders may disagree)."""
    cut = rng.choice([s[0] for s in base.spans] + [len(base.data)])
    if other.fmt == base.fmt:
        lo = rng.randrange(len(other.spans))
        hi = min(len(other.spans), lo + rng.randint(1, 50))
        piece = other.data[other.spans[lo][0] : other.spans[hi - 1][1]]
    else:
        a = rng.randrange(len(other.data))
        piece = other.data[a : a + rng.randint(16, 4096)]
    return base.data[:cut] + piece + base.data[cut:]


def duplicate_records(base: Base, other: Base, rng: random.Random) -> bytes:
    """Records repeated, dropped or reordered: timestamps go backwards, flows restart."""
    spans = list(base.spans[1:] if base.fmt == "pcapng" else base.spans)
    head = base.data[: (base.spans[1][0] if base.fmt == "pcapng" else base.header)]
    body = [base.data[a:b] for a, b in spans]
    op = rng.choice(("dup", "drop", "shuffle"))
    if op == "dup" and body:
        k = rng.randrange(len(body))
        body[k:k] = [body[k]] * rng.randint(1, 200)
    elif op == "drop" and body:
        del body[rng.randrange(len(body))]
    else:
        rng.shuffle(body)
    return head + b"".join(body)


def iface_out_of_range(base: Base, other: Base, rng: random.Random) -> bytes:
    """pcapng: EPB/OPB interface ids beyond the described interfaces."""
    if base.fmt != "pcapng":
        return magic_swap(base, other, rng)
    data = bytearray(base.data)
    packets = base.blocks_of(6) + base.blocks_of(2)
    for start, _end in rng.sample(packets, min(len(packets), rng.randint(1, 8))):
        value = rng.choice((1, 2, 7, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFE, 0xFFFFFFFF))
        if _u32(base.data, start, base.order) == 2:
            struct.pack_into(base.order + "H", data, start + 8, value & 0xFFFF)
        else:
            _put_u32(data, start + 8, value, base.order)
    return bytes(data)


def magic_swap(base: Base, other: Base, rng: random.Random) -> bytes:
    """The byte-order magic reversed (file header, or the BOM of one SHB), contents left as they are."""
    data = bytearray(base.data)
    if base.fmt == "pcap":
        data[0:4] = data[0:4][::-1]
    else:
        shbs = base.blocks_of(SHB_TYPE) or [(0, 0)]
        start = rng.choice(shbs)[0]
        data[start + 8 : start + 12] = data[start + 8 : start + 12][::-1]
    return bytes(data)


def absurd_tsresol(base: Base, other: Base, rng: random.Random) -> bytes:
    """pcapng: every IDB rewritten with an if_tsresol (and maybe if_tsoffset) from the edges."""
    if base.fmt != "pcapng":
        data = bytearray(base.data)
        _put_u32(data, 0, rng.choice((0xA1B2C3D4, 0xA1B23C4D)), ">" if rng.random() < 0.5 else "<")
        return bytes(data)
    o = base.order
    resol = rng.choice((0, 9, 18, 19, 63, 0x7F, 0x80, 0x80 | 30, 0x80 | 62, 0x80 | 63, 0xFF))
    out = bytearray()
    for start, end in base.spans:
        block = base.data[start:end]
        if _u32(block, 0, o) == 1 and len(block) >= 20:
            opts = struct.pack(o + "HH", 9, 1) + bytes([resol, 0, 0, 0])
            if rng.random() < 0.5:
                opts += struct.pack(o + "HHq", 14, 8, rng.choice((-(2**63), 2**63 - 1, -1, 2**40)))
            opts += struct.pack(o + "HH", 0, 0)
            body = block[8:16] + opts
            blen = 12 + len(body)
            block = struct.pack(o + "II", 1, blen) + body + struct.pack(o + "I", blen)
        out += block
    return bytes(out)


def spb_mix(base: Base, other: Base, rng: random.Random) -> bytes:
    """pcapng: some EPBs turned into Simple Packet Blocks (no timestamp, no interface id)."""
    if base.fmt != "pcapng":
        return duplicate_records(base, other, rng)
    o = base.order
    out = bytearray()
    for start, end in base.spans:
        block = base.data[start:end]
        if _u32(block, 0, o) == 6 and len(block) >= 32 and rng.random() < 0.5:
            caplen = min(_u32(block, 20, o), len(block) - 32)
            payload = block[28 : 28 + caplen]
            payload += b"\x00" * (-len(payload) % 4)
            wire = rng.choice((_u32(block, 24, o), 0, 0xFFFFFFFF, caplen))
            blen = 16 + len(payload)
            block = struct.pack(o + "III", 3, blen, wire) + payload + struct.pack(o + "I", blen)
        out += block
    return bytes(out)


def odd_blocks(base: Base, other: Base, rng: random.Random) -> bytes:
    """Blocks of zero/looping/huge length, unknown types or a second SHB in the other byte order."""
    o = base.order
    cut = rng.choice([s[0] for s in base.spans[1:]] or [len(base.data)])
    kind = rng.choice(("zero", "self", "huge", "unknown", "shb"))
    if kind == "zero":
        piece = b"\x00" * rng.choice((4, 8, 12, 64))
    elif kind == "self":  # a block whose length points back at its own start
        piece = struct.pack(o + "III", rng.choice((3, 6, 5)), 0, 0)
    elif kind == "huge":
        piece = struct.pack(o + "II", 6, rng.choice((0x4000000, 0xFFFFFFFC))) + rng.randbytes(64)
    elif kind == "unknown":
        body = rng.randbytes(4 * rng.randint(0, 16))
        piece = struct.pack(o + "II", rng.getrandbits(32), 12 + len(body)) + body + struct.pack(o + "I", 12 + len(body))
    else:
        other_o = ">" if o == "<" else "<"
        piece = struct.pack(other_o + "IIIHHq", SHB_TYPE, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack(other_o + "I", 28)
    return base.data[:cut] + piece + base.data[cut:]


MUTATORS: dict[str, Mutator] = {
    "bit_flips": bit_flips,
    "byte_garbage": byte_garbage,
    "truncate": truncate,
    "corrupt_length": corrupt_length,
    "absurd_caplen": absurd_caplen,
    "splice": splice,
    "duplicate_records": duplicate_records,
    "iface_out_of_range": iface_out_of_range,
    "magic_swap": magic_swap,
    "absurd_tsresol": absurd_tsresol,
    "spb_mix": spb_mix,
    "odd_blocks": odd_blocks,
}


@dataclass(frozen=True)
class Mutant:
    index: int
    base: str
    ops: tuple[str, ...]
    data: bytes


def make_mutant(bases: list[Base], seed: str | int, index: int) -> Mutant:
    """Mutant `index` of `seed`: one to three mutators stacked on a randomly chosen base."""
    rng = random.Random(f"{seed}:{index}")
    base = rng.choice(bases)
    ops = tuple(rng.choice(list(MUTATORS)) for _ in range(rng.choice((1, 1, 1, 2, 3))))
    data = base.data
    for op in ops:
        other = rng.choice(bases)
        current = parse_base(base.name, data, max_bytes=1 << 30) or base
        data = MUTATORS[op](current, other, rng) or b"\x00"
    return Mutant(index, base.name, ops, data)


def mutants(bases: list[Base], seed: str | int, count: int, start: int = 0) -> Iterator[Mutant]:
    for i in range(start, start + count):
        yield make_mutant(bases, seed, i)


# -- running -----------------------------------------------------------------------------------
@dataclass
class Outcome:
    index: int
    base: str
    ops: tuple[str, ...]
    code: int | None  # exit code; None on a hang; negative = killed by that signal
    seconds: float
    verdict: str  # "ok", "crash" or "hang"
    detail: str = ""


def judge(code: int | None, stderr: str, timed_out: bool) -> str:
    """'hang' on a timeout; 'crash' on a traceback, a signal or an exit code outside {0, 1, 2}."""
    if timed_out:
        return "hang"
    if code is None or code not in OK_CODES or "Traceback (most recent call last)" in stderr:
        return "crash"
    return "ok"


class _Timeout(BaseException):
    """Raised by the alarm: a BaseException so the CLI's `except Exception` cannot swallow it."""


def run_in_process(path: Path, out_dir: Path, timeout: float) -> tuple[int | None, str, bool]:
    """`confscope analyze PATH -o OUT --format json` through analyzer.cli.main.main, under an alarm."""
    from analyzer.cli.main import main

    err = io.StringIO()

    def on_alarm(signum, frame):
        raise _Timeout

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = main(["analyze", str(path), "-o", str(out_dir), "--format", "json", "--progress", "never"])
        return code, err.getvalue(), False
    except _Timeout:
        return None, err.getvalue(), True
    except SystemExit as exc:  # argparse or an explicit exit
        return exc.code if isinstance(exc.code, int) else 2, err.getvalue(), False
    except BaseException as exc:
        return 3, f"Traceback (most recent call last): {type(exc).__name__}: {exc}", False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_subprocess(path: Path, out_dir: Path, timeout: float) -> tuple[int | None, str, bool]:
    """The same command in a fresh interpreter: catches signals and interpreter-level crashes."""
    cmd = [
        sys.executable,
        "-m",
        "analyzer",
        "analyze",
        str(path),
        "-o",
        str(out_dir),
        "--format",
        "json",
        "--progress",
        "never",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode("utf-8", "replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return None, stderr, True
    return proc.returncode, proc.stderr, False


def run_mutant(mutant: Mutant, work: Path, timeout: float, mode: str = "inprocess") -> Outcome:
    path = work / f"mutant-{mutant.index}.pcap"
    path.write_bytes(mutant.data)
    out_dir = work / f"out-{mutant.index}"
    runner = run_in_process if mode == "inprocess" else run_subprocess
    t0 = time.perf_counter()
    code, stderr, timed_out = runner(path, out_dir, timeout)
    seconds = time.perf_counter() - t0
    verdict = judge(code, stderr, timed_out)
    path.unlink(missing_ok=True)
    _rmtree(out_dir)
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    detail = "" if verdict == "ok" else (lines[-1] if lines else "")[:400]
    return Outcome(mutant.index, mutant.base, mutant.ops, code, round(seconds, 3), verdict, detail)


def _rmtree(path: Path) -> None:
    if not path.exists():
        return
    for p in sorted(path.rglob("*"), key=lambda q: len(q.parts), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    path.rmdir()


# Worker state for multiprocessing (bases are parsed once per worker).
_W: dict = {}


def _worker_init(captures: str, seed: str, timeout: float, mode: str, work: str) -> None:
    _W.update(bases=load_bases(Path(captures)), seed=seed, timeout=timeout, mode=mode, work=Path(work))


def _worker_run(index: int) -> tuple[Outcome, bytes | None]:
    mutant = make_mutant(_W["bases"], _W["seed"], index)
    outcome = run_mutant(mutant, _W["work"], _W["timeout"], _W["mode"])
    return outcome, (mutant.data if outcome.verdict != "ok" else None)


def today_seed() -> str:
    return _dt.date.today().strftime("%Y%m%d")


def fuzz(
    count: int,
    *,
    seed: str | None = None,
    jobs: int = 1,
    timeout: float = 30.0,
    mode: str = "inprocess",
    captures: Path = DEFAULT_CAPTURES,
    save: Path | None = None,
    start: int = 0,
    progress: Callable[[int, Counter], None] | None = None,
) -> dict:
    """Run `count` mutants and return a summary (mutants, crashes, hangs, seconds, outcomes of failures)."""
    seed = seed or today_seed()
    t0 = time.perf_counter()
    verdicts: Counter = Counter()
    codes: Counter = Counter()
    by_op: Counter = Counter()
    failures: list[dict] = []
    slowest: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory(prefix="confscope-fuzz-") as work:
        args = (str(captures), seed, timeout, mode, work)
        indices = range(start, start + count)
        if jobs > 1:
            pool = multiprocessing.get_context("fork").Pool(jobs, _worker_init, args, maxtasksperchild=500)
            results = pool.imap_unordered(_worker_run, indices, chunksize=4)
        else:
            _worker_init(*args)
            pool, results = None, map(_worker_run, indices)
        try:
            for done, (outcome, data) in enumerate(results, 1):
                verdicts[outcome.verdict] += 1
                codes[str(outcome.code)] += 1
                by_op.update(outcome.ops)
                slowest = sorted([*slowest, (outcome.seconds, outcome.index)], reverse=True)[:5]
                if outcome.verdict != "ok":
                    failures.append(outcome.__dict__)
                    if save is not None and data is not None:
                        save.mkdir(parents=True, exist_ok=True)
                        stem = save / f"{seed}-{outcome.index}-{outcome.verdict}"
                        stem.with_suffix(".cap").write_bytes(data)
                        stem.with_suffix(".json").write_text(json.dumps(outcome.__dict__, indent=1))
                if progress is not None:
                    progress(done, verdicts)
        finally:
            if pool is not None:
                pool.terminate()
    return {
        "seed": seed,
        "mode": mode,
        "mutants": sum(verdicts.values()),
        "crashes": verdicts["crash"],
        "hangs": verdicts["hang"],
        "seconds": round(time.perf_counter() - t0, 1),
        "exit_codes": dict(sorted(codes.items())),
        "by_mutator": dict(sorted(by_op.items())),
        "slowest": [{"seconds": s, "index": i} for s, i in slowest],
        "failures": failures,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--seed", default=None, help="default: today's date (YYYYMMDD)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per mutant before it counts as a hang")
    ap.add_argument("--mode", choices=("inprocess", "subprocess"), default="inprocess")
    ap.add_argument("--captures", type=Path, default=DEFAULT_CAPTURES)
    ap.add_argument("--save", type=Path, default=Path(tempfile.gettempdir()) / "confscope-fuzz-failures")
    ap.add_argument("--start", type=int, default=0, help="first mutant index")
    ap.add_argument("--only", type=int, default=None, help="replay one mutant index")
    ap.add_argument("--json", type=Path, default=None, help="write the summary here")
    ap.add_argument("--target", choices=("capture", "reassembly"), default="capture",
                    help="capture: damaged files through `confscope analyze`; reassembly: DTLS fragments, "
                    "QUIC CRYPTO frames and TCP segments through dissect_flows")
    ap.add_argument("--memory-mb", type=float, default=256.0, help="reassembly: peak RSS growth allowed")
    args = ap.parse_args(argv)
    if args.target == "reassembly":
        return _main_reassembly(args)
    if not load_bases(args.captures):
        print(f"fuzz: no pcap/pcapng captures under {args.captures}", file=sys.stderr)
        return 2
    start, count = (args.only, 1) if args.only is not None else (args.start, args.count)

    def report(done: int, verdicts: Counter) -> None:
        if done % 250 == 0 or done == count:
            print(f"fuzz: {done}/{count} {dict(verdicts)}", file=sys.stderr, flush=True)

    summary = fuzz(
        count,
        seed=args.seed,
        jobs=args.jobs,
        timeout=args.timeout,
        mode=args.mode,
        captures=args.captures,
        save=args.save,
        start=start,
        progress=report,
    )
    text = json.dumps(summary, indent=1)
    if args.json:
        args.json.write_text(text)
    print(text)
    return 1 if summary["crashes"] or summary["hangs"] else 0


def reassembly_module():
    """bench/fuzz_reassembly.py (bench/ is a folder of scripts: imported by path)."""
    import importlib.util

    name = "confscope_bench_fuzz_reassembly"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("fuzz_reassembly.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def _main_reassembly(args: argparse.Namespace) -> int:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    fr = reassembly_module()
    start, count = (args.only, 1) if args.only is not None else (args.start, args.count)

    def report(done: int, verdicts: Counter) -> None:
        if done % 1000 == 0 or done == count:
            print(f"fuzz: {done}/{count} {dict(verdicts)}", file=sys.stderr, flush=True)

    summary = fr.fuzz_reassembly(count, seed=args.seed or today_seed(), timeout=args.timeout, start=start,
                                 captures=args.captures, memory_mb=args.memory_mb, progress=report)
    text = json.dumps(summary, indent=1)
    if args.json:
        args.json.write_text(text)
    print(text)
    return 1 if summary["crashes"] or summary["hangs"] or not summary["memory_ok"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
