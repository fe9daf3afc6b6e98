"""`confscope analyze` and `confscope demo`: run the API per capture, write reports, print the
terminal summary. Only argument handling and output live here."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analyzer.cli.output import check_output_dir, print_capture_notes
from analyzer.cli.progress import EXIT_OK, EXIT_USAGE, progress_bar
from analyzer.cli.workers import parallel_options
from analyzer.errors import ConfscopeError, OptionError
from analyzer.report import parse_formats, report_dir, write_reports
from analyzer.report.sanitize import one_line


def run_analyze(args: argparse.Namespace) -> int:
    from rich.console import Console

    from analyzer.report import render_summary
    from analyzer.session.build import analyze

    formats = parse_formats(args.format)
    check_output_dir(args.output)
    # Redirected output (CI logs, `| tee`) would otherwise wrap at 80 columns.
    console = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 132)
    worst = EXIT_OK
    used: set[str] = set()
    for capture in args.captures:
        try:
            with progress_bar(capture, getattr(args, "progress", "auto")) as progress:
                session = analyze(
                    capture,
                    geoip=args.geoip,
                    allow=args.allow,
                    region=args.region,
                    policy=args.policy,
                    vantage=args.vantage,
                    progress=progress,
                    anonymize=getattr(args, "anonymize", None),
                    anonymize_servers=getattr(args, "anonymize_servers", False),
                    **({"fifo_wait": args.fifo_wait} if getattr(args, "fifo_wait", None) is not None else {}),
                    **parallel_options(args),
                )
        except OptionError:
            raise
        except ConfscopeError as exc:
            if len(args.captures) == 1:
                raise
            # The message may quote a hostile file name: one visible line, no escapes.
            print(f"confscope: error: {one_line(str(exc))}", file=sys.stderr)
            worst = max(worst, EXIT_USAGE)
            continue
        print_capture_notes(session.report["capture"], capture if len(args.captures) > 1 else None)
        out = report_dir(args.output, capture, used)
        written = write_reports(session.report, session.flows, out, formats)
        render_summary(session.report, console)
        console.print(f"reports: {', '.join(str(p) for p in written.values())}", markup=False, highlight=False)
        worst = max(worst, session.exit_code)
    return worst


def run_demo(args: argparse.Namespace) -> int:
    from analyzer.capture.demo import write_demo_capture

    target = args.capture or str(Path(args.output) / "demo-zoom-call.pcap")
    path = write_demo_capture(target)
    print(f"demo capture written: {path}")
    ns = argparse.Namespace(
        captures=[str(path)],
        output=args.output,
        format=args.format,
        geoip=[],
        allow=None,
        region="north-america",
        policy=None,
        vantage=None,
        progress="never",
    )
    return run_analyze(ns)
