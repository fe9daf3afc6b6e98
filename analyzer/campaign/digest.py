"""One session reduced to the few rows a campaign compares (runs in a worker, local or Dask).

Read from the session report (`confscope.session/1`, report.json) so that a finished batch
folder is enough. Only public remote endpoints count: a call's route is where its packets went
beyond the local network.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any

from analyzer.campaign.labels import infer

MAX_REPORT_BYTES = 2 * 1024**3


def digest_many(items: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Digests of (name, report.json path) pairs; a bad report gives an `error`, never raises.
    Many per task: one task per session would cost more in scheduling than in work."""
    return [digest_report(name, path) for name, path in items]


def digest_report(name: str, path: str) -> dict[str, Any]:
    try:
        if os.path.getsize(path) > MAX_REPORT_BYTES:
            return {"name": name, "report": path, "error": "report.json too large"}
        with open(path, encoding="utf-8") as fh:
            report = json.load(fh)
        if not isinstance(report, dict) or not str(report.get("schema", "")).startswith("confscope.session/"):
            return {"name": name, "report": path, "error": "not a confscope session report"}
        return {"name": name, "report": path, **digest(report)}
    except (OSError, ValueError, RecursionError) as exc:
        return {"name": name, "report": path, "error": f"unreadable report: {type(exc).__name__}"}
    except Exception as exc:  # a malformed report must not stop the campaign
        return {"name": name, "report": path, "error": f"bad report ({type(exc).__name__}: {str(exc)[:200]})"}


def _int(v: Any) -> int:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) and v == v else 0


def _confidences(report: dict[str, Any]) -> dict[str, str]:
    """server ip -> location confidence, where the report has one (an `endpoints` table, or the
    key-exchange row itself)."""
    out: dict[str, str] = {}
    for e in report.get("endpoints") or []:
        if isinstance(e, dict) and e.get("ip") is not None:
            c = e.get("location_confidence", e.get("confidence"))
            if c is not None:
                out[str(e["ip"])] = str(c)
    return out


def digest(report: dict[str, Any]) -> dict[str, Any]:
    """The campaign's view of one session report (JSON-able, small)."""
    cap = report.get("capture") or {}
    inferred = infer(report)
    # Bytes per (flow app, role, country): the campaign keeps the app the session is labelled
    # with, or every app when the classifier never saw that one (a manifest calling it "meet").
    routes: dict[str, dict[tuple[str, str], list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for f in report.get("flows") or []:
        if not isinstance(f, dict) or f.get("remote_scope") != "public":
            continue
        country = str(f.get("remote_country") or "ZZ")
        by_role = f.get("bytes_by_role")
        for role, b in (by_role.items() if isinstance(by_role, dict) else ()):
            if _int(b) > 0:
                cell = routes[str(f.get("app") or "unknown")][(str(role), country)]
                cell[0] += _int(b)
                cell[1] += 1
    conf = _confidences(report)
    kx = []
    for k in report.get("key_exchange") or []:
        if not isinstance(k, dict) or k.get("scope", "public") != "public":
            continue
        c = k.get("location_confidence", k.get("confidence", conf.get(str(k.get("server_ip")))))
        kx.append({"app": k.get("app"), "country": str(k.get("country") or "ZZ"), "protocol": k.get("protocol"),
                   "hostname": k.get("hostname"), "asn": k.get("asn"), "bytes": _int(k.get("bytes")),
                   "location_confidence": None if c is None else str(c)})
    media = []
    for m in report.get("media") or []:
        if not isinstance(m, dict):
            continue
        streams = [s for s in m.get("streams") or [] if isinstance(s, dict)]
        media.append({"app": m.get("app"), "protocol": m.get("protocol"), "country": str(m.get("country") or "ZZ"),
                      "asn": m.get("asn"), "org": m.get("org"), "bytes": _int(m.get("media_bytes") or m.get("bytes")),
                      "streams": len(streams),
                      "ecb_like": sum(1 for s in streams if s.get("verdict") == "ecb_like"),
                      "unencrypted_like": sum(1 for s in streams if s.get("verdict") == "unencrypted_like")})
    findings = [{"code": str(f.get("code")), "severity": str(f.get("severity") or "info")}
                for f in report.get("findings") or [] if isinstance(f, dict)]
    return {
        "capture_path": cap.get("path"),
        "inferred": inferred,
        "packets": _int(cap.get("packets")),
        "bytes": _int(cap.get("bytes")),
        "first_ts": cap.get("first_ts"),
        "routes": {app: [[r, c, b, n] for (r, c), (b, n) in v.items()] for app, v in routes.items()},
        "key_exchange": kx,
        "media": media,
        "findings": findings,
    }
