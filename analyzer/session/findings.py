"""Findings: what a reader of the report must know, each with a code, a severity, a plain-language
detail and the flows it concerns. Pure functions of the session's tables."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import pandas as pd

from analyzer.common.words import plural

SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
POLICY_CODES = {
    "key_exchange": ("KEY_EXCHANGE_OUTSIDE_POLICY", "critical", "Keys handed out outside the allowed countries"),
    "media": ("MEDIA_OUTSIDE_POLICY", "high", "Media carried outside the allowed countries"),
    "signaling": ("SIGNALING_OUTSIDE_POLICY", "medium", "Signaling outside the allowed countries"),
}
OTHER_POLICY = ("OTHER_OUTSIDE_POLICY", "low", "Other traffic outside the allowed countries")


def finding(
    code: str, severity: str, title: str, detail: str, flow_ids: list[int] | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "code": code,
        "severity": severity,
        "title": title,
        "detail": detail,
        "flow_ids": sorted({int(f) for f in flow_ids or []}),
        **extra,
    }


_WEAKER = {"critical": "high", "high": "medium", "medium": "low", "low": "low"}
_CONFIDENCE_RANK = {"confirmed": 0, "likely": 1, "contested": 2, "unknown": 3}


def policy_findings(
    violations: list[dict[str, Any]], policy_source: str, endpoints: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One finding per role code; violations whose location is contested or ruled out by RTT go to
    a separate finding one severity lower that says "needs verification" and names the contradiction,
    so a doubtful location is never reported as a certain critical violation."""
    by_ip = {e["ip"]: e for e in endpoints or []}
    by_code: dict[tuple, list[dict]] = defaultdict(list)
    for v in violations:
        doubtful = v.get("confidence") == "needs-verification"
        by_code[(*POLICY_CODES.get(v["role"], OTHER_POLICY), doubtful)].append(v)
    out = []
    for (code, severity, title, doubtful), items in by_code.items():
        places = sorted({(v["country"], v["app"] or "unknown") for v in items})
        where = ", ".join(f"{c} ({a})" for c, a in places)
        low_conf = all(v["confidence"] == "low" for v in items)
        detail = (
            f"{plural(len(items), 'flow role')} {'reaches' if len(items) == 1 else 'reach'} "
            f"{where}, outside the policy {policy_source}."
        ) + (" The only countries involved are unknown (ZZ): confidence is low." if low_conf else "")
        levels = [v.get("location_confidence") or "unknown" for v in items]
        confidence = max(levels, key=lambda c: _CONFIDENCE_RANK.get(c, 3)) if levels else "unknown"
        extra: dict[str, Any] = {}
        if doubtful:
            severity, title = _WEAKER[severity], f"{title} (needs verification)"
            reasons = []
            for ip in sorted({v["remote_ip"] for v in items}):
                why = (by_ip.get(ip) or {}).get("contradictions") or ["the RTT rules the claimed country out"]
                reasons.append(f"{ip}: {why[0]}")
            detail += " The location is contested, so this needs verification: " + "; ".join(reasons[:3]) + (
                f" (and {len(reasons) - 3} more)" if len(reasons) > 3 else ""
            ) + "."
            confidence = "contested"
            extra["needs_verification"] = True
        out.append(
            finding(
                code,
                "low" if low_conf else severity,
                title,
                detail,
                [v["flow_id"] for v in items],
                countries=sorted({c for c, _ in places}),
                confidence=confidence,
                **extra,
            )
        )
    return out


def location_findings(endpoints: list[dict[str, Any]], conflicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pairwise RTT contradictions (vantage unknown) and contested server locations."""
    out = []
    if conflicts:
        c = conflicts[0]
        out.append(finding(
            "GEO_RTT_INCONSISTENT",
            "medium",
            "Server locations that cannot all hold",
            f"{plural(len(conflicts), 'server location')} contradict the round-trip times of other servers in the same "
            f"capture, vantage point unknown: {c['detail']}. At least one database answer is wrong (or the "
            "address is anycast)." + (
                f" Most claims fit a vantage in or near {c['vantage_hypothesis']}."
                if c.get("vantage_hypothesis") else ""
            ),
            [],
            confidence="contested",
            addresses=sorted({x["ip"] for x in conflicts}),
        ))
    contested = [e for e in endpoints if e.get("confidence") == "contested"]
    if contested:
        e = contested[0]
        out.append(finding(
            "LOCATION_CONTESTED",
            "low",
            "Server locations contested by the evidence",
            f"{len(contested)} remote address(es) have contradicting location evidence, e.g. {e['ip']} "
            f"({e['country']}): " + "; ".join(e.get("contradictions", [])[:2]) + ". See the endpoints table.",
            [],
            confidence="contested",
            addresses=[x["ip"] for x in contested][:50],
        ))
    return out


def data_age_findings(capture: dict[str, Any], databases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Databases whose data is more than 12 months away from the capture's date."""
    import datetime as dt

    ts = capture.get("first_ts")
    if not isinstance(ts, int | float) or not math.isfinite(ts) or ts <= 0:
        return []
    when = dt.datetime.fromtimestamp(float(ts), dt.UTC).date()
    stale = []
    for db in databases:
        date = db.get("data_date") or db.get("build_date")
        try:
            data_day = dt.date.fromisoformat(str(date)[:10])
        except ValueError:
            continue
        months = abs((data_day - when).days) / 30.44
        if months > 12:
            stale.append((db.get("name"), data_day, months))
    if not stale:
        return []
    names = ", ".join(f"{n} (data of {d.isoformat()}, {m:.0f} months away)" for n, d, m in stale)
    return [finding(
        "GEO_DATA_AGE",
        "low",
        "Location data is far from the capture's date",
        f"The capture was taken on {when.isoformat()}; located with {names}. Addresses move between "
        "networks and countries: for a faithful answer pass a database of the capture's time with --geoip.",
        [],
        capture_date=when.isoformat(),
    )]


def cleartext_key_findings(flows: pd.DataFrame) -> list[dict[str, Any]]:
    """SDES keys (a=crypto) seen in SIP/SDP that travelled unencrypted. The key is never quoted."""
    if "sdp_key_exchange" not in flows:
        return []
    hits = [
        int(r.flow_id)
        for r in flows[["flow_id", "sdp_key_exchange"]].itertuples(index=False)
        if _has(r.sdp_key_exchange, "crypto")
    ]
    if not hits:
        return []
    return [
        finding(
            "CLEARTEXT_KEYS",
            "critical",
            "SRTP keys sent in clear text",
            f"{plural(len(hits), 'flow')} {'carries' if len(hits) == 1 else 'carry'} "
            f"SDP 'a=crypto' (SDES) lines over unencrypted SIP: anyone on the path can "
            "decrypt the media. The keys are not reproduced in this report.",
            hits,
        )
    ]


def ecb_findings(streams: pd.DataFrame | None) -> list[dict[str, Any]]:
    if streams is None or streams.empty or "ecb_like" not in streams:
        return []
    ecb = streams[streams["ecb_like"].fillna(False).astype(bool)]
    out = []
    if len(ecb):
        worst = ecb.sort_values("ecb_repeat_ratio", ascending=False).iloc[0]
        out.append(
            finding(
                "ECB_PATTERN",
                "high",
                "Media encrypted in an ECB-like mode",
                f"{plural(len(ecb), 'media stream')} {'repeats' if len(ecb) == 1 else 'repeat'} "
                f"16-byte ciphertext blocks far above chance: worst "
                f"{int(worst['ecb_repeats'])} repeats in {int(worst['ecb_blocks'])} blocks "
                f"({100 * float(worst['ecb_repeat_ratio']):.1f}%; random ciphertext would give "
                f"{float(worst.get('ecb_random_expected', 0.0)):.1e}). Equal plaintext gives equal ciphertext, as "
                "Citizen Lab found for Zoom's AES-128-ECB in 2020.",
                ecb["flow_id"].tolist(),
                statistic="repeated 16-byte blocks / blocks",
                threshold=_threshold(ecb),
            )
        )
    plain = streams[streams.get("unencrypted_like", pd.Series(False, index=streams.index)).fillna(False).astype(bool)]
    if len(plain):
        first = plain.iloc[0]
        evidence = str(first.get("verdict_reason", "")) if "verdict_reason" in plain else ""
        out.append(
            finding(
                "UNENCRYPTED_MEDIA",
                "high",
                "Media that does not look encrypted",
                f"{plural(len(plain), 'RTP stream')} {'has' if len(plain) == 1 else 'have'} payloads that are not "
                "ciphertext, measured on the encrypted part "
                "only (after RTP header, CSRCs and extensions; without padding and the SRTP tag): plain RTP that "
                f"anyone on the path can play back. Evidence, e.g. SSRC {int(first.get('ssrc', 0) or 0):#010x}: "
                f"{evidence}.",
                plain["flow_id"].tolist(),
                statistic="byte entropy of the encrypted region vs random bytes of the same size",
                evidence=evidence,
            )
        )
    return out


def _threshold(ecb: pd.DataFrame) -> str:
    reasons = ecb.get("ecb_reason")
    return str(reasons.iloc[0]) if reasons is not None and len(reasons) else ""


def geo_findings(flows: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    if "geo_implausible" in flows:
        bad = flows[flows["geo_implausible"].fillna(False).astype(bool)]
        if len(bad):
            r = bad.iloc[0]
            out.append(
                finding(
                    "GEO_IMPLAUSIBLE",
                    "medium",
                    "Geolocation contradicted by round-trip time",
                    f"{plural(len(bad), 'flow')} {'answers' if len(bad) == 1 else 'answer'} "
                    f"faster than light allows from the claimed country, e.g. "
                    f"{r['remote_ip']} claimed in {r['remote_country']}: {r['min_rtt_ms']:.1f} ms RTT bounds it to "
                    f"{r['geo_bound_km']:.0f} km but the country is {r['geo_distance_km']:.0f} km away. Anycast or a "
                    "wrong database; treat these countries with caution.",
                    bad["flow_id"].tolist(),
                    confidence="contested",
                )
            )
    if "geo_disagreement" in flows:
        dis = flows[flows["geo_disagreement"].fillna(False).astype(bool)]
        if len(dis):
            ips = sorted(set(dis["remote_ip"]))
            out.append(
                finding(
                    "GEO_DISAGREEMENT",
                    "low",
                    "Geolocation databases disagree",
                    f"{len(ips)} address(es) are placed in different countries by different databases "
                    f"(e.g. {ips[0]}); the report uses the user's database first.",
                    dis["flow_id"].tolist(),
                )
            )
    return out


def capture_findings(capture: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    skipped = capture.get("skipped_by_reason") or {}
    damaged = sum(skipped.get(k, 0) for k in ("corrupt_record", "bad_record_length", "bad_interface_id"))
    if capture.get("truncated") or damaged:
        out.append(
            finding(
                "TRUNCATED_CAPTURE",
                "medium",
                "The capture is truncated or damaged",
                "Reading stopped early or skipped damaged records: " + "; ".join(capture.get("warnings", [])[:3]),
            )
        )
    notable = {k: v for k, v in skipped.items() if k != "non_ip"}
    if notable:
        out.append(
            finding(
                "UNDECODED_PACKETS",
                "low" if sum(notable.values()) < 100 else "medium",
                "Packets not decoded",
                f"{plural(sum(notable.values()), 'packet')} in no flow: "
                + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(notable.items()))
                + (f" (plus {skipped['non_ip']} non-IP frames such as ARP)" if skipped.get("non_ip") else ""),
            )
        )
    return out


def _has(value: Any, item: str) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if isinstance(value, str):
        return item in value.split(",")
    try:
        return item in value
    except TypeError:
        return False


def sort_findings(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(findings, key=lambda f: (SEVERITY_ORDER.get(f["severity"], 9), f["code"]))
