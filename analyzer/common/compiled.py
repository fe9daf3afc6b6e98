"""The optional C extensions of the hot path, and the switch that turns them off.

Each extension (record walk, frame decoding, payload kinds, grouping) has a pure numpy/Python twin that
gives identical results; the tests compare the two. CONFSCOPE_PURE_PYTHON=1 forces the twins,
which is also what runs when the package was installed without a C compiler.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType


def load(name: str) -> ModuleType | None:
    """The compiled module `name` (e.g. "analyzer.decode._decode"), or None to use the fallback."""
    if os.environ.get("CONFSCOPE_PURE_PYTHON"):
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
