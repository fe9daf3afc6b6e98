"""Peer baseline: NFStream's flow table of a capture, as a pandas DataFrame written as CSV to stdout."""

from __future__ import annotations

import sys

from nfstream import NFStreamer


def main() -> int:
    # Defaults on purpose (nDPI dissection on, n_meters auto): this is NFStream as users run it.
    df = NFStreamer(source=sys.argv[1]).to_pandas()
    df.to_csv(sys.stdout, index=False)
    print(f"{len(df)} flows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
