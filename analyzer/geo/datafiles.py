"""Where the embedded geolocation data lives, and the small tables read straight from it."""

from __future__ import annotations

import csv
import json
from functools import cache
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "geo"


@cache
def manifest() -> dict[str, Any]:
    """MANIFEST.json of the embedded data ({} when the data directory is absent)."""
    path = DATA_DIR / "MANIFEST.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


@cache
def iso_numeric_to_alpha2() -> dict[str, str]:
    """ISO 3166-1 numeric code (zero-padded, as world-atlas writes it) -> alpha-2."""
    table: dict[str, str] = {}
    try:
        with (DATA_DIR / "iso3166.csv").open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if row.get("numeric") and row.get("alpha2"):
                    table[row["numeric"].zfill(3)] = row["alpha2"]
    except OSError:
        pass
    return table


@cache
def iso_alpha2_names() -> dict[str, str]:
    """alpha-2 -> English short name (for reports and the `geo` command)."""
    names: dict[str, str] = {}
    try:
        with (DATA_DIR / "iso3166.csv").open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if row.get("alpha2"):
                    names[row["alpha2"]] = row.get("name", "")
    except OSError:
        pass
    return names
