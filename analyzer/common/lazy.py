"""A module imported on first attribute access.

The scan modules (scan, flows, decode, media) touch pandas only when a scan is finished. Binding
`pd` lazily lets the command line scan a capture in a forked child that never imports pandas,
while the parent process imports it at the same time (analyzer/cli/prescan.py).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class LazyModule(types.ModuleType):
    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self.__name__)
        self.__dict__.update({attr: getattr(module, attr)})  # later lookups skip __getattr__
        return getattr(module, attr)


def lazy_import(name: str) -> Any:
    """`name` itself when already imported, else a stand-in that imports it on first use."""
    return sys.modules.get(name) or LazyModule(name)
