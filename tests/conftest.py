"""Shared fixtures: the real captures under ../shared are read at run time, never copied."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CONFSCOPE_SHARED", REPO.parent / "shared"))
REAL = SHARED / "captures" / "real"
LABELS = SHARED / "captures" / "labels"


def real_capture(name: str) -> Path:
    """Path of a shared real capture, or skip the test with the reason."""
    path = REAL / name
    if not path.exists():
        pytest.skip(f"shared capture {path} is absent (../shared not laid beside the repo)")
    return path


def real_captures() -> list[Path]:
    if not REAL.is_dir():
        return []
    return sorted(p for p in REAL.iterdir() if p.is_file())


@pytest.fixture
def shared_real() -> Path:
    if not REAL.is_dir():
        pytest.skip(f"{REAL} is absent: the tests that read real captures need ../shared")
    return REAL


# The real-browser fixture (tests/browser.py), for every test file that checks a page.
from tests.browser import browser  # noqa: E402, F401
