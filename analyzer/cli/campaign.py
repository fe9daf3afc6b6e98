"""`confscope campaign`: arguments in, one closing line out; the work is
`analyzer.campaign.campaign`.

Exit codes: 0 done; 1 some capture could not be analysed or some session report could not be
read (the campaign is written without it); 2 bad usage, or no session at all.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from analyzer.common.words import plural
from analyzer.report.sanitize import one_line

EPILOG = (
    "inputs: captures, folders of captures, or batch folders written by `confscope batch`. "
    "manifest: CSV (header: capture,app,vantage,date,label,...) or TOML ([[captures]] tables); labels left "
    "empty are inferred from the capture where it tells (app, vantage country, UTC date). "
    "exit status: 0 done; 1 a capture or report could not be read; 2 bad usage or no session."
)


def add_parser(
    sub: argparse._SubParsersAction,
    common: argparse.ArgumentParser,
    geo_policy: Callable[[argparse.ArgumentParser], None],
    workers_default: int,
) -> argparse.ArgumentParser:
    c = sub.add_parser("campaign", parents=[common], epilog=EPILOG,
                       help="compare many calls across apps, vantages and dates (captures or batch folders)")
    c.add_argument("inputs", nargs="*", metavar="CAPTURE|DIR|BATCH_DIR")
    c.add_argument("-o", "--output", required=True, metavar="DIR")
    c.add_argument("--manifest", metavar="FILE.csv|FILE.toml", help="what each capture was (app, vantage, date...)")
    c.add_argument("--by", default="app,vantage,date", metavar="LABEL,LABEL",
                   help="labels to group by (default app,vantage,date; any manifest column)")
    c.add_argument("--diff", metavar="LABEL=A:B", help="what appeared or disappeared, e.g. date=2026-01-01:2026-02-01")
    c.add_argument("--workers", type=int, default=workers_default)
    c.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler, e.g. tcp://host:8786")
    c.add_argument("--force", action="store_true", help="re-analyse captures that already have a report")
    geo_policy(c)
    return c


def run_campaign_cli(args: argparse.Namespace) -> int:
    from analyzer.campaign.run import campaign
    from analyzer.session.options import SESSION_OPTIONS  # imported here: --help stays light

    options = {k: getattr(args, k, None) for k in SESSION_OPTIONS}
    result = campaign(
        args.inputs,
        manifest=args.manifest,
        output=args.output,
        by=[b for b in args.by.split(",") if b.strip()],
        diff=args.diff,
        workers=args.workers,
        scheduler=args.scheduler,
        force=args.force,
        **{k: v for k, v in options.items() if v is not None},
    )
    failed = result.meta.get("captures_failed") or []
    for f in failed:
        print(f"confscope: error: {one_line(f['capture'])}: {one_line(f['error'])}", file=sys.stderr)
    for f in result.failures.itertuples(index=False):
        print(f"confscope: error: {one_line(f.session)}: {one_line(f.error)}", file=sys.stderr)
    unmatched = result.meta.get("manifest_unmatched") or []
    if unmatched:
        rows = plural(len(unmatched), "manifest row")
        print(f"confscope: warning: {rows} matched no session, e.g. {one_line(unmatched[0])}", file=sys.stderr)
    print(one_line(
        f"confscope campaign: {len(result.sessions)} sessions, {len(failed)} captures failed, "
        f"{len(result.failures)} unreadable reports, {len(result.inconsistent)} inconsistent app/vantage/role "
        f"groups, {len(result.diff)} changes; report: {result.output / 'campaign.html'}"
    ))
    if len(result.sessions) == 0:
        return 2
    return 1 if failed or len(result.failures) else 0

