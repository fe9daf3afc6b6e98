"""campaign.html and the batch summary.html in a real headless chromium (the DevTools client of
test_report_browser.py): offline, no error, no request but the page, the charts drawn, the
hostile label kept as text, every session linked."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pytest

from analyzer.batch.run import run_batch
from analyzer.campaign import campaign
from tests.browser import CHROMIUM, _load, _problems, _requests, _screenshot
from tests.test_campaign import HOSTILE, MANIFEST, _corpus

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


def test_campaign_page_renders_offline(tmp_path: Path, browser) -> None:
    calls = _corpus(tmp_path / "calls")
    (tmp_path / "calls" / "study.csv").write_text(MANIFEST.format(hostile=HOSTILE), encoding="utf-8")
    res = run_batch([str(tmp_path / "calls")], tmp_path / "batch", workers=2, formats=["json", "html"])
    c = campaign([tmp_path / "batch"], manifest=tmp_path / "calls" / "study.csv", output=tmp_path / "camp",
                 workers=2, diff="date=2026-01-05:2026-02-05")
    page = tmp_path / "camp" / "campaign.html"
    _load(browser, page)
    assert _problems(browser) == []
    assert _requests(browser) == [page.as_uri()]
    info = json.loads(browser.evaluate(
        "JSON.stringify({"
        "roles: Array.from(document.querySelectorAll('#role-matrices svg.matrix')).map(s => s.dataset.role),"
        "cells: document.querySelectorAll('#role-matrices rect.cell').length,"
        "vantages: document.querySelectorAll('#vantage-multiples svg.matrix').length,"
        "dates: Array.from(document.querySelectorAll('#date-charts svg.dates')).map(s => s.dataset.app),"
        "width: document.querySelector('#role-matrices svg.matrix').getBoundingClientRect().width,"
        "links: Array.from(document.querySelectorAll('#sessions a')).map(a => a.getAttribute('href')),"
        "scripts: document.scripts.length,"
        "hostile: Array.from(document.querySelectorAll('#sessions td')).some(t => t.textContent.includes("
        "'<script>alert(1)</script>'))})"
    ))
    assert info["roles"][:2] == ["media", "key_exchange"] and set(info["roles"]) == set(c.countries["role"])
    assert info["cells"] > 0 and info["width"] > 100
    assert info["vantages"] == c.sessions["vantage"].nunique() == 3  # DE, US, teams' vantage
    # zoom is the only app seen on more than one date: a chart per role it used.
    assert set(info["dates"]) == {"zoom"} and len(info["dates"]) == c.countries.query("app == 'zoom'")["role"].nunique()
    assert len(info["links"]) == len(calls) == res.summary["totals"]["analysed"]
    assert all((page.parent / h).resolve().is_file() for h in info["links"])
    assert info["scripts"] == 0 and info["hostile"]  # the label is text, not markup
    shot = _screenshot(browser, tmp_path / "campaign.png")
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 40_000
    with contextlib.suppress(OSError):
        shutil.copyfile(tmp_path / "campaign.png", "/tmp/confscope-campaign.png")
    # The batch summary: styled, offline, a working link per session.
    summary = tmp_path / "batch" / "summary.html"
    _load(browser, summary)
    assert _problems(browser) == []
    links = json.loads(browser.evaluate(
        "JSON.stringify(Array.from(document.querySelectorAll('table a')).map(a => a.href))"))
    assert any(h.endswith("/jan/report.html") for h in links)
    assert browser.evaluate("getComputedStyle(document.querySelector('th')).fontWeight") in ("600", "700")
