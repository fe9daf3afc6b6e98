"""Application attribution: direct evidence per flow, then inheritance between related flows.

Every piece of evidence is an (app, confidence, text) triple produced by a rule of the signature
file; the confidences of one app combine as 1 - prod(1 - c) and the app with the highest score
wins. Flows without enough evidence of their own inherit from related flows (DNS answers, the
STUN endpoint rule of Zoom P2P, the same server address); what is left becomes `sip`, `webrtc`
or `unknown`.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache

import pandas as pd

from analyzer.classify.signatures import Signatures
from analyzer.common.records import records as frame_records

FALLBACK_APPS = frozenset(("sip", "webrtc", "unknown"))
_CAP = 0.99


@dataclass(frozen=True)
class Evidence:
    app: str
    confidence: float
    text: str
    channel: str | None = None  # from host rules: key_delivery / media_relay


@dataclass
class Attribution:
    app: str = "unknown"
    confidence: float = 0.0
    evidence: list[str] = field(default_factory=list)
    channel: str | None = None


@lru_cache(maxsize=65536)
def is_global(ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_global and not addr.is_multicast


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class DnsIndex:
    """Names answered for each address, in time order."""

    def __init__(self, dns: pd.DataFrame | None) -> None:
        self._by_ip: dict[str, tuple[list[int], list[tuple[str, ...]]]] = {}
        if dns is None or dns.empty:
            return
        acc: dict[str, list[tuple[int, tuple[str, ...]]]] = defaultdict(list)
        chains = dns["cname_chain"] if "cname_chain" in dns else dns["name"].map(lambda n: (n,))
        for ip, name, ts, chain in zip(dns["ip"], dns["name"], dns["ts_ns"], chains, strict=True):
            names = tuple(chain) if chain else (name,)
            acc[str(ip)].append((int(ts), names))
        for ip, rows in acc.items():
            rows.sort(key=lambda r: r[0])
            self._by_ip[ip] = ([r[0] for r in rows], [r[1] for r in rows])

    def names(self, ip: str, before_ns: int | None = None) -> tuple[list[str], bool]:
        """Names answered for ip (queried name first), and whether they were seen before `before_ns`.

        Answers seen before the flow started are preferred; otherwise later ones are used (a
        capture may start after the lookup was cached, or the answer may arrive a moment late).
        """
        entry = self._by_ip.get(ip)
        if entry is None:
            return [], False
        times, chains = entry
        if before_ns is not None:
            pos = bisect.bisect_right(times, before_ns)
            if pos:
                return _unique(chains[pos - 1 :: -1]), True
        return _unique(chains), False

    def hostname(self, ip: str, before_ns: int) -> str | None:
        entry = self._by_ip.get(ip)
        if entry is None:
            return None
        times, chains = entry
        pos = bisect.bisect_right(times, before_ns)
        return chains[pos - 1][0] if pos else None


def _unique(chains) -> list[str]:
    out: list[str] = []
    for chain in chains:
        for n in chain:
            if n not in out:
                out.append(n)
    return out


def _get(facts: dict, key: str):
    v = facts.get(key)
    if v is None or (isinstance(v, float) and v != v):
        return None
    return v


def direct_evidence(flow: dict, facts: dict, dns: DnsIndex, sig: Signatures) -> list[Evidence]:
    """Evidence from the flow's own packets, names and addresses."""
    ev: list[Evidence] = []
    transport = flow.get("transport")
    # Payload markers verified on packets.
    for rule in sig.payload:
        value = _get(facts, rule.fact)
        if value:
            detail = f" ({value})" if isinstance(value, str) else ""
            ev.append(Evidence(rule.app, rule.confidence, f"payload:{rule.label}{detail}"))
    _stun_evidence(facts, sig, ev)
    # Names the flow carries itself.
    own_names: list[tuple[str, str]] = []
    for key, where in (("sni", "sni"), ("http_host", "http")):
        name = _get(facts, key)
        if name and not _is_ip_literal(name):
            own_names.append((name, where))
    own_matched = False
    for name, where in own_names:
        for rule in sig.host_matches(name, where):
            own_matched = True
            ev.append(Evidence(rule.app, rule.confidence, f"{where}:{name} matches {rule.label}", rule.channel))
    # Certificates count only when the flow names no other host itself: a shared certificate
    # (Microsoft's telemetry certificate lists pipe.skype.com) must not override the SNI.
    cert_keys = ("dtls_cert",) if own_names and not own_matched else ("cert_subject", "dtls_cert")
    for key in cert_keys:
        name = _get(facts, key)
        for rule in sig.host_matches(name, "cert"):
            ev.append(Evidence(rule.app, rule.confidence * 0.95, f"cert:{name} matches {rule.label}", rule.channel))
    sans = _get(facts, "cert_sans") or []
    if sans and not own_names and not any(e.text.startswith("cert:") for e in ev):
        for name in list(sans)[:8]:
            for rule in sig.host_matches(name, "cert"):
                text = f"cert-san:{name} matches {rule.label}"
                ev.append(Evidence(rule.app, rule.confidence * 0.85, text, rule.channel))
                break
    # DNS lookups made by this flow (a DNS flow belongs to the app whose names it asks for).
    for q in (_get(facts, "dns_queries") or [])[:4]:
        for rule in sig.host_matches(q, "dns"):
            ev.append(Evidence(rule.app, rule.confidence * 0.9, f"dns-query:{q} matches {rule.label}"))
    if transport not in ("tcp", "udp"):
        return ev
    # A flow that names its server (SNI) is judged by that name only: shared cloud addresses and
    # CDNs would otherwise pull unrelated services into an app.
    named_elsewhere = bool(own_names) and not own_matched
    if named_elsewhere:
        if not ev:
            names = ", ".join(n for n, _ in own_names)
            ev.append(Evidence("unknown", 0.0, f"{own_names[0][1]}:{names} matches no conferencing app signature"))
        return ev
    fac = sig.inherit.get("dns_factor", 0.9)
    first_ns = int(flow.get("first_ts_ns") or 0)
    for ip in _remote_ips(flow):
        names, before = dns.names(ip, first_ns)
        for name in names[:6]:
            for rule in sig.host_matches(name, "dns"):
                when = "" if before else " (answer after flow start)"
                ev.append(
                    Evidence(
                        rule.app,
                        rule.confidence * fac * (1.0 if before else 0.9),
                        f"dns:{ip} resolved from {name}{when}, {rule.label}",
                        rule.channel,
                    )
                )
        for hit in sig.range_hits(ip):
            ev.append(Evidence(hit.app, hit.confidence, f"ip:{ip} in {hit.cidr} ({hit.label}, {hit.date})"))
    _port_evidence(flow, facts, sig, ev)
    return ev


def _remote_ips(flow: dict) -> list[str]:
    out = []
    for key in ("server_ip", "client_ip"):
        ip = str(flow.get(key, ""))
        if ip and is_global(ip):
            out.append(ip)
    return out


def _stun_evidence(facts: dict, sig: Signatures, ev: list[Evidence]) -> None:
    attrs = set(_get(facts, "stun_attr_types") or [])
    mtypes = set(_get(facts, "stun_msg_types") or [])
    realm = (_get(facts, "stun_realm") or "").lower()
    software = (_get(facts, "stun_software") or "").lower()
    if not (attrs or mtypes or realm or software):
        return
    for rule in sig.stun:
        why = None
        if rule.attr_types & attrs:
            why = "attribute " + ",".join(f"0x{a:04x}" for a in sorted(rule.attr_types & attrs))
        elif rule.attr_range and any(rule.attr_range[0] <= a <= rule.attr_range[1] for a in attrs):
            why = f"attribute in 0x{rule.attr_range[0]:04x}-0x{rule.attr_range[1]:04x}"
        elif rule.msg_types & mtypes:
            why = "message type " + ",".join(f"0x{m:04x}" for m in sorted(rule.msg_types & mtypes))
        elif realm and any(r in realm for r in rule.realm):
            why = f"realm {realm}"
        elif software and any(s in software for s in rule.software):
            why = f"software {software}"
        if why:
            ev.append(Evidence(rule.app, rule.confidence, f"stun:{why} ({rule.label})"))


def _is_webrtc(facts: dict) -> bool:
    protos = set(_get(facts, "protocols") or [])
    return bool(protos & {"stun", "turn", "dtls", "rtp", "srtp"})


def _port_evidence(flow: dict, facts: dict, sig: Signatures, ev: list[Evidence]) -> None:
    transport = flow.get("transport")
    in_range = {e.app for e in ev if e.text.startswith("ip:")}
    for rule in sig.ports:
        if rule.transport != transport:
            continue
        if rule.with_range and rule.with_range not in in_range:
            continue
        if rule.webrtc_only and not _is_webrtc(facts):
            continue
        for key in ("server_port", "client_port"):
            port = int(flow.get(key) or -1)
            if rule.matches(port):
                ev.append(Evidence(rule.app, rule.confidence, f"port:{transport}/{port} ({rule.label})"))
                break


def combine(evidence: list[Evidence]) -> Attribution:
    """Noisy-OR per app; the best app wins (ties: the strongest single piece of evidence)."""
    if not evidence:
        return Attribution()
    miss: dict[str, float] = defaultdict(lambda: 1.0)
    best: dict[str, float] = defaultdict(float)
    for e in evidence:
        miss[e.app] *= 1.0 - min(max(e.confidence, 0.0), 1.0)
        best[e.app] = max(best[e.app], e.confidence)
    app = max(miss, key=lambda a: (1.0 - miss[a], best[a], a != "webrtc"))
    score = min(1.0 - miss[app], _CAP)
    chosen = sorted((e for e in evidence if e.app == app), key=lambda e: -e.confidence)
    others = [e for e in evidence if e.app != app]
    texts = [e.text for e in chosen] + [f"also {e.app}: {e.text}" for e in others[:3]]
    channel = next((e.channel for e in chosen if e.channel), None)
    return Attribution(app, round(score, 3), texts[:8], channel)


def attribute(
    flows: pd.DataFrame,
    facts: pd.DataFrame,
    dns: pd.DataFrame | None,
    sig: Signatures,
    index: DnsIndex | None = None,
) -> list[Attribution]:
    """Attribution of every flow (same order as `flows`); `index` is DnsIndex(dns) when already built."""
    index = index if index is not None else DnsIndex(dns)
    records = frame_records(flows)
    fact_rows = _fact_rows(flows, facts)
    min_conf = sig.inherit.get("min_confidence", 0.35)
    out: list[Attribution] = []
    for flow, f in zip(records, fact_rows, strict=True):
        out.append(combine(direct_evidence(flow, f, index, sig)))
    _inherit_stun(records, fact_rows, out, sig)
    _inherit_ice(records, fact_rows, out, sig)
    _inherit_same_ip(records, fact_rows, out, sig)
    _inherit_sdp(records, fact_rows, out)
    for flow, f, att in zip(records, fact_rows, out, strict=True):
        if att.confidence < min_conf or att.app in FALLBACK_APPS:
            _fallback(flow, f, att)
    return out


def _fact_rows(flows: pd.DataFrame, facts: pd.DataFrame | None) -> list[dict]:
    if facts is None or facts.empty:
        return [{} for _ in range(len(flows))]
    f = facts.reindex(flows["flow_id"].to_numpy())
    return frame_records(f)


def _needs_help(att: Attribution, sig: Signatures) -> bool:
    return att.app in FALLBACK_APPS or att.confidence < sig.inherit.get("min_source_confidence", 0.6)


def _upgrade(att: Attribution, app: str, conf: float, text: str) -> None:
    if app == att.app:
        att.confidence = round(min(1 - (1 - att.confidence) * (1 - conf), _CAP), 3)
        att.evidence.insert(0, text)
    elif conf > att.confidence:
        if att.app not in FALLBACK_APPS and att.evidence:
            att.evidence = [f"weaker {att.app}: {t}" for t in att.evidence[:2]]
        att.app, att.confidence = app, conf
        att.evidence.insert(0, text)
        att.channel = None


def _inherit_stun(records: list[dict], fact_rows: list[dict], out: list[Attribution], sig: Signatures) -> None:
    """Princeton's Zoom P2P rule, for every app: a UDP flow that uses a local (ip, port) which the
    same host used for STUN with an app's server within the window belongs to that app."""
    window = sig.inherit.get("stun_window_s", 300.0)
    conf = sig.inherit.get("stun_confidence", 0.85)
    min_src = sig.inherit.get("min_source_confidence", 0.6)
    endpoints: dict[tuple[str, int], list[tuple[float, float, str, int]]] = defaultdict(list)
    for flow, f, att in zip(records, fact_rows, out, strict=True):
        protos = _get(f, "protocols") or []
        if flow.get("transport") != "udp" or att.app in FALLBACK_APPS or att.confidence < min_src:
            continue
        if "stun" not in protos and "turn" not in protos:
            continue
        # The local endpoint is the non-public one; with a public vantage point, the client's.
        local = [
            (k, p)
            for k, p in (("client_ip", "client_port"), ("server_ip", "server_port"))
            if not is_global(str(flow[k]))
        ] or [("client_ip", "client_port")]
        for ip_key, port_key in local:
            endpoints[(str(flow[ip_key]), int(flow[port_key]))].append(
                (float(flow["first_ts"]), float(flow["last_ts"]), att.app, int(flow["flow_id"]))
            )
    if not endpoints:
        return
    for flow, att in zip(records, out, strict=True):
        if flow.get("transport") != "udp" or not _needs_help(att, sig):
            continue
        t = float(flow["first_ts"])
        for ip_key, port_key in (("client_ip", "client_port"), ("server_ip", "server_port")):
            for first, last, app, src in endpoints.get((str(flow[ip_key]), int(flow[port_key])), []):
                if src != int(flow["flow_id"]) and first - window <= t <= last + window:
                    _upgrade(
                        att,
                        app,
                        conf,
                        f"inherit:local {flow[ip_key]}:{flow[port_key]} used for "
                        f"{app} STUN in flow {src} (P2P rule, {int(window)} s)",
                    )
                    break
            else:
                continue
            break


def _ufrags(f: dict) -> frozenset[str] | None:
    users = [u for u in (_get(f, "stun_usernames") or []) if isinstance(u, str) and u.count(":") == 1]
    if not users:
        return None
    return frozenset(part for u in users for part in u.split(":") if part)


def _inherit_ice(records: list[dict], fact_rows: list[dict], out: list[Attribution], sig: Signatures) -> None:
    """ICE checks carry USERNAME "remote-ufrag:local-ufrag" (RFC 8445 7.2.2): flows checking the
    same ufrag pair belong to the same call, so they share its app."""
    conf = sig.inherit.get("stun_confidence", 0.85) * 0.95
    min_src = sig.inherit.get("min_source_confidence", 0.6)
    by_pair: dict[frozenset[str], tuple[str, int]] = {}
    for flow, f, att in zip(records, fact_rows, out, strict=True):
        pair = _ufrags(f)
        if pair and att.app not in FALLBACK_APPS and att.confidence >= min_src:
            by_pair.setdefault(pair, (att.app, int(flow["flow_id"])))
    if not by_pair:
        return
    for flow, f, att in zip(records, fact_rows, out, strict=True):
        pair = _ufrags(f)
        hit = by_pair.get(pair) if pair else None
        if hit and hit[1] != int(flow["flow_id"]) and _needs_help(att, sig):
            _upgrade(
                att,
                hit[0],
                conf,
                f"inherit:ICE username ufrags {'/'.join(sorted(pair))} also checked in {hit[0]} flow {hit[1]}",
            )


def _inherit_same_ip(records: list[dict], fact_rows: list[dict], out: list[Attribution], sig: Signatures) -> None:
    conf = sig.inherit.get("same_ip_confidence", 0.5)
    min_src = sig.inherit.get("min_source_confidence", 0.6)
    by_ip: dict[str, tuple[str, int, float]] = {}
    for flow, att in zip(records, out, strict=True):
        if att.app in FALLBACK_APPS or att.confidence < min_src:
            continue
        ip = str(flow["server_ip"])
        if is_global(ip) and (ip not in by_ip or att.confidence > by_ip[ip][2]):
            by_ip[ip] = (att.app, int(flow["flow_id"]), att.confidence)
    for flow, f, att in zip(records, fact_rows, out, strict=True):
        if flow.get("transport") not in ("tcp", "udp") or not _needs_help(att, sig):
            continue
        name = _get(f, "sni")
        if name and not _is_ip_literal(name):
            continue  # it named another service
        if "dns" in (_get(f, "protocols") or []):
            continue
        for key in ("server_ip", "client_ip"):
            hit = by_ip.get(str(flow[key]))
            if hit and hit[1] != int(flow["flow_id"]):
                _upgrade(att, hit[0], conf, f"inherit:same address {flow[key]} as {hit[0]} flow {hit[1]}")
                break


def _inherit_sdp(records: list[dict], fact_rows: list[dict], out: list[Attribution]) -> None:
    """RTP flows announced in a SIP/SDP body belong to that SIP call."""
    media: dict[tuple[str, int], int] = {}
    for flow, f in zip(records, fact_rows, strict=True):
        for ip, port in _get(f, "sdp_media") or []:
            media[(str(ip), int(port))] = int(flow["flow_id"])
    if not media:
        return
    for flow, att in zip(records, out, strict=True):
        if att.app not in FALLBACK_APPS:
            continue
        for ip_key, port_key in (("client_ip", "client_port"), ("server_ip", "server_port")):
            src = media.get((str(flow[ip_key]), int(flow[port_key])))
            if src is not None and src != int(flow["flow_id"]):
                att.app, att.confidence = "sip", 0.85
                att.evidence.insert(0, f"inherit:{flow[ip_key]}:{flow[port_key]} announced in SDP of SIP flow {src}")
                break


def _fallback(flow: dict, f: dict, att: Attribution) -> None:
    if att.app in ("sip",) and att.confidence >= 0.35:
        return
    protos = set(_get(f, "protocols") or [])
    weak = [f"weak {att.app}: {t}" for t in att.evidence[:2]] if att.app not in FALLBACK_APPS else att.evidence[:2]
    if "sip" in protos:
        att.app, att.confidence = "sip", 0.9
        att.evidence = ["payload:SIP messages", *weak]
    elif (
        _get(f, "dtls_use_srtp")
        or _get(f, "dtls_alpn") in ("webrtc", "c-webrtc")
        or ({"stun", "dtls"} <= protos)
        or _ice(f)
    ):
        att.app, att.confidence = "webrtc", 0.6
        att.evidence = ["payload:ICE/DTLS-SRTP without an app signature", *weak]
    else:
        att.app, att.confidence = "unknown", 0.0
        att.evidence = weak
    att.channel = None


def _ice(f: dict) -> bool:
    users = _get(f, "stun_usernames") or []
    attrs = set(_get(f, "stun_attr_types") or [])
    # ICE connectivity checks: USERNAME "ufrag:ufrag" with PRIORITY (0x0024), RFC 8445 7.1.
    return any(":" in u for u in users) and 0x0024 in attrs
