"""Exit codes and the progress bar every command shares."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

# 0 done; 1 policy violated (like a linter, for pipelines); 2 bad usage or unreadable input; 3 a bug.
EXIT_OK, EXIT_VIOLATION, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


def _progress_total(path: str, mode: str) -> int:
    """The capture's size when a progress bar is to be shown for it, else 0."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return 0
    show = mode == "always" or (mode == "auto" and sys.stderr.isatty() and size > 20_000_000)
    return size if show else 0


def shows_progress(path: str, mode: str) -> bool:
    return _progress_total(path, mode) > 0


@contextmanager
def progress_bar(path: str, mode: str):
    """A rich progress bar by bytes read; shown on a terminal for captures above a few MB."""
    size = _progress_total(path, mode)
    if not size:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(Path(path).name[:40], total=size)
        yield lambda done: bar.update(task, completed=min(done, size))
