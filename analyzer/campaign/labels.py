"""What each call of a study was: the manifest (CSV or TOML) and what a session report tells.

A manifest row names a capture (a path, relative to the manifest's folder, a file name, or the
report-folder name a batch gave it) and labels it: app, vantage, date, label and any column the
study wants (network, os, repetition...). A label the manifest leaves empty is inferred from the
session report where the capture tells: the app carrying most bytes, the vantage country the
session worked out, the UTC date of the first packet. Inferred values are marked as such.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import tomllib
from pathlib import Path
from typing import Any

from analyzer.errors import OptionError

# Columns every session has (inferred when the manifest leaves them empty).
STANDARD = ("app", "vantage", "date", "label")
INFERRED = ("app", "vantage", "date")
MAX_MANIFEST_BYTES = 50 * 1024 * 1024


def read_manifest(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a CSV (header line) or TOML (`[[captures]]` tables) manifest; every row has a
    `capture`. Values are text (a TOML date or number is written as text)."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_MANIFEST_BYTES:
            raise OptionError(f"manifest {p}: larger than {MAX_MANIFEST_BYTES // 2**20} MB")
        raw = p.read_bytes()
    except OSError as exc:
        raise OptionError(f"manifest {p}: {exc.strerror or exc}") from None
    if p.suffix.lower() == ".toml":
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise OptionError(f"manifest {p}: not valid TOML ({exc})") from None
        rows = data.get("captures", data.get("capture"))
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise OptionError(f"manifest {p}: expected [[captures]] tables")
    else:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise OptionError(f"manifest {p}: not UTF-8 text") from None
        rows = list(csv.DictReader(text.splitlines()))
    out = []
    for i, r in enumerate(rows, 1):
        row = {str(k).strip().lower(): ("" if v is None else str(v).strip()) for k, v in r.items() if k is not None}
        if not row.get("capture"):
            raise OptionError(f"manifest {p}: row {i} has no 'capture'")
        out.append(row)
    return out


def manifest_captures(rows: list[dict[str, str]], manifest_path: str | os.PathLike) -> list[str]:
    """The captures a manifest names that exist as files (paths relative to the manifest)."""
    base = Path(manifest_path).resolve().parent
    found = []
    for r in rows:
        p = Path(r["capture"])
        p = p if p.is_absolute() else base / p
        if p.exists():
            found.append(str(p))
    return found


class Matcher:
    """Finds the manifest row of a session: by absolute path, then file name, then name."""

    def __init__(self, rows: list[dict[str, str]], manifest_path: str | os.PathLike | None) -> None:
        base = Path(manifest_path).resolve().parent if manifest_path else Path.cwd()
        self.by_path: dict[str, dict[str, str]] = {}
        self.by_file: dict[str, dict[str, str]] = {}
        self.by_name: dict[str, dict[str, str]] = {}
        self.used: set[int] = set()
        self.rows = rows
        for r in rows:
            cap = r["capture"]
            p = Path(cap)
            self.by_path.setdefault(os.path.abspath(p if p.is_absolute() else base / p), r)
            self.by_file.setdefault(p.name, r)
            self.by_name.setdefault(cap, r)
            self.by_name.setdefault(_stem(p.name), r)

    def find(self, name: str, capture_path: str | None) -> dict[str, str]:
        hit = None
        if capture_path:
            hit = self.by_path.get(os.path.abspath(capture_path)) or self.by_file.get(Path(capture_path).name)
        hit = hit or self.by_name.get(name)
        if hit is not None:
            self.used.add(id(hit))
        return hit or {}

    def unmatched(self) -> list[str]:
        return [r["capture"] for r in self.rows if id(r) not in self.used]


def _stem(name: str) -> str:
    for suffix in (".gz",):
        name = name.removesuffix(suffix)
    return Path(name).stem


def infer(report: dict[str, Any]) -> dict[str, str | None]:
    """app / vantage / date from a session report (None where it does not tell)."""
    apps = [a for a in report.get("apps") or [] if isinstance(a, dict) and a.get("app") not in (None, "unknown")]
    app = max(apps, key=lambda a: int(a.get("bytes") or 0), default={}).get("app")
    vantage = (report.get("vantage") or {}).get("country")
    first = (report.get("capture") or {}).get("first_ts")
    date = None
    if isinstance(first, int | float) and 0 < first < 4e9:
        date = dt.datetime.fromtimestamp(first, dt.UTC).date().isoformat()
    return {"app": str(app) if app else None, "vantage": str(vantage) if vantage else None, "date": date}


def session_labels(row: dict[str, str], inferred: dict[str, str | None]) -> tuple[dict[str, str], list[str]]:
    """The labels of one session: the manifest's, else the inferred ones, else "unknown"; and
    which of them were inferred."""
    labels = {k: v for k, v in row.items() if k != "capture"}
    guessed = []
    for k in STANDARD:
        if labels.get(k):
            continue
        if k in INFERRED and inferred.get(k):
            labels[k] = str(inferred[k])
            guessed.append(k)
        else:
            labels[k] = "" if k == "label" else "unknown"
    return labels, guessed
