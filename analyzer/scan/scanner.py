"""Scan a whole capture: one sequential pass, or, for a large file on a machine with more than one
core, byte ranges of the file scanned in parallel and combined.

Both give the same ScanResult (tests/test_scan_parallel.py compares them). The parallel scan is
the split path that `confscope batch` and Dask use (analyzer/scan/split.py): the same per-chunk
code runs on each range, and the partial flow tables and sample supersets combine exactly
(analyzer/scan/parts.py). It is chosen by `workers`:

- `workers=None` (the default, "auto"): parallel when the capture is a regular, uncompressed
  pcap/pcapng file of at least `parallel_min_bytes` and this process may use two or more cores
  that are idle: as many processes as cores minus the load average (rounded), at least one. On
  a saturated machine a second process only adds its overhead (fork, pickling the partial
  tables, for a session a second decode), measured in bench/README.md;
- `workers=1`: always one pass in this process;
- `workers=N`: up to N ranges when the file can be split (any size of at least two records).

The media tap (RTP state per stream: sequence, jitter, duplicates, the ECB sample) is sequential
by nature and has no exact merge across byte ranges. So a scan with `media=True` (a session) uses
two cores differently: a worker process runs the media tap over the whole file while this process
builds the flow table and samples over the whole file; each is the sequential code, so the result
is the one-pass result by construction (decoding is done twice, on two cores). Measured on the
1M-packet benchmark capture, the media tap itself costs little (the flow table and samples pass
without it takes 0.55-0.65 s of CPU, the pass with it 0.57-0.64 s; the media-only worker 0.45-0.5 s,
most of it decoding), so this does not shorten the critical path: `workers=None` (auto) scans a
session in one process, and `workers=2` is there for whoever measures otherwise.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from concurrent.futures import Executor

from analyzer.capture.source import CaptureSource
from analyzer.errors import OptionError
from analyzer.scan.chunks import ProgressFn, RawScan, ScanResult, finish_scan, media_pass, one_pass
from analyzer.scan.parallel import default_workers, process_pool
from analyzer.scan.split import is_splittable, scan_split

__all__ = [
    "PARALLEL_MIN_BYTES",
    "ProgressFn",
    "RawScan",
    "ScanResult",
    "idle_workers",
    "scan_capture",
    "scan_workers",
]

# Below this a second process costs about what it saves (fork, pickling the partial tables back,
# the re-ranking of samples): measured on the benchmark capture, 445 MB scans in parallel with a
# clear gain, 45 MB does not (bench/README.md).
PARALLEL_MIN_BYTES = 128 * 1024 * 1024


def scan_workers(
    source: CaptureSource, workers: int | None, *, media: bool, parallel_min_bytes: int = PARALLEL_MIN_BYTES
) -> int:
    """How many byte ranges `scan_capture` will scan `source` as (1 = one pass in this process)."""
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise OptionError(f"workers must be a positive integer or None (auto), not {workers!r}")
    if workers == 1 or not isinstance(source, str | os.PathLike):
        return 1
    try:
        st = os.stat(source)
    except OSError:
        return 1  # the reader reports the error
    if not stat.S_ISREG(st.st_mode) or not is_splittable(source):
        return 1
    if workers is None and media:
        return 1  # measured: the media-tap worker does not shorten a session's scan (module docstring)
    n = workers if workers is not None else (idle_workers() if st.st_size >= parallel_min_bytes else 1)
    return min(n, 2) if media else n  # a session's scan has two tasks (module docstring)


def idle_workers() -> int:
    """Cores this process may use that are not busy: cores - 1-minute load average, rounded."""
    cores = default_workers()
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):  # no load average on this platform: trust the core count
        return cores
    return max(1, min(cores, int(cores - load + 0.5)))


def scan_capture(
    source: CaptureSource,
    *,
    chunk_bytes: int | None = None,
    progress: ProgressFn | None = None,
    keep_samples: bool = True,
    media: bool = True,
    name: str | None = None,
    workers: int | None = None,
    parallel_min_bytes: int = PARALLEL_MIN_BYTES,
    executor: Executor | None = None,
) -> ScanResult:
    """Read, decode and aggregate a whole capture.

    `chunk_bytes`: read buffer size (default 8 MiB); `keep_samples`: keep the payloads dissection
    needs; `media`: run the media tap (streams, ECB statistic); `workers`, `parallel_min_bytes`:
    see the module docstring; `executor`: a process pool to run the other tasks in (else one is
    started for the call). `progress(bytes_read)` is called per chunk of this process's pass over
    the whole file, and once with the file size when a byte-range scan is done.
    """
    n = scan_workers(source, workers, media=media, parallel_min_bytes=parallel_min_bytes)
    if n > 1 and media:
        path = os.fspath(source)  # type: ignore[arg-type]  # scan_workers accepted only paths
        return _flows_and_media_apart(path, chunk_bytes, progress, keep_samples, name, executor)
    if n > 1:
        path = os.fspath(source)  # type: ignore[arg-type]  # scan_workers accepted only paths
        result = scan_split(path, n, executor=executor, chunk_bytes=chunk_bytes, keep_samples=keep_samples, name=name)
        if progress is not None:
            progress(os.path.getsize(path))
        return result
    raw = one_pass(
        source, chunk_bytes=chunk_bytes, progress=progress, keep_samples=keep_samples, media=media, name=name
    )
    return finish_scan(raw)


def _flows_and_media_apart(
    path: str,
    chunk_bytes: int | None,
    progress: ProgressFn | None,
    keep_samples: bool,
    name: str | None,
    executor: Executor | None,
) -> ScanResult:
    """The media tap in a worker process, the flow table and samples here (module docstring)."""
    with contextlib.ExitStack() as stack:
        pool = executor if executor is not None else stack.enter_context(process_pool(1))
        tap = pool.submit(media_pass, path, chunk_bytes, name)
        raw = one_pass(
            path, chunk_bytes=chunk_bytes, progress=progress, keep_samples=keep_samples, media=False, name=name
        )
        raw.media_tap = tap.result()
    return finish_scan(raw)


@contextlib.contextmanager
def scan_pool(workers: int) -> Iterator[Executor | None]:
    """A process pool for `scan_capture(executor=...)` whose workers exist when this returns, or
    None for workers < 2. A caller that starts threads of its own (the session's sha256 thread)
    opens it first, so the workers are forked from a single-threaded process (fast) rather than
    started from a fork server (which imports everything again)."""
    if workers < 2:
        yield None
        return
    with process_pool(workers - 1) as pool:
        pool.submit(int).result()  # forks the workers now
        yield pool
