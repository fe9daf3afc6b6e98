"""Bounded run of the mutation fuzzer (bench/fuzz.py) in CI: a few hundred mutants of the shared
real captures, seeded by today's date, through `confscope analyze` in-process, plus a handful in
fresh interpreters. Zero crashes (traceback, signal, exit code outside 0/1/2) and zero hangs.

CONFSCOPE_FUZZ_COUNT and CONFSCOPE_FUZZ_SEED override the count (default 200) and the seed; a
failure names the seed and index, which `python bench/fuzz.py --seed S --only I` replays.
"""

from __future__ import annotations

import os
import random

import pytest

from tests.conftest import REAL
from tests.fuzz.harness import fuzzer

COUNT = int(os.environ.get("CONFSCOPE_FUZZ_COUNT", "200"))
SUBPROCESS_COUNT = 4


@pytest.fixture(scope="module")
def bases() -> list:
    found = fuzzer().load_bases(REAL)
    if not found:
        pytest.skip(f"no shared real captures under {REAL}")
    return found


def _seed() -> str:
    return os.environ.get("CONFSCOPE_FUZZ_SEED") or fuzzer().today_seed()


def _describe(summary: dict) -> str:
    rows = [
        f"{f['verdict']} #{f['index']} {f['base']} {f['ops']} code={f['code']}: {f['detail']}"
        for f in summary["failures"][:10]
    ]
    return f"seed {summary['seed']}: " + "; ".join(rows)


def test_judge_separates_crashes_hangs_and_clean_exits() -> None:
    judge = fuzzer().judge
    assert judge(0, "", False) == "ok"
    assert judge(1, "confscope: policy violated", False) == "ok"
    assert judge(2, "confscope: error: not a capture", False) == "ok"
    assert judge(3, "confscope: internal error (KeyError: 'x')", False) == "crash"
    assert judge(-11, "", False) == "crash"  # SIGSEGV
    assert judge(0, "Traceback (most recent call last):\n  ...", False) == "crash"
    assert judge(None, "", True) == "hang"


def test_mutators_are_deterministic_and_change_the_capture(bases: list) -> None:
    fz = fuzzer()
    pcapng = next(b for b in bases if b.fmt == "pcapng")
    pcap = next(b for b in bases if b.fmt == "pcap")
    for name, mutator in fz.MUTATORS.items():
        for base in (pcap, pcapng):
            changed = 0
            for k in range(6):
                one = mutator(base, pcap, random.Random(f"t:{name}:{k}"))
                two = mutator(base, pcap, random.Random(f"t:{name}:{k}"))
                assert one == two, f"{name} is not deterministic"
                changed += one != base.data
            assert changed >= 3, f"{name} left {base.name} unchanged too often"
    assert fz.make_mutant(bases, "x", 7).data == fz.make_mutant(bases, "x", 7).data


def test_in_process_mutants_neither_crash_nor_hang(bases: list) -> None:
    summary = fuzzer().fuzz(COUNT, seed=_seed(), timeout=30, mode="inprocess", captures=REAL, save=None)
    assert summary["mutants"] == COUNT
    assert summary["crashes"] == 0 and summary["hangs"] == 0, _describe(summary)
    # The fuzz must reach the analysis, not only the "not a capture" exit: most mutants are read.
    assert summary["exit_codes"].get("0", 0) + summary["exit_codes"].get("1", 0) > COUNT // 2


def test_subprocess_mutants_neither_crash_nor_hang(bases: list) -> None:
    """A few mutants in fresh interpreters: signals and interpreter-level failures show only here."""
    summary = fuzzer().fuzz(
        SUBPROCESS_COUNT, seed=_seed(), timeout=60, mode="subprocess", captures=REAL, save=None, start=10**6
    )
    assert summary["mutants"] == SUBPROCESS_COUNT
    assert summary["crashes"] == 0 and summary["hangs"] == 0, _describe(summary)


# --- reassembly (DTLS fragments, QUIC CRYPTO frames, TCP segments): bench/fuzz_reassembly.py ----

REASSEMBLY_COUNT = int(os.environ.get("CONFSCOPE_FUZZ_REASSEMBLY_COUNT", "400"))


def _reassembly():
    return fuzzer().reassembly_module()


def test_reassembly_mutators_are_deterministic_and_change_the_flow() -> None:
    fr = _reassembly()
    for name, (kinds, mutate) in fr.MUTATORS.items():
        for base in fr.bases():
            if base.kind not in kinds:
                continue
            changed = 0
            for k in range(5):
                one = mutate(base, random.Random(f"t:{name}:{k}"))
                two = mutate(base, random.Random(f"t:{name}:{k}"))
                assert one == two, f"{name} is not deterministic"
                changed += one.packets != base.packets
            assert changed >= 3, f"{name} left {base.kind}:{base.server_port} unchanged too often"


def test_reassembly_mutants_neither_crash_nor_hang_nor_grow_memory() -> None:
    summary = _reassembly().fuzz_reassembly(REASSEMBLY_COUNT, seed=_seed(), timeout=10, captures=REAL)
    assert summary["mutants"] == REASSEMBLY_COUNT
    assert summary["crashes"] == 0 and summary["hangs"] == 0, summary["failures"][:5]
    assert summary["memory_ok"], summary["peak_rss_growth_mb"]
    reached = summary["protocols_reached"]
    # The mutants reach the reassembled messages, not only the first byte checks.
    for key in ("dtls", "quic", "tls", "dtls_cert_parsed", "sni_parsed"):
        assert reached.get(key, 0) > 0, reached
