"""The report's world map: Natural Earth country outlines as inline SVG (plate carrée projection),
the vantage point and every remote endpoint coloured by role, key-exchange countries highlighted.

Endpoints sit at the coordinates the report gives (flow columns server_lat/server_lon) or else at
their country's centroid, fanned out on a small spiral so several servers in one country stay
distinguishable. Borders come from analyzer.geo.borders; the map still renders (without outlines
or centroids) when the geo data files cannot be read.
"""

from __future__ import annotations

import ipaddress
import math
from functools import cache
from html import escape
from typing import Any

import pandas as pd

from analyzer.common.words import plural
from analyzer.geo.borders import country_centroid, country_shapes
from analyzer.geo.datafiles import iso_alpha2_names
from analyzer.report import common
from analyzer.report.sanitize import human_bytes, text, to_plain, visible

WIDTH = 1000
LAT_TOP, LAT_BOTTOM = 84.0, -60.0  # Antarctica adds nothing to a network map but height
HEIGHT = round(WIDTH * (LAT_TOP - LAT_BOTTOM) / 360.0)
_GOLDEN = math.pi * (3 - math.sqrt(5))
_NOT_COUNTRIES = {"", "ZZ", "LOCAL", "NONE", "NAN"}


def _e(value: Any) -> str:
    return escape(visible(value), quote=True)


def project(lon: float, lat: float) -> tuple[float, float]:
    """Equirectangular: degrees to SVG pixels of the map's viewBox."""
    x = (lon + 180.0) * WIDTH / 360.0
    y = (LAT_TOP - lat) * HEIGHT / (LAT_TOP - LAT_BOTTOM)
    return x, y


@cache
def _shapes() -> dict[str, list[list[tuple[float, float]]]]:
    try:
        return country_shapes(resolution="110m")
    except (OSError, ValueError):
        return {}


@cache
def centroid(cc: str) -> tuple[float, float] | None:
    """(lat, lon) of a country, None when unknown or the geo data cannot be read."""
    if not cc or cc.upper() in _NOT_COUNTRIES:
        return None
    try:
        found = country_centroid(cc)
    except (OSError, ValueError):
        return None
    return (float(found[0]), float(found[1])) if found else None


@cache
def _country_names() -> dict[str, str]:
    return iso_alpha2_names()


def ring_path(ring: list[tuple[float, float]]) -> str:
    """SVG path data of one ring; a longitude jump of more than 180 degrees starts a new subpath
    instead of drawing a line across the whole map (rings are normally pre-cut at the antimeridian).
    """
    parts: list[str] = []
    prev_lon: float | None = None
    for lon, lat in ring:
        x, y = project(lon, lat)
        cmd = "M" if prev_lon is None or abs(lon - prev_lon) > 180.0 else "L"
        parts.append(f"{cmd}{x:.1f},{y:.1f}")
        prev_lon = lon
    return "".join(parts) + "Z" if parts else ""


def _coord(value: Any) -> float | None:
    v = to_plain(value)
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# Explicit ranges rather than ipaddress.is_private, which also flags the documentation ranges
# (TEST-NET) that demo and test captures use for "public" servers.
_LOCAL_NETS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.168.0.0/16", "224.0.0.0/4", "255.255.255.255/32", "::/128", "::1/128", "fc00::/7",
        "fe80::/10", "ff00::/8",
    )
)


def is_local(ip: str) -> bool:
    """Private, loopback, link-local or multicast: not a place on a map (DESIGN: not countries)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    addr = mapped or addr
    return any(addr.version == net.version and addr in net for net in _LOCAL_NETS)


def endpoints(flows: pd.DataFrame, spread_deg: float = 1.6) -> list[dict[str, Any]]:
    """Remote public endpoints (one per server address) with roles, bytes, names and position;
    endpoints placed at a country's centroid fan out on a spiral `spread_deg` wide per step."""
    if flows is None or len(flows) == 0 or "server_ip" not in flows:
        return []
    by_ip: dict[str, dict[str, Any]] = {}
    coord_keys = [
        (la, lo) for la, lo in (("server_lat", "server_lon"), ("server_latitude", "server_longitude"))
        if la in flows and lo in flows
    ]
    for rec in flows.to_dict("records"):
        ip = text(rec.get("server_ip"))
        if not ip or is_local(ip):
            continue
        ep = by_ip.setdefault(
            ip,
            {"ip": ip, "roles": set(), "bytes": 0, "hostnames": set(), "flows": 0,
             "country": text(rec.get("server_country")).upper(), "org": text(rec.get("server_org")),
             "asn": text(rec.get("server_asn")), "lat": None, "lon": None},
        )
        ep["roles"].update(text(r) for r in to_plain(rec.get("roles")) or [])
        ep["bytes"] += int((to_plain(rec.get("bytes_c2s")) or 0) + (to_plain(rec.get("bytes_s2c")) or 0))
        ep["flows"] += 1
        if text(rec.get("hostname")):
            ep["hostnames"].add(text(rec.get("hostname")))
        for lat_key, lon_key in coord_keys:
            lat, lon = _coord(rec.get(lat_key)), _coord(rec.get(lon_key))
            if lat is not None and lon is not None and -90 <= lat <= 90 and -180 <= lon <= 180:
                ep["lat"], ep["lon"] = lat, lon
    placed_per_country: dict[str, int] = {}
    out: list[dict[str, Any]] = []
    for ep in sorted(by_ip.values(), key=lambda e: (-e["bytes"], e["ip"])):
        ep["role"] = common.primary_role(ep["roles"])
        if ep["lat"] is None:
            c = centroid(ep["country"])
            if c is not None:
                k = placed_per_country.get(ep["country"], 0)
                placed_per_country[ep["country"]] = k + 1
                # Fan out on a sunflower spiral: deterministic, and the first stays on the centroid.
                r, a = spread_deg * math.sqrt(k), k * _GOLDEN
                ep["lat"], ep["lon"] = c[0] + r * math.sin(a), c[1] + r * math.cos(a)
                ep["placed"] = "country centroid"
        else:
            ep["placed"] = "reported coordinates"
        out.append(ep)
    return out


def vantage_point(report: dict[str, Any]) -> tuple[float, float] | None:
    vantage = report.get("vantage") or {}
    lat, lon = _coord(vantage.get("lat")), _coord(vantage.get("lon"))
    if lat is not None and lon is not None:
        return lat, lon
    return centroid(text(vantage.get("country")).upper())


MARKER_R = 5.5  # endpoint radius in screen pixels of the map at full width
_MIN_VIEW_W = 160.0  # never zoom in further than ~58 degrees of longitude


def view_box(points: list[tuple[float, float]]) -> tuple[float, float, float, float]:
    """(x, y, width, height) in map pixels around `points` (lat, lon), padded, with the map's
    aspect ratio, inside the world: the map zooms to the endpoints so markers in neighbouring
    countries (GB, NL) can be told apart."""
    if not points:
        return 0.0, 0.0, float(WIDTH), float(HEIGHT)
    xy = [project(lon, lat) for lat, lon in points]
    x0, x1 = min(p[0] for p in xy), max(p[0] for p in xy)
    y0, y1 = min(p[1] for p in xy), max(p[1] for p in xy)
    pad = 45.0
    w = max(x1 - x0 + 2 * pad, _MIN_VIEW_W)
    h = max(y1 - y0 + 2 * pad, w * HEIGHT / WIDTH)
    w = max(w, h * WIDTH / HEIGHT)
    w, h = min(w, float(WIDTH)), min(h, float(HEIGHT))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    x = min(max(cx - w / 2, 0.0), WIDTH - w)
    y = min(max(cy - h / 2, 0.0), HEIGHT - h)
    return x, y, w, h


def star_points(x: float, y: float, outer: float, inner: float) -> str:
    """A five-pointed star (the vantage marker, on the map and in its legend)."""
    return " ".join(
        f"{x + (outer if i % 2 == 0 else inner) * math.sin(i * math.pi / 5):.1f},"
        f"{y - (outer if i % 2 == 0 else inner) * math.cos(i * math.pi / 5):.1f}"
        for i in range(10)
    )


def map_legend(roles: list[str]) -> str:
    """The map's legend, drawn with the map's own shapes: role dots, the vantage star, the fill
    of countries with traffic and of countries where keys were exchanged."""
    parts = ['<svg id="map-legend" class="chart" viewBox="0 0 1000 44" width="1000" height="44">']
    x = 4.0
    for role in roles:
        label = common.ROLE_LABELS.get(role, role)
        parts.append(
            f'<circle cx="{x + 6:.1f}" cy="12" r="{MARKER_R}" fill="{common.role_colour(role)}" class="ep"/>'
            f'<text x="{x + 16:.1f}" y="16">{_e(label)}</text>'
        )
        x += 24 + 7.2 * len(label)
    parts.append(
        f'<polygon class="vantage" points="{star_points(x + 8, 12, 9, 4)}"/>'
        f'<text x="{x + 22:.1f}" y="16">vantage</text>'
        '<rect x="4" y="26" width="16" height="13" class="land used"/>'
        '<text x="26" y="37">country with traffic of this call</text>'
        '<rect x="280" y="26" width="16" height="13" class="land kx"/>'
        '<text x="302" y="37">country where keys were exchanged</text>'
        "</svg>"
    )
    return "".join(parts)


def world_map(report: dict[str, Any], flows: pd.DataFrame) -> str:
    """The map as one <svg> element plus a short caption of what could not be placed."""
    shapes = _shapes()
    names = _country_names()
    traffic = {text(c.get("country")).upper(): c for c in report.get("countries") or []}
    kx = {text(k.get("country")).upper() for k in report.get("key_exchange") or []} - _NOT_COUNTRIES
    vp = vantage_point(report)
    # Zoom to the endpoints (unspread) and the vantage; then fan endpoints out in screen pixels.
    rough = [(ep["lat"], ep["lon"]) for ep in endpoints(flows, spread_deg=0.0) if ep["lat"] is not None]
    vx0, vy0, vw, vh = view_box(rough + ([vp] if vp is not None else []))
    zoom = WIDTH / vw
    r = MARKER_R / zoom
    eps = endpoints(flows, spread_deg=2.4 * r * 360.0 / WIDTH)
    out = [
        f'<svg id="world-map" class="map" viewBox="{vx0:.1f} {vy0:.1f} {vw:.1f} {vh:.1f}" '
        f'width="{WIDTH}" height="{HEIGHT}" data-zoom="{zoom:.2f}" role="img" '
        'aria-label="World map of remote endpoints by role">',
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" class="sea"/>',
    ]
    for lon in range(-150, 180, 30):
        x, _ = project(lon, 0)
        out.append(f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{HEIGHT}" class="grat"/>')
    for lat in range(-30, 84, 30):
        _, y = project(0, lat)
        out.append(f'<line x1="0" y1="{y:.1f}" x2="{WIDTH}" y2="{y:.1f}" class="grat"/>')
    for cc in sorted(shapes):
        if cc == "AQ":
            continue
        d = "".join(ring_path(r) for r in shapes[cc])
        cls = "land kx" if cc in kx else "land used" if cc in traffic else "land"
        tip = f"{cc} {names.get(cc, '')}".strip()
        if cc in traffic:
            c = traffic[cc]
            roles = ", ".join(
                f"{common.ROLE_LABELS.get(r, r)} {human_bytes(b)}"
                for r, b in sorted((c.get("bytes_by_role") or {}).items())
                if to_plain(b)
            )
            tip += f": {human_bytes(c.get('bytes'))} ({roles})"
        if cc in kx:
            tip += "; key exchange handled here"
        out.append(
            f'<path class="{cls}" data-cc="{_e(cc)}" fill-rule="evenodd" d="{d}">'
            f"<title>{_e(tip)}</title></path>"
        )
    placed = [ep for ep in eps if ep["lat"] is not None]
    if vp is not None:
        vx, vy = project(vp[1], vp[0])
        for ep in placed:
            ex, ey = project(ep["lon"], ep["lat"])
            # A bowed line reads as a route and keeps overlapping straight lines apart.
            mx, my = (vx + ex) / 2, (vy + ey) / 2 - 0.18 * math.hypot(ex - vx, ey - vy)
            out.append(
                f'<path class="link" d="M{vx:.1f},{vy:.1f}Q{mx:.1f},{my:.1f} {ex:.1f},{ey:.1f}" '
                f'stroke="{common.role_colour(ep["role"])}"/>'
            )
    for ep in sorted(placed, key=lambda e: common.ROLES.index(e["role"]) if e["role"] in common.ROLES else 9,
                     reverse=True):
        ex, ey = project(ep["lon"], ep["lat"])
        tip = (
            f"{ep['ip']} {', '.join(sorted(ep['hostnames']))} | {ep['country']} AS{ep['asn']} {ep['org']} | "
            f"roles: {', '.join(sorted(ep['roles'])) or 'none'} | {plural(ep['flows'], 'flow')}, "
            f"{human_bytes(ep['bytes'])} | position: {ep['placed']}"
        )
        out.append(
            f'<circle class="ep" data-role="{_e(ep["role"])}" cx="{ex:.2f}" cy="{ey:.2f}" r="{r:.2f}" '
            f'fill="{common.role_colour(ep["role"])}"><title>{_e(tip)}</title></circle>'
        )
    if vp is not None:
        vx, vy = project(vp[1], vp[0])
        star = star_points(vx, vy, 9 / zoom, 4 / zoom)
        vantage = report.get("vantage") or {}
        out.append(
            f'<polygon id="vantage" class="vantage" points="{star}"><title>vantage '
            f'{_e(vantage.get("country"))} ({_e(vantage.get("source"))})</title></polygon>'
        )
    out.append("</svg>")
    notes: list[str] = []
    if not shapes:
        notes.append("country outlines are unavailable (geo data not installed)")
    if vp is None:
        notes.append("the vantage point's location is unknown, so no routes are drawn")
    missing = len(eps) - len(placed)
    if missing:
        notes.append(f"{plural(missing, 'endpoint')} with no known country not drawn")
    caption = f'<p class="note">Note: {escape("; ".join(notes))}.</p>' if notes else ""
    return "".join(out) + caption
