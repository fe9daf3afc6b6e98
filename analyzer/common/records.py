"""DataFrame rows as plain dicts, fast.

`DataFrame.to_dict("records")` boxes every cell through pandas' scalar machinery; for the
per-flow loops of dissection and classification (a hundred columns, up to millions of flows)
going through each column's `tolist()` once is several times faster and gives the same values.
"""

from __future__ import annotations

from typing import Any

import pandas as pd


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    cols = [str(c) for c in frame.columns]
    values = [frame[c].tolist() for c in frame.columns]
    return (
        [dict(zip(cols, row, strict=True)) for row in zip(*values, strict=True)]
        if cols
        else [{} for _ in range(len(frame))]
    )
