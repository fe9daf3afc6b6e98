"""The signature data file and its loader."""

from __future__ import annotations

import tomllib
from importlib import resources

import pytest

from analyzer.classify.apps import Evidence, combine
from analyzer.classify.signatures import CONTRACT_APPS, SignatureError, load_signatures, parse_signatures


def _raw() -> dict:
    return tomllib.loads(resources.files("analyzer").joinpath("data/signatures.toml").read_text("utf-8"))


def test_data_file_loads_and_covers_the_apps():
    sig = load_signatures()
    apps = {r.app for r in sig.hosts}
    assert {"zoom", "teams", "skype", "webex", "meet", "jitsi", "whatsapp", "signal", "telegram", "discord",
            "facetime"} <= apps
    assert all(r.app in CONTRACT_APPS for r in sig.hosts + sig.ports + sig.stun + sig.payload)


def test_every_range_is_dated_and_sourced():
    for entry in _raw()["ip_range"]:
        assert entry.get("date") and entry.get("source"), entry.get("label")
        assert 0 < entry["confidence"] < 1


@pytest.mark.parametrize(
    ("name", "where", "app", "channel"),
    [
        ("zoomam104zc.zoom.us", "sni", "zoom", "key_delivery"),
        ("zoomsjccv154mmr.sjc.zoom.us", "sni", "zoom", "key_delivery"),
        ("www3.zoom.us", "sni", "zoom", None),
        ("api.flightproxy.teams.microsoft.com", "sni", "teams", "key_delivery"),
        ("gateway.discord.gg", "sni", "discord", None),
        ("eu1.discord.media", "dns", "discord", "key_delivery"),
        ("radcom.webex.com", "sni", "webex", None),
        ("meet.google.com", "sni", "meet", None),
        ("*.cloud.zoom.us", "cert", "zoom", None),
        ("hangouts", "cert", "meet", None),
    ],
)
def test_host_patterns(name, where, app, channel):
    hits = load_signatures().host_matches(name, where)
    assert hits and hits[0].app == app
    assert hits[0].channel == channel


def test_host_patterns_do_not_overmatch():
    sig = load_signatures()
    for name in ("notzoom.us.example.com", "zoom.usa.example", "myteams.microsoft.com.evil.example",
                 "hangouts", "discord.media.example.org"):
        where = "sni"
        assert not sig.host_matches(name, where), name


def test_range_lookup_prefers_longest_prefix_and_mapped_v4():
    sig = load_signatures()
    assert sig.range_hits("213.19.144.104")[0].app == "zoom"
    assert sig.range_hits("::ffff:52.114.77.136")[0].app == "teams"
    assert sig.range_hits("2407:30c0::1")[0].app == "zoom"
    assert sig.range_hits("192.0.2.1") == []
    assert sig.range_hits("not an ip") == []
    custom = parse_signatures({"ip_range": [
        {"app": "zoom", "confidence": 0.5, "cidrs": ["10.0.0.0/8"]},
        {"app": "teams", "confidence": 0.5, "cidrs": ["10.1.0.0/16"]},
    ]})
    assert [h.app for h in custom.range_hits("10.1.2.3")] == ["teams", "zoom"]


def test_bad_entries_fail_loudly():
    with pytest.raises(SignatureError):
        parse_signatures({"host": [{"app": "zoom", "pattern": "(", "confidence": 0.5}]})
    with pytest.raises(SignatureError):
        parse_signatures({"host": [{"app": "myapp", "pattern": "x", "confidence": 0.5}]})
    with pytest.raises(SignatureError):
        parse_signatures({"ip_range": [{"app": "zoom", "confidence": 0.5, "cidrs": ["300.1.1.0/24"]}]})
    with pytest.raises(SignatureError):
        parse_signatures({"stun": [{"app": "zoom", "confidence": 1.5}]})


def test_combine_noisy_or_and_ties():
    att = combine([Evidence("zoom", 0.7, "a"), Evidence("zoom", 0.5, "b"), Evidence("teams", 0.8, "c")])
    assert att.app == "zoom" and att.confidence == pytest.approx(0.85)
    assert att.evidence[:2] == ["a", "b"] and "also teams: c" in att.evidence
    assert combine([]).app == "unknown"
