"""What every command prints or checks the same way: one-line messages, the capture's warnings
and notes on stderr, and output paths checked before a long scan starts."""

from __future__ import annotations

import sys
from pathlib import Path

from analyzer.common.words import plural
from analyzer.errors import OptionError


def check_output_file(path: str) -> None:
    """`-o FILE` must be writable before a long scan starts: its folder must exist."""
    if path == "-":
        return
    target = Path(path)
    if target.is_dir():
        raise OptionError(f"-o {path}: is a folder; give a file name")
    parent = target.parent
    if not parent.is_dir():
        raise OptionError(f"-o {path}: no such folder {parent}")


def check_output_dir(path: str) -> None:
    """`-o DIR` may be missing (it is created) but must not be a file or lie under one."""
    for p in (Path(path), *Path(path).parents):
        if p.exists():
            if not p.is_dir():
                raise OptionError(f"-o {path}: {p} is a file, not a folder")
            return


def print_capture_notes(info: dict, name: str | None = None) -> None:
    """Warnings about the capture (truncated, damaged, skipped packets) on stderr, one line each,
    the same for every command that reads a capture."""
    where = f"{one_line(name)}: " if name else ""
    for w in list(info.get("warnings") or [])[:20]:
        print(f"confscope: warning: {where}{one_line(w)}", file=sys.stderr)
    skipped = int(info.get("skipped_packets") or 0)
    if skipped:
        reasons = ", ".join(
            f"{n:,} {reason.replace('_', ' ')}" for reason, n in sorted((info.get("skipped_by_reason") or {}).items())
        )
        detail = f" ({reasons})" if reasons else ""
        # Not a fault (ARP, LLDP and other non-IP frames are normal): a note, not a warning.
        print(f"confscope: note: {where}{plural(skipped, 'packet')} not in any flow{detail}", file=sys.stderr)


def one_line(text: object) -> str:
    """Errors and warnings may quote captured bytes or hostile file names: one visible line, no
    escapes (the report stage's one sanitiser)."""
    from analyzer.report.sanitize import one_line as visible_line

    return visible_line(str(text))
