"""The `confscope` process's one start-up measure: pandas imported without pyarrow.

pandas 3 imports pyarrow as soon as it is imported itself (for its string dtype). That costs the
process ~45 MiB of peak memory and 0.1-0.2 s before it reads a byte (measured side by side in
bench/README.md: worth more than 5% of `confscope flows` and `confscope analyze` on 1M packets).
The command line owns its process, so its entry point (`console`: the `confscope` script and
`python -m analyzer`) imports pandas with pyarrow hidden: pandas then keeps text in its
Python-backed `str` dtype (the same values and missing-value semantics), and pyarrow is imported
normally where parquet is written or read. That entry point is the switch, and `--plain-start`
turns it off: `main(argv)`, the library (`import analyzer`) and a host program's pandas are left
as they are.
"""

from __future__ import annotations

import importlib
import sys


def import_pandas_without_pyarrow() -> bool:
    """Import pandas with pyarrow hidden from it; False when pandas or pyarrow was already
    imported and nothing was changed."""
    if "pandas" in sys.modules or "pyarrow" in sys.modules:
        return False
    sys.modules["pyarrow"] = None  # type: ignore[assignment]  # makes `import pyarrow` raise ImportError
    try:
        importlib.import_module("pandas")
    finally:
        if "pyarrow" in sys.modules and sys.modules["pyarrow"] is None:
            del sys.modules["pyarrow"]
    return True


def console() -> None:
    """Entry point of the `confscope` script: pandas without pyarrow (unless --plain-start), then
    the command line."""
    from analyzer.cli.main import parse_args, run

    args = parse_args()
    if not args.plain_start:
        import_pandas_without_pyarrow()
    raise SystemExit(run(args))
