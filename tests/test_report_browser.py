"""report.html in a real browser: Debian's chromium, driven over the DevTools protocol.

The page must load from file:// with no console error, no exception, no CSP violation, no dialog
and no request other than the document itself, and must show the map, the chart and the timeline.
A hostile SNI must stay text. A screenshot is written to the test's tmp_path (and copied to
/tmp/confscope-report.png for people to look at).

The browser is driven by tests/browser.py.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pytest

from analyzer.report import write_reports
from tests.browser import _DevTools, _load, _problems, _requests, _screenshot
from tests.test_report import XSS, sample_flows, sample_report


def test_report_loads_offline_and_renders(tmp_path: Path, browser: _DevTools) -> None:
    flows = sample_flows()
    flows.loc[7, "server_org"] = "Example Org"
    out = write_reports(sample_report(flows), flows, tmp_path / "report", formats=["html"])
    page = out["html"]
    _load(browser, page)
    assert _problems(browser) == []
    assert _requests(browser) == [page.as_uri()]  # the document itself, nothing else
    rendered = browser.evaluate(
        "JSON.stringify({"
        "land: document.querySelectorAll('#world-map path.land').length,"
        "kx: Array.from(document.querySelectorAll('#world-map path.kx')).map(p => p.dataset.cc),"
        "dots: document.querySelectorAll('#world-map circle.ep').length,"
        "vantage: document.querySelectorAll('#vantage').length,"
        "mapWidth: document.getElementById('world-map').getBoundingClientRect().width,"
        "bars: document.querySelectorAll('#country-chart g.bar').length,"
        "timeline: document.querySelectorAll('#timeline g.tl rect').length,"
        "status: document.getElementById('js-status').textContent})"
    )
    info = json.loads(rendered)
    assert info["land"] > 150 and info["kx"] == ["CN"]
    assert info["dots"] == 7 and info["vantage"] == 1 and info["mapWidth"] > 600
    assert info["bars"] == 4 and info["timeline"] == len(flows)
    assert info["status"].startswith("Click a column heading")  # the inline script ran under the CSP
    # Sorting: click "bytes" twice (descending) and the media flow 3 comes first.
    order = browser.evaluate(
        "(() => {const th = Array.from(document.querySelectorAll('#flow-table th'))"
        ".find(h => h.textContent === 'bytes'); th.click(); th.click();"
        "return Array.from(document.querySelectorAll('#flow-table tbody tr'))"
        ".map(r => r.cells[0].textContent).join(',');})()"
    )
    assert order.split(",")[0] == "3" and len(order.split(",")) == len(flows)
    assert _problems(browser) == []
    shot = _screenshot(browser, tmp_path / "report.png")
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    # A blank 1280x2000 page compresses to a few KB; the map, charts and tables need far more.
    assert len(shot) > 60_000
    with contextlib.suppress(OSError):  # a copy for people to look at; not part of the assertion
        shutil.copyfile(tmp_path / "report.png", "/tmp/confscope-report.png")


def test_hostile_sni_stays_text_in_browser(tmp_path: Path, browser: _DevTools) -> None:
    flows = sample_flows()
    flows.loc[1, "hostname"] = "</script><script>alert(3)</script>"
    report = sample_report(flows)
    report["capture"]["path"] = f"/tmp/{XSS}.pcap"
    page = write_reports(report, flows, tmp_path / "hostile", formats=["html"])["html"]
    _load(browser, page)
    assert _problems(browser) == []  # no alert() dialog, no error
    assert _requests(browser) == [page.as_uri()]  # the <img src=x> never became a request
    counts = json.loads(
        browser.evaluate(
            "JSON.stringify({img: document.images.length, scripts: document.scripts.length,"
            "onerror: document.querySelectorAll('[onerror]').length,"
            "text: document.body.textContent.includes('<img src=x onerror=alert(1)>')})"
        )
    )
    assert counts == {"img": 0, "scripts": 2, "onerror": 0, "text": True}
    _screenshot(browser, tmp_path / "hostile.png")


def test_server_locations_render_with_confidence(tmp_path: Path, browser: _DevTools) -> None:
    """A real analysis (synthetic capture with chosen RTTs, names and a hostile DNS name): the server
    locations table shows every endpoint with its confidence, contested ones highlighted."""
    from analyzer.session.build import analyze
    from tests.test_geo_evidence import synthetic_capture

    cap = tmp_path / "evidence.pcap"
    cap.write_bytes(synthetic_capture(hostile_name="x</script><script>alert(5)</script>.example"))
    s = analyze(cap, allow="IT")
    page = write_reports(s.report, s.flows, tmp_path / "evidence", formats=["html"])["html"]
    _load(browser, page)
    assert _problems(browser) == []
    assert _requests(browser) == [page.as_uri()]
    info = json.loads(browser.evaluate(
        "JSON.stringify({rows: document.querySelectorAll('#endpoints-table tbody tr').length,"
        "contested: Array.from(document.querySelectorAll('#endpoints-table td.conf-contested'))"
        ".map(td => td.parentElement.cells[0].textContent),"
        "confirmed: document.querySelectorAll('#endpoints-table td.conf-confirmed').length,"
        "kx: document.querySelector('#kx-table') !== null,"
        "scripts: document.scripts.length,"
        "colour: document.querySelector('#endpoints-table td.conf-contested') ?"
        " getComputedStyle(document.querySelector('#endpoints-table td.conf-contested')).color : ''})"
    ))
    assert info["rows"] == len(s.report["endpoints"]) >= 3
    assert "8.8.4.4" in info["contested"] and info["confirmed"] >= 1
    assert info["scripts"] == 2 and info["colour"] == "rgb(179, 89, 0)"
    _screenshot(browser, tmp_path / "locations.png")


# ------------------------------------------------- a newcomer's report at two window widths (issue 15)

_LAYOUT_PROBE = """JSON.stringify((() => {
  const wrap = document.querySelector('#flow-table').parentElement;
  const heads = Array.from(document.querySelectorAll('#flow-table th'));
  const right = name => { const h = heads.find(x => x.textContent === name);
                          return h ? h.getBoundingClientRect().right : 1e9; };
  const dots = Array.from(document.querySelectorAll('#world-map circle.ep')).map(c => {
    const r = c.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2, r.width / 2]; });
  let overlaps = 0;
  for (let i = 0; i < dots.length; i++) for (let j = i + 1; j < dots.length; j++) {
    const [x1, y1, r1] = dots[i], [x2, y2, r2] = dots[j];
    if (Math.hypot(x1 - x2, y1 - y2) < (r1 + r2) * 0.9) overlaps++; }
  return {
    viewport: window.innerWidth, scroll: wrap.scrollWidth, client: wrap.clientWidth,
    duration: right('duration'), packets: right('packets'), bytes: right('bytes'),
    dots: dots.length, overlaps: overlaps, radius: dots.length ? dots[0][2] : 0,
    legendStar: document.querySelectorAll('#map-legend polygon.vantage').length,
    mapStar: document.querySelectorAll('#world-map polygon.vantage').length,
    starPoints: document.querySelector('#map-legend polygon.vantage').getAttribute('points').split(' ').length,
    mapStarPoints: document.querySelector('#world-map polygon.vantage').getAttribute('points').split(' ').length,
    legendFill: Array.from(document.querySelectorAll('#map-legend rect.land')).map(r => getComputedStyle(r).fill),
    mapFill: getComputedStyle(document.querySelector('#world-map path.land.used')).fill,
    kxFill: getComputedStyle(document.querySelector('#world-map path.land.kx')).fill,
    zoom: parseFloat(document.getElementById('world-map').dataset.zoom),
    segments: document.querySelectorAll('#timeline text.segment').length,
    status: document.getElementById('js-status').textContent,
    prov: Array.from(document.querySelectorAll('#provenance dd')).map(d => d.textContent),
  };
})())"""


@pytest.mark.parametrize("width", [1400, 1000])
def test_real_report_reads_at_two_widths(tmp_path: Path, browser: _DevTools, width: int) -> None:
    """zoom.pcap (2019 + 2023 traffic, US and Europe): the flow table fits without sideways
    scrolling, the map legend draws what the map draws, markers do not overlap, the timeline has
    one segment per period, and no leftover text shows. Screenshots of the summary, map, timeline
    and flow table: tmp_path/zoom-<width>-<part>.png (copied to /tmp/confscope-zoom-<width>-<part>.png)."""
    from analyzer import analyze
    from tests.conftest import real_capture

    session = analyze(real_capture("zoom.pcap"), region="north-america")
    page = session.write(tmp_path / "zoom", ["html"])["html"]
    browser.call("Emulation.setDeviceMetricsOverride", width=width, height=1600, deviceScaleFactor=1, mobile=False)
    _load(browser, page)
    assert _problems(browser) == []
    info = json.loads(browser.evaluate(_LAYOUT_PROBE))
    assert info["viewport"] == width
    # Item 13: duration, packets and bytes are on screen, the table does not scroll sideways.
    assert info["scroll"] <= info["client"] + 1, info
    assert max(info["duration"], info["packets"], info["bytes"]) <= width, info
    assert info["status"] == "Click a column heading to sort."
    assert not any(v in ("False", "True", "None") for v in info["prov"]), info["prov"]
    # Item 12: the legend's vantage is the map's star; both land fills are in the legend.
    assert info["legendStar"] == 1 and info["mapStar"] == 1
    assert info["starPoints"] == info["mapStarPoints"] == 10
    assert info["mapFill"] in info["legendFill"] and info["kxFill"] in info["legendFill"]
    assert info["zoom"] > 1.0  # zoomed to the endpoints, not the whole world
    assert info["dots"] >= 10 and info["overlaps"] == 0, info
    # Item 11: two periods (2019 and 2023), each with its own axis.
    assert info["segments"] == 2
    for part in ("summary", "map", "timeline-section", "flows"):
        browser.evaluate(f"document.getElementById('{part}').scrollIntoView()")
        name = f"zoom-{width}-{part}.png"
        shot = _screenshot(browser, tmp_path / name)
        assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 30_000
        with contextlib.suppress(OSError):
            shutil.copyfile(tmp_path / name, f"/tmp/confscope-{name}")


def test_stream_charts_render_in_browser(tmp_path: Path, browser: _DevTools) -> None:
    """The per-stream charts of a real Zoom P2P call: one SVG per stream with a bitrate and a
    frame-rate line, drawn offline (no request but the page)."""
    from analyzer.api import analyze
    from tests.conftest import real_capture

    session = analyze(real_capture("zoom_p2p.pcapng"))
    page = session.write(tmp_path / "zoom", ["html"])["html"]
    _load(browser, page)
    assert _problems(browser) == []
    assert _requests(browser) == [page.as_uri()]
    info = json.loads(browser.evaluate(
        "JSON.stringify({charts: document.querySelectorAll('#streams svg.stream-chart').length,"
        "br: document.querySelectorAll('#streams svg.stream-chart polyline.br').length,"
        "fr: document.querySelectorAll('#streams svg.stream-chart polyline.fr').length,"
        "width: Math.min(...Array.from(document.querySelectorAll('#streams svg.stream-chart'))"
        ".map(s => s.getBoundingClientRect().width)),"
        "ids: Array.from(document.querySelectorAll('#streams svg.stream-chart')).map(s => s.dataset.streamId)})"
    ))
    assert info["charts"] == len(session.streams) == 5
    assert info["br"] == 5 and info["fr"] == 5 and info["width"] > 300
    assert sorted(info["ids"]) == sorted(str(i) for i in session.streams["stream_id"])
    _screenshot(browser, tmp_path / "streams.png")
