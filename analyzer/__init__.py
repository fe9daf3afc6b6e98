"""confscope: through which countries and networks did a call travel, and where were its keys handed out?

Public API (pandas in, pandas out):

- ``analyze(path_or_bytes_or_file, **options) -> Session``: one capture.
- ``analyze_many(paths, workers=None, scheduler=None, **options) -> Dataset``: many captures,
  on local processes or a Dask cluster.
- ``campaign(inputs, manifest=None, output=None, by=("app", "vantage", "date"), diff=None, ...)
  -> Campaign``: many calls compared across apps, vantages and dates (pandas frames).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = [
    "Campaign", "ConfscopeError", "Dataset", "OptionError", "Session", "__version__", "analyze", "analyze_many",
    "campaign",
]


def __getattr__(name: str) -> Any:
    # Imported on first use so that `import analyzer` (and the CLI's --help) stays fast.
    if name in ("analyze", "Session"):
        from analyzer import api

        return getattr(api, name)
    if name == "analyze_many":
        from analyzer.batch.run import analyze_many

        return analyze_many
    if name in ("campaign", "Campaign"):
        import analyzer.campaign.run as campaign

        return getattr(campaign, name)
    if name in ("ConfscopeError", "OptionError"):
        import analyzer.errors as errors

        return getattr(errors, name)
    if name == "Dataset":
        from analyzer.batch.dataset import Dataset

        return Dataset
    raise AttributeError(f"module 'analyzer' has no attribute {name!r}")
