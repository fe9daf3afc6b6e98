"""`confscope batch`: arguments in, a progress bar and a closing line out; the work is
`analyzer.batch.run.run_batch`.

Exit codes: 0 every capture analysed and none violates the policy; 1 a capture failed, or a
policy violation / critical finding; 2 bad usage, or no capture could be analysed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from analyzer.errors import OptionError
from analyzer.report.sanitize import one_line

EPILOG = (
    "exit status: 0 all captures analysed, no policy violation; 1 at least one capture failed, or a policy "
    "violation or critical finding; 2 bad usage or no capture could be analysed. Failed captures are listed "
    "on stderr and in OUT/summary.html. Re-running skips captures already done with the same options."
)


def run_batch_cli(args: argparse.Namespace) -> int:
    from analyzer.batch.run import run_batch
    from analyzer.report import parse_formats

    formats = parse_formats(args.format)
    from analyzer.session.options import SESSION_OPTIONS  # imported here: --help stays light

    options = {k: getattr(args, k, None) for k in SESSION_OPTIONS}
    with _Progress(getattr(args, "progress", "auto")) as on_result:
        result = run_batch(
            args.inputs,
            args.output,
            workers=args.workers,
            scheduler=args.scheduler,
            force=args.force,
            merge=getattr(args, "merge", False),
            formats=formats,
            on_result=on_result,
            max_memory=args.worker_memory * 1024 * 1024 if getattr(args, "worker_memory", None) else None,
            **_split_rule(args),
            **{k: v for k, v in options.items() if v is not None},
        )
    for f in result.failed:
        print(f"confscope: error: {one_line(f['capture'])}: {one_line(f['error'])}", file=sys.stderr)
    print(closing_line(result))
    return result.exit_code


def _split_rule(args: argparse.Namespace) -> dict[str, int]:
    """--split-min-mb as run_batch's `split_min_bytes` (absent: the library's default)."""
    mb = getattr(args, "split_min_mb", None)
    if mb is None:
        return {}
    if mb < 0:
        raise OptionError("--split-min-mb must be >= 0")
    return {"split_min_bytes": int(mb * 1e6)}


def closing_line(result: Any) -> str:
    """One line for the end of a batch: what happened and where to look."""
    where = result.summary_paths.get("html") or result.out
    viol = len(result.summary.get("sessions_with_violations", []))
    return one_line(
        f"confscope batch: {len(result.analysed)} analysed, {len(result.skipped)} skipped (already done), "
        f"{len(result.failed)} failed, {viol} with policy violations; summary: {where}"
    )


class _Progress:
    """A rich progress bar over captures (stderr, only on a terminal unless --progress always)."""

    def __init__(self, mode: str) -> None:
        self.show = mode == "always" or (mode == "auto" and sys.stderr.isatty())
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> Any:
        if not self.show:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self.bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), transient=True)
        self.bar.__enter__()
        return self.advance

    def advance(self, _result: dict[str, Any], total: int) -> None:
        if self.task is None:
            self.task = self.bar.add_task("captures", total=total)
        self.bar.advance(self.task)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
