"""Country outlines from the embedded world-atlas TopoJSON (Natural Earth), and distances to them.

`country_shapes()` is what the report's map draws; `distance_to_country_km()` is the lower bound on
how far a vantage point is from a claimed country, used by the speed-of-light plausibility check.

Rings are lists of (lon, lat) in degrees. World-atlas polygons are not cut at the antimeridian, so
rings that cross it (Russia, Fiji, Chukotka) are clipped into pieces inside [-180, 180]: planar
drawing then needs no special case and an even-odd point-in-polygon test stays correct. A country's
holes are ordinary rings in its list; the even-odd rule (SVG `fill-rule="evenodd"`) handles them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.geo.datafiles import DATA_DIR, iso_numeric_to_alpha2

Ring = list[tuple[float, float]]

RESOLUTIONS = ("110m", "50m")
EARTH_RADIUS_KM = 6371.0088

# Shapes that world-atlas ships without an ISO numeric id. Kosovo has the user-assigned code XK
# that geolocation databases use. The others are merged into the ISO country whose code IP
# databases report for them, so the map has no holes there. Indian Ocean Ter. and Siachen Glacier
# (50m only) have no single ISO code and are left out.
_UNCODED_NAMES = {"Kosovo": "XK", "N. Cyprus": "CY", "Somaliland": "SO"}


def _decode_arcs(topo: dict[str, Any]) -> list[np.ndarray]:
    """Delta-decode the quantized arcs and apply the transform: one (n, 2) lon/lat array per arc."""
    transform = topo.get("transform")
    arcs: list[np.ndarray] = []
    for arc in topo.get("arcs", []):
        pts = np.asarray(arc, dtype=np.float64).reshape(-1, 2)
        if transform:
            # Quantized TopoJSON stores the first position absolute and every later one as a delta.
            pts = np.cumsum(pts, axis=0)
            pts = pts * np.asarray(transform["scale"]) + np.asarray(transform["translate"])
        arcs.append(pts)
    return arcs


def _stitch(ring_arcs: list[int], arcs: list[np.ndarray]) -> np.ndarray:
    """Join the arcs of one ring; ~i means arc i reversed; shared end points appear once."""
    parts: list[np.ndarray] = []
    for idx in ring_arcs:
        pts = arcs[~idx][::-1] if idx < 0 else arcs[idx]
        parts.append(pts if not parts else pts[1:])
    return np.concatenate(parts) if parts else np.empty((0, 2))


def _clip_half(ring: np.ndarray, bound: float, keep_below: bool) -> np.ndarray:
    """Sutherland-Hodgman clip of a closed ring against the vertical line lon = bound."""
    if len(ring) == 0:
        return ring
    out: list[tuple[float, float]] = []
    pts = ring if not np.array_equal(ring[0], ring[-1]) else ring[:-1]
    n = len(pts)
    for i in range(n):
        cur, nxt = pts[i], pts[(i + 1) % n]
        cur_in = cur[0] <= bound if keep_below else cur[0] >= bound
        nxt_in = nxt[0] <= bound if keep_below else nxt[0] >= bound
        if cur_in:
            out.append((cur[0], cur[1]))
        if cur_in != nxt_in:
            t = (bound - cur[0]) / (nxt[0] - cur[0])
            out.append((bound, cur[1] + t * (nxt[1] - cur[1])))
    if len(out) < 3:
        return np.empty((0, 2))
    out.append(out[0])
    return np.asarray(out)


def _split_antimeridian(ring: np.ndarray) -> list[np.ndarray]:
    """Pieces of a ring that all lie within [-180, 180] and never jump across the map."""
    if len(ring) < 3:
        return []
    jumps = np.abs(np.diff(ring[:, 0])) > 180.0
    if not jumps.any():
        return [ring]
    lon = ring[:, 0].copy()
    # Unwrap: shift every point after a jump by -/+360 so the ring is continuous in longitude.
    steps = np.diff(lon)
    shift = np.where(steps > 180, -360.0, np.where(steps < -180, 360.0, 0.0))
    offsets = np.concatenate([[0.0], np.cumsum(shift)])
    unwrapped = np.column_stack([lon + offsets, ring[:, 1]])
    if abs(unwrapped[-1, 0] - unwrapped[0, 0]) > 1e-9:
        return _close_round_pole(ring)
    pieces: list[np.ndarray] = []
    for shift in (-360.0, 0.0, 360.0):
        shifted = unwrapped + np.array([shift, 0.0])
        if shifted[:, 0].max() <= -180.0 or shifted[:, 0].min() >= 180.0:
            continue
        clipped = _clip_half(_clip_half(shifted, 180.0, True), -180.0, False)
        if len(clipped) >= 4:
            pieces.append(clipped)
    return pieces


def _close_round_pole(ring: np.ndarray) -> list[np.ndarray]:
    """A ring that goes once round a pole (Antarctica) closed via the map edges and the pole.

    Joined by its own jump segment it would cut straight across the map and leave the land
    between that segment and the pole outside; on a plate carrée the pole is the map's bottom (or
    top) edge, so the ring is closed along the edges instead.
    """
    pts = ring[:-1] if np.array_equal(ring[0], ring[-1]) else ring
    nxt = np.roll(pts, -1, axis=0)
    jumps = np.flatnonzero(np.abs(nxt[:, 0] - pts[:, 0]) > 180.0)
    if len(jumps) != 1:
        return [ring]
    start = (int(jumps[0]) + 1) % len(pts)
    pts = np.roll(pts, -start, axis=0)  # now runs from just after the jump to just before it
    pole = -90.0 if pts[:, 1].mean() < 0 else 90.0
    end_edge = 180.0 if pts[-1, 0] > 0 else -180.0
    closing = np.array([
        (end_edge, pts[-1, 1]), (end_edge, pole), (-end_edge, pole), (-end_edge, pts[0, 1]), tuple(pts[0]),
    ])
    return [np.concatenate([pts, closing])]


def _geometry_rings(geom: dict[str, Any], arcs: list[np.ndarray]) -> list[np.ndarray]:
    kind = geom.get("type")
    if kind == "Polygon":
        polys = [geom.get("arcs", [])]
    else:
        polys = geom.get("arcs", []) if kind == "MultiPolygon" else []
    rings: list[np.ndarray] = []
    for poly in polys:
        for ring_arcs in poly:
            rings.extend(_split_antimeridian(_stitch(ring_arcs, arcs)))
    return rings


@cache
def _load(resolution: str) -> dict[str, tuple[np.ndarray, ...]]:
    """Rings per country; decoded from the TopoJSON once, then read from a cached .npz.

    Decoding the 50m atlas takes ~0.2 s, which every `analyze` paid for its plausibility check;
    the cache file is named after the atlas's sha256, so a changed atlas is decoded anew.
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, not {resolution!r}")
    path = DATA_DIR / f"countries-{resolution}.json"
    try:
        raw = path.read_bytes()
    except OSError:
        return {}
    cached = _cache_path(resolution, raw)
    shapes = _read_cached(cached) if cached is not None else None
    if shapes is None:
        shapes = _decode_topojson(raw)
        if cached is not None and shapes:
            _write_cached(cached, shapes)
    return shapes


def _cache_path(resolution: str, raw: bytes) -> Path | None:
    from analyzer.geo.embedded import cache_dir

    try:
        return cache_dir() / f"borders-{resolution}-{hashlib.sha256(raw).hexdigest()[:16]}.npz"
    except OSError:
        return None


def _read_cached(path: Path) -> dict[str, tuple[np.ndarray, ...]] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            codes, starts, points = z["codes"], z["starts"], z["points"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if starts.shape != (codes.shape[0] + 1,) or points.ndim != 2 or starts[-1] != points.shape[0]:
        return None
    shapes: dict[str, list[np.ndarray]] = {}
    for cc, lo, hi in zip(codes.tolist(), starts[:-1].tolist(), starts[1:].tolist(), strict=True):
        shapes.setdefault(cc, []).append(points[lo:hi])
    return {cc: tuple(rings) for cc, rings in shapes.items()}


def _write_cached(path: Path, shapes: dict[str, tuple[np.ndarray, ...]]) -> None:
    codes = [cc for cc, rings in shapes.items() for _ in rings]
    rings = [r for rs in shapes.values() for r in rs]
    starts = np.zeros(len(rings) + 1, np.int64)
    np.cumsum([r.shape[0] for r in rings], out=starts[1:])
    # Private temp file then rename: parallel workers never read half a file.
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".borders-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as out:
            np.savez(out, codes=np.array(codes), starts=starts, points=np.concatenate(rings))
        os.replace(tmp_name, path)
    except OSError:
        pass
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def _decode_topojson(raw: bytes) -> dict[str, tuple[np.ndarray, ...]]:
    try:
        topo = json.loads(raw.decode("utf-8"))
    except ValueError:
        return {}
    arcs = _decode_arcs(topo)
    numeric = iso_numeric_to_alpha2()
    shapes: dict[str, list[np.ndarray]] = {}
    for geom in topo.get("objects", {}).get("countries", {}).get("geometries", []):
        gid = geom.get("id")
        name = (geom.get("properties") or {}).get("name", "")
        cc = numeric.get(str(gid).zfill(3)) if gid is not None else _UNCODED_NAMES.get(name)
        if not cc:
            continue
        shapes.setdefault(cc, []).extend(_geometry_rings(geom, arcs))
    return {cc: tuple(rings) for cc, rings in shapes.items() if rings}


def country_shapes(resolution: str = "110m") -> dict[str, list[list[tuple[float, float]]]]:
    """ISO alpha-2 -> rings of (lon, lat) points, each ring closed and within [-180, 180].

    Draw with the even-odd fill rule (holes such as Lesotho inside South Africa are plain rings).
    """
    return {
        cc: [[(float(x), float(y)) for x, y in ring] for ring in rings]
        for cc, rings in _load(resolution).items()
    }


def _rings_for(cc: str, resolution: str) -> tuple[np.ndarray, ...]:
    """Rings at the preferred resolution, else at any other (tiny states exist only at 50m)."""
    cc = cc.upper()
    for res in (resolution, *[r for r in RESOLUTIONS if r != resolution]):
        rings = _load(res).get(cc)
        if rings:
            return rings
    return ()


def _ring_area_centroid(ring: np.ndarray) -> tuple[float, float, float]:
    """Planar (shoelace) area and centroid of a ring in lon/lat degrees."""
    x, y = ring[:, 0], ring[:, 1]
    cross = x[:-1] * y[1:] - x[1:] * y[:-1]
    area = cross.sum() / 2.0
    if abs(area) < 1e-12:
        return 0.0, float(x.mean()), float(y.mean())
    cx = ((x[:-1] + x[1:]) * cross).sum() / (6.0 * area)
    cy = ((y[:-1] + y[1:]) * cross).sum() / (6.0 * area)
    return abs(area), float(cx), float(cy)


def country_centroid(cc: str, resolution: str = "110m") -> tuple[float, float] | None:
    """(lat, lon) of the centre of a country's largest ring, None when the country is unknown.

    The largest ring rather than all of them, so the United States is not pulled towards Alaska
    and France not towards French Guiana: the result stands in for "a vantage in that country".
    """
    rings = _rings_for(cc, resolution)
    if not rings:
        return None
    best = max((_ring_area_centroid(r) for r in rings), key=lambda t: t[0])
    return best[2], best[1]


def point_in_country(lat: float, lon: float, cc: str, resolution: str = "50m") -> bool:
    """Even-odd ray test against all rings of the country (holes included)."""
    inside = False
    for ring in _rings_for(cc, resolution):
        x, y = ring[:-1, 0], ring[:-1, 1]
        x2, y2 = ring[1:, 0], ring[1:, 1]
        straddles = (y > lat) != (y2 > lat)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = x + (lat - y) * (x2 - x) / (y2 - y)
        crossings = int(np.count_nonzero(straddles & (lon < x_cross)))
        inside ^= bool(crossings % 2)
    return inside


def country_at(lat: float, lon: float, resolution: str = "50m") -> str | None:
    """The country whose outline contains the point, None at sea or in unclaimed land."""
    for cc in _load(resolution):
        if point_in_country(lat, lon, cc, resolution):
            return cc
    return None


def _unit(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    la, lo = np.radians(lat), np.radians(lon)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def _angle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.arctan2(np.linalg.norm(np.cross(u, v), axis=-1), np.einsum("...i,...i->...", u, v))


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p = _unit(np.array([lat1]), np.array([lon1]))
    q = _unit(np.array([lat2]), np.array([lon2]))
    return float(_angle(p, q)[0] * EARTH_RADIUS_KM)


def _min_distance_to_segments(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Smallest great-circle angle from point p to the arcs a[i]-b[i] (radians)."""
    d_end = np.minimum(_angle(p, a), _angle(p, b))
    normal = np.cross(a, b)
    norm = np.linalg.norm(normal, axis=-1)
    ok = norm > 1e-15
    n = np.where(ok[:, None], normal / np.where(ok, norm, 1.0)[:, None], 0.0)
    s = n @ p
    # Foot of the perpendicular from p onto each great circle; it counts only when it lies
    # between the segment's end points, otherwise the nearest point is an end point.
    foot = p[None, :] - s[:, None] * n
    within = ok & (np.einsum("ij,ij->i", np.cross(a, foot), n) >= 0) & (
        np.einsum("ij,ij->i", np.cross(foot, b), n) >= 0
    )
    d_cross = np.abs(np.arcsin(np.clip(s, -1.0, 1.0)))
    return float(np.min(np.where(within, np.minimum(d_cross, d_end), d_end)))


def distance_to_country_km(lat: float, lon: float, cc: str, resolution: str = "50m") -> float:
    """Great-circle distance from a point to the nearest border point of a country (0 if inside).

    NaN when the country has no outline (unknown code, "ZZ"): no bound can be derived.
    """
    rings = _rings_for(cc, resolution)
    if not rings:
        return math.nan
    if point_in_country(lat, lon, cc, resolution):
        return 0.0
    p = _unit(np.array(lat), np.array(lon))
    # All rings' segments in one pass (a country can have hundreds of island rings).
    pts = np.concatenate(rings)
    u = _unit(pts[:, 1], pts[:, 0])
    seg_start = np.ones(pts.shape[0] - 1, bool)
    ends = np.cumsum([r.shape[0] for r in rings])[:-1]
    seg_start[ends - 1] = False  # the pair (last point of a ring, first of the next) is no segment
    a, b = u[:-1][seg_start], u[1:][seg_start]
    return _min_distance_to_segments(p, a, b) * EARTH_RADIUS_KM


# The 110m outlines are simplified: a vertex can sit up to a few hundred km from the true border,
# so vertex-to-vertex distances are lowered by this much before they serve as a bound.
_OUTLINE_SLACK_KM = 300.0


@cache
def country_distance_km(a: str, b: str) -> float:
    """A lower bound on the distance between two countries' outlines (0 when they touch).

    Used to test whether two servers' claimed countries can both hold (their RTTs bound the
    distance between them, vantage known or not). NaN when either country has no outline.
    """
    a, b = a.upper(), b.upper()
    if a == b:
        return 0.0
    ra, rb = _rings_for(a, "110m"), _rings_for(b, "110m")
    if not ra or not rb:
        return math.nan
    pa, pb = np.concatenate(ra), np.concatenate(rb)
    ua, ub = _unit(pa[:, 1], pa[:, 0]), _unit(pb[:, 1], pb[:, 0])
    best = -1.0
    for start in range(0, ua.shape[0], 512):  # bounded memory for large countries
        best = max(best, float(np.max(ua[start : start + 512] @ ub.T)))
    km = math.acos(max(-1.0, min(1.0, best))) * EARTH_RADIUS_KM
    return max(0.0, km - _OUTLINE_SLACK_KM)
