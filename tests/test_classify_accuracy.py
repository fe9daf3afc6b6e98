"""App attribution measured against nDPI's labels (../shared/captures/labels) for every flow that
nDPI attributes to a conferencing service. At least 95% must agree; every disagreement is listed
in DISAGREEMENTS with the reason, and where confscope is believed right the flow's own evidence
must show why."""

from __future__ import annotations

import csv
import ipaddress
from functools import cache, lru_cache

import pandas as pd
import pytest

from analyzer.classify import classify_flows
from analyzer.dissect import dissect_flows
from tests.conftest import LABELS, real_capture

CAPTURES = [
    "zoom.pcap", "zoom_p2p.pcapng", "teams.pcap", "skype-conference-call.pcap", "webex.pcap",
    "google_meet.pcapng", "whatsapp_voice_and_message.pcap", "signal.pcap", "telegram_videocall.pcapng",
    "discord.pcap", "stun.pcap", "stun_dtls_rtp.pcapng", "rtp.pcapng",
]

# nDPI protocol name (any dot-separated part of its label) -> the confscope apps that agree.
NDPI_APPS: dict[str, frozenset[str]] = {
    "Zoom": frozenset({"zoom"}),
    "Teams": frozenset({"teams", "skype"}),
    "Skype_Teams": frozenset({"teams", "skype"}),
    "Skype_TeamsCall": frozenset({"teams", "skype"}),
    "Skype": frozenset({"teams", "skype"}),
    "Webex": frozenset({"webex"}),
    "GoogleMeet": frozenset({"meet"}),
    "GoogleCall": frozenset({"meet"}),
    "WhatsApp": frozenset({"whatsapp"}),
    "WhatsAppCall": frozenset({"whatsapp"}),
    "Signal": frozenset({"signal"}),
    "SignalVoip": frozenset({"signal"}),
    "Telegram": frozenset({"telegram"}),
    "TelegramVoip": frozenset({"telegram"}),
    "Discord": frozenset({"discord"}),
}

# (capture, transport, client/server endpoints) -> (nDPI label, confscope app, reason, who is right,
# text the confscope evidence must contain when confscope is believed right).
_MS_NOT_TEAMS = (
    "nDPI's host list files Microsoft Stream and HockeyApp (crash reporting) under Skype_Teams; they "
    "are generic Microsoft services that any Microsoft app uses, not Teams conferencing"
)
DISAGREEMENTS: dict[tuple[str, str, frozenset], tuple[str, str, str, str, str]] = {
    ("teams.pcap", "tcp", frozenset({("192.168.1.6", 60562), ("104.40.187.151", 443)})): (
        "TLS.Skype_Teams", "unknown", _MS_NOT_TEAMS, "confscope", "sni:api.microsoftstream.com matches no",
    ),
    ("teams.pcap", "tcp", frozenset({("192.168.1.6", 60563), ("52.169.186.119", 443)})): (
        "TLS.Skype_Teams", "unknown", _MS_NOT_TEAMS, "confscope", "sni:euno-1.api.microsoftstream.com matches no",
    ),
    ("teams.pcap", "tcp", frozenset({("192.168.1.6", 60564), ("40.79.138.41", 443)})): (
        "TLS.Skype_Teams", "unknown", _MS_NOT_TEAMS, "confscope", "sni:gate.hockeyapp.net matches no",
    ),
    ("teams.pcap", "tcp", frozenset({("192.168.1.6", 60568), ("40.79.138.41", 443)})): (
        "TLS.Skype_Teams", "unknown", _MS_NOT_TEAMS, "confscope", "sni:gate.hockeyapp.net matches no",
    ),
}


def _norm(ip: str) -> str:
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return ip


def _key(transport: str, a_ip: str, a_port: int, b_ip: str, b_port: int) -> tuple[str, frozenset]:
    return transport.lower(), frozenset({(_norm(a_ip), int(a_port)), (_norm(b_ip), int(b_port))})


@cache
def _classified(name: str) -> pd.DataFrame:
    from analyzer.scan.scanner import scan_capture

    r = scan_capture(real_capture(name))
    d = dissect_flows(r.flows, r.samples)
    return classify_flows(r.flows, d.facts, d.dns)


@lru_cache(maxsize=1)
def comparison() -> list[dict]:
    """One row per nDPI-labelled conferencing flow: expected apps, confscope's app and evidence."""
    rows: list[dict] = []
    for name in CAPTURES:
        labels = LABELS / f"{name}.csv"
        if not labels.exists():
            pytest.skip(f"labels {labels} are absent")
        df = _classified(name)
        by_key: dict[tuple, list[int]] = {}
        for i, (tr, cip, cp, sip, sp) in enumerate(
            zip(df["transport"], df["client_ip"], df["client_port"], df["server_ip"], df["server_port"], strict=True)
        ):
            by_key.setdefault(_key(tr, cip, cp, sip, sp), []).append(i)
        with open(labels, newline="") as fh:
            for lab in csv.DictReader(fh):
                expected = frozenset().union(*(NDPI_APPS.get(p, frozenset()) for p in lab["ndpi_protocol"].split(".")))
                if not expected:
                    continue
                key = _key(lab["transport"], lab["a_ip"], lab["a_port"] or 0, lab["b_ip"], lab["b_port"] or 0)
                hits = by_key.get(key, [])
                rows.append({
                    "capture": name, "key": key, "ndpi": lab["ndpi_protocol"], "expected": expected,
                    "apps": [df["app"].iloc[i] for i in hits],
                    "evidence": [e for i in hits for e in df["app_evidence"].iloc[i]],
                })
    return rows


def _table(rows: list[dict]) -> str:
    per: dict[str, list[int]] = {}
    for r in rows:
        app = "/".join(sorted(r["expected"]))
        ok = bool(r["apps"]) and all(a in r["expected"] for a in r["apps"])
        t = per.setdefault(app, [0, 0])
        t[0] += ok
        t[1] += 1
    lines = [f"{'app':10} {'agree':>5} {'flows':>5} {'pct':>6}"]
    for app, (ok, n) in sorted(per.items()):
        lines.append(f"{app:10} {ok:5d} {n:5d} {100 * ok / n:6.1f}")
    ok = sum(v[0] for v in per.values())
    n = sum(v[1] for v in per.values())
    lines.append(f"{'all':10} {ok:5d} {n:5d} {100 * ok / n:6.1f}")
    return "\n".join(lines)


def test_every_labelled_flow_is_found():
    missing = [r for r in comparison() if not r["apps"]]
    assert not missing, [(r["capture"], r["key"]) for r in missing]


def test_agreement_with_ndpi_at_least_95_percent():
    rows = comparison()
    ok = sum(1 for r in rows if r["apps"] and all(a in r["expected"] for a in r["apps"]))
    table = _table(rows)
    print("\nconfscope app vs nDPI label, conferencing flows\n" + table)
    assert len(rows) >= 150, "fewer labelled conferencing flows than the shared captures hold"
    assert ok / len(rows) >= 0.95, table


def test_every_disagreement_is_documented_with_evidence():
    undocumented = []
    for r in comparison():
        if r["apps"] and all(a in r["expected"] for a in r["apps"]):
            continue
        doc = DISAGREEMENTS.get((r["capture"], *r["key"]))
        if doc is None:
            undocumented.append((r["capture"], r["key"], r["ndpi"], r["apps"]))
            continue
        ndpi, ours, reason, right, must_show = doc
        assert r["ndpi"] == ndpi and r["apps"] == [ours], (r, doc)
        assert reason
        if right == "confscope":
            assert any(must_show in e for e in r["evidence"]), (r["evidence"], must_show)
    assert not undocumented, undocumented


def test_documented_disagreements_still_disagree():
    # A fixed disagreement must leave the list, so the list stays the truth.
    current = {(r["capture"], *r["key"]) for r in comparison()
               if not (r["apps"] and all(a in r["expected"] for a in r["apps"]))}
    assert set(DISAGREEMENTS) == current
