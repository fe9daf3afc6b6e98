"""Scanning a capture in a forked child while the command line's process starts up.

A `confscope` run spends ~0.35 s importing pandas and the later stages before it could read a
byte, and a 2-core machine has a second core idle meanwhile. So `confscope flows` and `confscope
analyze` fork at once: the child imports only numpy and the scan modules (none of which imports
pandas, see analyzer/common/lazy.py), runs `scan_raw` and sends the RawScan back through a pipe; the
parent carries on with its imports and, when it reaches `scan_capture` for the same file and
options, takes the child's result instead of scanning again.

Only the command line does this, only for regular files and when no progress bar is shown (the
bar would have to follow the child). A child that fails in any unexpected way (killed, result
not readable) is ignored and the parent scans the file itself; an error the scan raises on
purpose (an unreadable capture) is re-raised in the parent as if it had scanned. The library API
never forks. CONFSCOPE_PRESCAN=0 turns this off.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import stat
import sys
from dataclasses import dataclass
from typing import Any


@dataclass
class _Pending:
    path: str
    options: dict[str, Any]
    pid: int
    fd: int


_pending: _Pending | None = None


def enabled() -> bool:
    # Linux only: macOS frameworks are not fork-safe, and Windows has no fork.
    return sys.platform.startswith("linux") and os.environ.get("CONFSCOPE_PRESCAN", "1") != "0"


def start(path: str, options: dict[str, Any]) -> bool:
    """Fork a child that scans `path` with scan_raw(**options); False when not started."""
    global _pending
    if _pending is not None or not enabled():
        return False
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        read_fd, write_fd = os.pipe()
        pid = os.fork()
    except OSError:
        return False
    if pid == 0:  # the child: scan, send, leave without running the parent's exit handlers
        os.close(read_fd)
        _child(path, options, write_fd)
    os.close(write_fd)
    _pending = _Pending(path, dict(options), pid, read_fd)
    return True


def _child(path: str, options: dict[str, Any], fd: int) -> None:
    code = 0
    try:
        from analyzer.scan.scanner import scan_raw

        try:
            payload: tuple[str, Any] = ("ok", scan_raw(path, **options))
        except Exception as exc:  # raised in the parent instead (e.g. an unreadable capture)
            payload = ("error", exc)
        data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def collect(source: Any, options: dict[str, Any]) -> Any:
    """The child's RawScan when it scanned this source with these options, else None."""
    global _pending
    pending = _pending
    if pending is None or not isinstance(source, str | os.PathLike) or os.fspath(source) != pending.path:
        return None
    if options != pending.options:
        return None
    _pending = None
    with os.fdopen(pending.fd, "rb") as fh:
        data = fh.read()
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pending.pid, 0)
    try:
        kind, value = pickle.loads(data)
    except Exception:
        return None
    if kind == "error":
        raise value
    return value


def cancel() -> None:
    """Stop and reap a child whose result was never collected (the command ended before it
    needed the scan, e.g. on a bad option)."""
    global _pending
    pending, _pending = _pending, None
    if pending is None:
        return
    os.close(pending.fd)
    with contextlib.suppress(OSError):
        os.kill(pending.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pending.pid, 0)


# What each command imports and loads once the scan is done; with a child scanning, the parent
# would only wait, so it does this meanwhile.
_WARM_MODULES = {
    "flows": ("analyzer.session.flowtable", "analyzer.classify", "analyzer.dissect.flowfacts", "cryptography.x509"),
    "analyze": (
        "analyzer.session.build", "analyzer.classify", "analyzer.dissect.flowfacts", "cryptography.x509",
        "analyzer.geo.resolver", "analyzer.geo.borders", "analyzer.report.jsonout", "analyzer.report.terminal",
    ),
}  # fmt: skip


def pending() -> bool:
    return _pending is not None


def warm_up(command: str) -> None:
    """Import (and load the cached data of) what `command` needs after the scan."""
    import importlib

    for name in _WARM_MODULES.get(command, ()):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    from analyzer.classify.signatures import load_signatures

    load_signatures()
    if command == "analyze":
        from analyzer.geo import borders

        borders.distance_to_country_km(0.0, 0.0, "US")  # decodes or reads the cached border rings


def plan_for_command(args: Any) -> tuple[str, dict[str, Any]] | None:
    """(capture, scan options) that `confscope flows` / `confscope analyze` will scan first, with
    the options those commands pass to scan_capture; None for other commands."""
    from analyzer.scan.defaults import analyze_scan_options, flows_scan_options

    if args.command == "flows" and getattr(args, "engine", "native") == "native":
        return args.capture, flows_scan_options(not args.no_dissect)
    if args.command == "analyze" and args.captures:
        return args.captures[0], analyze_scan_options()
    return None
