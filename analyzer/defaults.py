"""Settings read before anything heavy is imported (the CLI forks its scan child on them)."""

from __future__ import annotations

import os

# A session keeps media state and samples per flow anyway (its memory budget is 250 MiB, against
# 150 MiB for `confscope flows`), so it reads in larger chunks: fewer chunks, less per-chunk cost.
ANALYZE_CHUNK_BYTES = int(os.environ.get("CONFSCOPE_ANALYZE_CHUNK_BYTES", 16 * 1024 * 1024))
