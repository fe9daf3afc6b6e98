"""Where tasks run: inline, a local process pool, or an existing Dask cluster.

No scheduling of our own: `concurrent.futures.ProcessPoolExecutor` locally and
`distributed.Client` for Dask. Task functions are top-level functions with picklable arguments.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any

from analyzer.errors import OptionError


def default_workers() -> int:
    """The number of cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class WorkerCrashed(RuntimeError):
    """A worker process died while running this task (killed by a signal, e.g. the OOM killer,
    or out of memory under --worker-memory); the task was retried alone and died again."""


def _limit_memory(max_bytes: int | None) -> None:
    # Worker initializer: an address-space bound turns a runaway allocation into a MemoryError
    # (reported for that task) or, at worst, the death of this worker only.
    if max_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))


@contextmanager
def process_pool(workers: int, max_memory: int | None = None) -> Iterator[ProcessPoolExecutor]:
    """A local process pool. Workers fork when this process runs no other thread (fast, and
    scripts need no `if __name__ == "__main__"` guard); otherwise (a progress bar's refresh
    thread, a Dask client) they come from a fork server, since forking a threaded parent can
    deadlock a child. `max_memory` bounds each worker's address space (RLIMIT_AS, bytes)."""
    method = "fork" if threading.active_count() == 1 and os.name == "posix" else "forkserver"
    ctx = multiprocessing.get_context(method)
    init = {"initializer": _limit_memory, "initargs": (max_memory,)} if max_memory else {}
    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=ctx, **init) as pool:
        yield pool


@contextmanager
def dask_client(scheduler: Any) -> Iterator[Any]:
    """A `distributed.Client` for an address (closed afterwards) or the Client given."""
    if hasattr(scheduler, "submit") and hasattr(scheduler, "gather"):
        yield scheduler
        return
    try:
        from distributed import Client
    except ImportError:
        raise OptionError("--scheduler needs the 'distributed' package (pip install distributed)") from None
    try:
        client = Client(str(scheduler), timeout="10s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise OptionError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
    try:
        yield client
    finally:
        client.close()


def run_unordered(
    fn: Callable[..., Any],
    args: list[tuple],
    *,
    workers: int = 1,
    scheduler: Any = None,
    max_memory: int | None = None,
) -> Iterator[tuple[int, Any, BaseException | None]]:
    """Yield (index, result, error) as tasks finish; one task's failure never stops the others.

    Locally, a worker that dies (signal, OOM killer) breaks the whole ProcessPoolExecutor; the
    tasks it took down with it are then run again, each in a fresh one-worker pool (up to
    `workers` at a time), so only the task that kills its worker again fails, with WorkerCrashed.
    `max_memory` bounds each local worker's address space (bytes, RLIMIT_AS).

    >>> sorted(r for _i, r, _e in run_unordered(pow, [(2, 3), (3, 2)]))
    [8, 9]
    """
    if scheduler is not None:
        from distributed import as_completed as dask_completed

        with dask_client(scheduler) as client:
            futures = {client.submit(fn, *a, pure=False): i for i, a in enumerate(args)}
            for fut in dask_completed(futures):
                # Dropped once read: the result is released on the worker, not held until the end.
                i = futures.pop(fut)
                try:
                    yield i, fut.result(), None
                except Exception as exc:
                    yield i, None, exc
        return
    if workers <= 1 or len(args) <= 1:
        for i, a in enumerate(args):
            try:
                yield i, fn(*a), None
            except Exception as exc:
                yield i, None, exc
        return
    unfinished: list[int] = []
    with process_pool(min(workers, len(args)), max_memory) as pool:
        futs = {pool.submit(fn, *a): i for i, a in enumerate(args)}
        for fut in as_completed(futs):
            exc = fut.exception()
            if isinstance(exc, BrokenProcessPool):
                unfinished.append(futs.pop(fut))  # maybe the culprit, maybe only a bystander
                continue
            # Dropped once read, so that results do not pile up in this process (streaming callers).
            yield futs.pop(fut), (None if exc else fut.result()), exc
    if unfinished:
        yield from _run_isolated(fn, args, sorted(unfinished), workers, max_memory)


def _run_isolated(
    fn: Callable[..., Any], args: list[tuple], indices: list[int], workers: int, max_memory: int | None
) -> Iterator[tuple[int, Any, BaseException | None]]:
    """Each task in its own one-worker pool: a crash now belongs to that task alone."""
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(indices)))) as threads:
        futs = {threads.submit(_one_alone, fn, args[i], max_memory): i for i in indices}
        for fut in as_completed(futs):
            result, exc = fut.result()
            yield futs[fut], result, exc


def _one_alone(fn: Callable[..., Any], a: tuple, max_memory: int | None) -> tuple[Any, BaseException | None]:
    with process_pool(1, max_memory) as pool:
        fut = pool.submit(fn, *a)
        procs = list((getattr(pool, "_processes", None) or {}).values())  # to name the signal if it dies
        try:
            return fut.result(), None
        except BrokenProcessPool:
            procs = procs or list((getattr(pool, "_processes", None) or {}).values())
        except Exception as exc:
            return None, exc
    return None, WorkerCrashed(f"worker process died{_how(procs)}; retried alone, it died again")


def _how(procs: list) -> str:
    for p in procs:
        code = getattr(p, "exitcode", None)
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f" ({name}{', out of memory?' if -code == signal.SIGKILL else ''})"
    return ""


def run_ordered(
    fn: Callable[..., Any], args: list[tuple], workers: int = 1, executor: Any = None, *, inline_first: bool = False
) -> list[Any]:
    """Run fn(*a) for each a in parallel; results in the order of `args`, the first error raised.

    `inline_first`: without an executor, this process runs the first task itself while a pool of
    `workers - 1` processes runs the rest (one process fewer to start, one result less to ship).
    """
    if executor is not None:
        if hasattr(executor, "gather"):  # a distributed.Client
            return executor.gather([executor.submit(fn, *a, pure=False) for a in args])
        assert isinstance(executor, Executor)
        return list(executor.map(fn, *zip(*args, strict=True)))
    if workers <= 1 or len(args) <= 1:
        return [fn(*a) for a in args]
    if inline_first and workers >= 2:
        with process_pool(min(workers - 1, len(args) - 1)) as pool:
            futures = [pool.submit(fn, *a) for a in args[1:]]
            first = fn(*args[0])
            return [first, *(f.result() for f in futures)]
    with process_pool(min(workers, len(args))) as pool:
        return list(pool.map(fn, *zip(*args, strict=True)))
