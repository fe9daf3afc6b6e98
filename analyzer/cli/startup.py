"""Start-up of the command-line process: pandas without pyarrow.

pandas 3 imports pyarrow as soon as it is imported itself (for its string dtype). That costs the
`confscope` process ~38 MiB and ~0.1 s before it reads a byte, a quarter of the memory budget of
`confscope flows`. The CLI owns its process, so it imports pandas with pyarrow hidden: pandas then
keeps text in its Python-backed `str` dtype (the same values and missing-value semantics), and
pyarrow is imported normally where parquet is written or read. The library (`import analyzer`)
never does this; a host program's pandas is left as it is. CONFSCOPE_PANDAS_PYARROW=1 turns it off.
"""

from __future__ import annotations

import importlib
import os
import sys


def import_pandas_without_pyarrow() -> bool:
    """Import pandas with pyarrow hidden from it; False when pandas was already imported (or
    pyarrow already loaded, or the switch is set) and nothing was changed."""
    if os.environ.get("CONFSCOPE_PANDAS_PYARROW") == "1" or "pandas" in sys.modules or "pyarrow" in sys.modules:
        return False
    sys.modules["pyarrow"] = None  # type: ignore[assignment]  # makes `import pyarrow` raise ImportError
    try:
        importlib.import_module("pandas")
    finally:
        if "pyarrow" in sys.modules and sys.modules["pyarrow"] is None:
            del sys.modules["pyarrow"]
    return True
