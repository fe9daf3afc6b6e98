"""--workers and --parallel-min-mb of `confscope flows` and `confscope analyze`: how many processes
scan one capture (analyzer/scan/scanner.py), turned into the API's keyword arguments."""

from __future__ import annotations

import argparse

from analyzer.errors import OptionError


def add_workers_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        default="auto",
        metavar="N|auto",
        help="processes that scan one capture (flows: byte ranges in parallel; analyze: 2 runs the media "
        "tap beside the flow table); auto (default): flows uses the idle cores (cores minus load "
        "average) for an uncompressed file of at least --parallel-min-mb, analyze one process",
    )
    p.add_argument(
        "--parallel-min-mb",
        type=float,
        default=None,
        metavar="MB",
        help="size from which --workers auto scans on several cores (default 134, i.e. 128 MiB)",
    )


def parallel_options(args: argparse.Namespace) -> dict:
    """`workers` / `parallel_min_bytes` keyword arguments of the API from --workers / --parallel-min-mb."""
    out: dict = {"workers": _workers(getattr(args, "workers", "auto"))}
    mb = getattr(args, "parallel_min_mb", None)
    if mb is not None:
        if mb < 0:
            raise OptionError("--parallel-min-mb must be >= 0")
        out["parallel_min_bytes"] = int(mb * 1e6)
    return out


def _workers(text: str) -> int | None:
    """--workers: "auto" -> None, else a positive integer."""
    if text == "auto":
        return None
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise OptionError(f"--workers must be a positive integer or auto, not {text!r}")
    return n
