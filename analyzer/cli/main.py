"""Command line: parse arguments, show progress, call the API, map errors to exit codes.

No analysis logic lives here. Exit codes: 0 done, 1 policy violations or critical findings,
2 bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from analyzer import __version__
from analyzer.cli.output import check_output_file, one_line, print_capture_notes
from analyzer.cli.progress import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, progress_bar
from analyzer.cli.workers import add_workers_options, parallel_options
from analyzer.errors import ConfscopeError, OptionError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other usage error
        self.exit(EXIT_USAGE, f"confscope: error: {message}\n")


CAPTURE_HELP = "pcap or pcapng file, optionally gzip-compressed"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="confscope", description="Where did this call travel, and where were its keys handed out?")
    p.add_argument("--version", action="version", version=f"confscope {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    p.add_argument(
        "--plain-start",
        action="store_true",
        help="import pandas as it is (by default the confscope script hides pyarrow from it, see docs/internals.md)",
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    # --debug is accepted after the subcommand too (`confscope analyze x --debug`).
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    a = sub.add_parser("analyze", parents=[common], help="analyse captures and write reports")
    a.add_argument("captures", nargs="+", metavar="CAPTURE", help=CAPTURE_HELP)
    a.add_argument(
        "-o", "--output", default="reports", metavar="DIR",
        help="folder for the reports, one subfolder per capture; created if missing (default: %(default)s)",
    )
    a.add_argument(
        "--format", default="json,md,html,csv,parquet",
        help="comma-separated report formats out of json,md,html,csv,parquet (default: %(default)s)",
    )
    _add_geo_policy_options(a)
    _add_progress_option(a)
    _add_fifo_option(a)
    add_workers_options(a)

    f = sub.add_parser("flows", parents=[common], help="print or write the flow table of one capture")
    f.add_argument("capture", metavar="CAPTURE", help=CAPTURE_HELP)
    f.add_argument("--format", default="csv", choices=("csv", "json", "parquet"), help="(default: %(default)s)")
    f.add_argument(
        "-o", "--output", default="-", metavar="FILE",
        help="file to write; its folder must exist (default: standard output, csv and json only)",
    )
    f.add_argument(
        "--engine", default="native", choices=("native", "tshark", "scapy"),
        help="who builds the 5-tuple flows (default: %(default)s); app, protocol, roles and hostname come "
        "from confscope's dissection whatever the engine",
    )
    f.add_argument("--no-dissect", action="store_true", help="5-tuple flows only: skip dissection and apps")
    f.add_argument(
        "--columns", metavar="COL,COL",
        help="only these columns, in this order (e.g. flow_id,server_ip,app,roles,hostname); "
        "safer than `cut`, which splits quoted cells (default: all)",
    )
    add_workers_options(f)
    _add_progress_option(f)
    _add_fifo_option(f)

    g = sub.add_parser("geo", parents=[common], help="geolocate addresses")
    g.add_argument("ips", nargs="+", metavar="IP", help="IPv4 or IPv6 addresses")
    g.add_argument("--format", default="table", choices=("table", "json", "csv"), help="(default: %(default)s)")
    g.add_argument(
        "--geoip", action="append", default=[], metavar="DB.mmdb",
        help="MaxMind-format database asked before the embedded data (repeatable)",
    )

    from analyzer.cli.batch import EPILOG as BATCH_EPILOG

    b = sub.add_parser(
        "batch", parents=[common], help="analyse many captures (local processes or a Dask cluster)",
        epilog=BATCH_EPILOG,
    )
    b.add_argument("inputs", nargs="+", metavar="DIR|GLOB|FILE", help="captures, folders of captures or globs")
    b.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for reports, dataset and summary")
    b.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, metavar="N",
        help="local worker processes (default: the number of CPUs, here %(default)s)",
    )
    b.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler, e.g. tcp://host:8786")
    b.add_argument("--force", action="store_true", help="redo captures that already have a report")
    b.add_argument("--merge", action="store_true", help="treat all inputs as one capture (rotated files)")
    b.add_argument(
        "--split-min-mb",
        type=float,
        default=None,
        metavar="MB",
        help="a lone capture at least this large is scanned as byte ranges by the workers, without "
        "media streams (default 4295, i.e. 4 GiB)",
    )
    b.add_argument(
        "--format", default="json,md,html,csv,parquet", help="report formats per capture (default: %(default)s)"
    )
    b.add_argument(
        "--worker-memory", type=int, default=None, metavar="MIB",
        help="bound each local worker's address space (RLIMIT_AS); a capture over it fails alone",
    )
    _add_geo_policy_options(b)
    _add_progress_option(b)

    from analyzer.cli.campaign import add_parser as add_campaign

    add_campaign(sub, common, _add_geo_policy_options, os.cpu_count() or 1)

    v = sub.add_parser("verify", parents=[common], help="compare the native engine with tshark on one capture")
    v.add_argument("capture", metavar="CAPTURE", help=CAPTURE_HELP)
    v.add_argument(
        "--timeout", type=float, default=None, metavar="SECONDS", help="stop tshark after this (default 600)"
    )

    d = sub.add_parser("demo", parents=[common], help="write the Citizen-Lab-like demo capture and analyse it")
    d.add_argument("-o", "--output", default="reports", metavar="DIR", help="(default: %(default)s)")
    d.add_argument(
        "--capture", default=None, metavar="FILE",
        help="where to write the demo capture (default: DIR/demo-zoom-call.pcap)",
    )
    d.add_argument("--format", default="json,md,html,csv,parquet", help="(default: %(default)s)")
    return p


def _add_geo_policy_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--geoip", action="append", default=[], metavar="DB.mmdb", help="MaxMind-format database (repeatable)"
    )
    grp = p.add_mutually_exclusive_group()
    grp.add_argument(
        "--allow", metavar="CC,CC", help="countries allowed to carry the call (ISO codes; USA, UK accepted)"
    )
    grp.add_argument("--region", metavar="NAME", help="a named region, e.g. north-america, eu")
    grp.add_argument("--policy", metavar="FILE.toml", help="allowed countries per role")
    p.add_argument(
        "--vantage", metavar="CC|LAT,LON",
        help="where the capture was taken (default: learnt from the capture's STUN mapped addresses)",
    )
    p.add_argument(
        "--anonymize",
        metavar="KEY",
        help="pseudonymise local/client addresses, STUN usernames and MACs (keyed, prefix-preserving, "
        "after geolocation); KEY may also be env:NAME or file:PATH",
    )
    p.add_argument("--anonymize-servers", action="store_true", help="with --anonymize: servers too")


def _add_fifo_option(p: argparse.ArgumentParser) -> None:
    from analyzer.capture.source import FIFO_WAIT_SECONDS

    p.add_argument(
        "--fifo-wait", type=float, default=FIFO_WAIT_SECONDS, metavar="SECONDS",
        help="a capture that is a FIFO must get a writer within this time (default %(default)g); "
        "`-` reads standard input",
    )


def _add_progress_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--progress", choices=("auto", "always", "never"), default="auto",
        help="progress bar on stderr; auto: on a terminal for captures above 20 MB (default: %(default)s)",
    )


def cmd_flows(args: argparse.Namespace) -> int:
    from analyzer.session.flowtable import flow_table

    check_output_file(args.output)
    with progress_bar(args.capture, args.progress) as progress:
        table, info = flow_table(
            args.capture,
            engine=args.engine,
            dissect=not args.no_dissect,
            progress=progress,
            fifo_wait=args.fifo_wait,
            **parallel_options(args),
        )
    from analyzer.report.tabular import write_flow_table
    from analyzer.session.flowtable import select_columns

    if args.columns:
        table = select_columns(table, args.columns)
    write_flow_table(table, args.format, args.output)
    print_capture_notes(info)
    return EXIT_OK


def cmd_geo(args: argparse.Namespace) -> int:
    import ipaddress

    from analyzer.cli.geo import run_geo

    bad = []
    for ip in args.ips:
        try:
            ipaddress.ip_address(ip.strip())
        except ValueError:
            bad.append(ip)
    if bad:
        raise OptionError(f"not an IP address: {', '.join(bad)}")
    sys.stdout.write(run_geo(args.ips, args.format, args.geoip))
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from analyzer.engines.compare import run_verify
    from analyzer.report.sanitize import visible

    text, code = run_verify(args.capture, timeout=args.timeout)
    print("\n".join(visible(line) for line in text.splitlines()))  # it quotes the file name
    return code


def cmd_analyze(args: argparse.Namespace) -> int:
    from analyzer.cli.analyze import run_analyze

    return run_analyze(args)


def cmd_batch(args: argparse.Namespace) -> int:
    from analyzer.cli.batch import run_batch_cli

    return run_batch_cli(args)


def cmd_campaign(args: argparse.Namespace) -> int:
    from analyzer.cli.campaign import run_campaign_cli

    return run_campaign_cli(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from analyzer.cli.analyze import run_demo

    return run_demo(args)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "flows": cmd_flows,
    "geo": cmd_geo,
    "verify": cmd_verify,
    "analyze": cmd_analyze,
    "batch": cmd_batch,
    "campaign": cmd_campaign,
    "demo": cmd_demo,
}




def main(argv: Sequence[str] | None = None) -> int:
    """The command line without the console's start-up measure (analyzer/cli/startup.py);
    returns the exit code."""
    return run(parse_args(argv))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed arguments; bare `confscope` prints the usage with the command list (not just
    "required: command") and exits 2."""
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else list(argv)):
        parser.print_help(sys.stderr)
        raise SystemExit(EXIT_USAGE)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    """Run parsed arguments; returns the exit code."""
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return COMMANDS[args.command](args)
    except ConfscopeError as exc:
        if args.debug:
            raise
        text = exc.cli_message() if isinstance(exc, OptionError) else str(exc)
        print(f"confscope: error: {one_line(text)}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # `confscope flows x.pcap | head` closes the pipe early; that is not an error.
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        print("confscope: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("confscope: error: out of memory", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a bug, not bad input: still one line, but a distinct exit code
        if args.debug:
            raise
        if isinstance(exc, OSError) and exc.filename:
            # A file the user named (or a folder to write into) cannot be read or written: bad
            # input, not a bug. Only errors that name a path count.
            print(f"confscope: error: {one_line(exc.filename)}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_USAGE
        print(
            f"confscope: internal error ({type(exc).__name__}: {one_line(exc)}); rerun with --debug and report it",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
