"""Where tasks run: inline, a local process pool, or an existing Dask cluster.

No scheduling of our own: `concurrent.futures.ProcessPoolExecutor` locally and
`distributed.Client` for Dask. Task functions are top-level functions with picklable arguments.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any

from analyzer.errors import OptionError


def default_workers() -> int:
    """The number of cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def process_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A local process pool. Workers fork when this process runs no other thread (fast, and
    scripts need no `if __name__ == "__main__"` guard); otherwise (a progress bar's refresh
    thread, a Dask client) they come from a fork server, since forking a threaded parent can
    deadlock a child."""
    method = "fork" if threading.active_count() == 1 and os.name == "posix" else "forkserver"
    ctx = multiprocessing.get_context(method)
    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=ctx) as pool:
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
    fn: Callable[..., Any], args: list[tuple], *, workers: int = 1, scheduler: Any = None
) -> Iterator[tuple[int, Any, BaseException | None]]:
    """Yield (index, result, error) as tasks finish; one task's failure never stops the others.

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
    with process_pool(min(workers, len(args))) as pool:
        futs = {pool.submit(fn, *a): i for i, a in enumerate(args)}
        for fut in as_completed(futs):
            exc = fut.exception()
            # Dropped once read, so that results do not pile up in this process (streaming callers).
            yield futs.pop(fut), (None if exc else fut.result()), exc


def run_ordered(fn: Callable[..., Any], args: list[tuple], workers: int = 1, executor: Any = None) -> list[Any]:
    """Run fn(*a) for each a in parallel; results in the order of `args`, the first error raised."""
    if executor is not None:
        if hasattr(executor, "gather"):  # a distributed.Client
            return executor.gather([executor.submit(fn, *a, pure=False) for a in args])
        assert isinstance(executor, Executor)
        return list(executor.map(fn, *zip(*args, strict=True)))
    if workers <= 1 or len(args) <= 1:
        return [fn(*a) for a in args]
    with process_pool(min(workers, len(args))) as pool:
        return list(pool.map(fn, *zip(*args, strict=True)))
