"""One pass over a capture: chunks are decoded, their packets grouped into partial flow tables
that merge exactly, the first packets of each flow sampled for dissection and media packets
tapped into per-stream state. The same partial tables serve chunks, byte ranges of one file
scanned in parallel, rotated file sets and Dask workers.

- `scanner`: `scan_capture`, one pass or several cores (byte ranges; the media tap beside).
- `chunks`: the per-chunk work, the sampler and the sequential pass (`one_pass`).
- `flows`: partial flow tables, their merge and the final table.
- `groups`: a chunk's packets grouped by flow key (C twin `_groups.c`).
- `media`: the media tap (per-stream RTP state, repeated-block statistic).
- `parts`, `split`: byte ranges and file sets scanned as parts; `parallel`: where parts run.
"""
