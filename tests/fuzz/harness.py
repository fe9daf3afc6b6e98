"""Helpers shared by the fuzz and resource-bound tests: the bench fuzzer as a module, a watchdog
that turns a hang into a test failure, and peak-RSS measurement of code run in a fresh process."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


@cache
def fuzzer() -> ModuleType:
    """bench/fuzz.py imported by path (bench/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("confscope_bench_fuzz", REPO / "bench" / "fuzz.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


class Hang(AssertionError):
    """The code under test outlived its watchdog."""


class _Alarm(BaseException):
    """Raised by SIGALRM; a BaseException so no `except Exception` in the code under test eats it."""


@contextlib.contextmanager
def watchdog(seconds: float, what: str = "call") -> Iterator[None]:
    """Fail with Hang when the block runs longer than `seconds` (main thread, POSIX only)."""

    def on_alarm(signum: int, frame: object) -> None:
        raise _Alarm

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _Alarm:
        raise Hang(f"{what} did not finish within {seconds} s") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_measured(code: str, env: dict[str, str] | None = None, timeout: float = 120) -> dict:
    """Run `code` in a fresh interpreter; it must print one JSON object as its last line.

    The returned dict gains `peak_rss_mb` (VmHWM of that process) and `baseline_rss_mb` (RSS
    after the imports the snippet needs, measured before the snippet's work starts).
    """
    prologue = textwrap.dedent(
        """
        import json as _json, resource as _resource
        def _peak_mb():
            # VmHWM belongs to this process image. ru_maxrss does not: Linux carries the parent's
            # peak across fork+exec, so a child of a large pytest process starts "at" its size.
            try:
                with open("/proc/self/status") as fh:
                    for line in fh:
                        if line.startswith("VmHWM:"):
                            return int(line.split()[1]) / 1024
            except OSError:
                pass
            return _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss / 1024
        import numpy, pandas, analyzer.scan.scanner, analyzer.session.build  # imports are not the bound under test
        _BASE = _peak_mb()
        def _emit(result):
            result["peak_rss_mb"] = _peak_mb()
            result["baseline_rss_mb"] = _BASE
            print(_json.dumps(result))
        """
    )
    # A Dask LocalCluster started earlier in the session leaves MALLOC_TRIM_THRESHOLD_,
    # OMP_NUM_THREADS and __DASK_* in os.environ; they change the child's memory profile (its
    # baseline RSS doubled), so measurements start from an environment without them.
    leaked = ("MALLOC_", "OMP_NUM_THREADS", "__DASK", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(leaked)}
    full_env = {**base_env, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-c", prologue + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=full_env,
        check=False,
    )
    assert proc.returncode == 0, f"measured snippet failed ({proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])
