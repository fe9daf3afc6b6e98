"""WhatsApp's Noise prologue (analyzer/dissect/whatsapp.py)."""

from __future__ import annotations

from analyzer.dissect import whatsapp
from tests.test_dissect_flows import _dissect, _flow


def test_prologues() -> None:
    assert whatsapp.prologue(b"ED\x00\x01" + b"\x00" * 10) == "ED 0.1"
    assert whatsapp.prologue(b"WA\x01\x05\x00\x00\x00\x00") == "WA 1.5"
    assert whatsapp.prologue(b"WA\x01\x05") is None  # too short to be a handshake
    assert whatsapp.prologue(b"WAIT for it") is None  # text, not version digits
    assert whatsapp.prologue(b"") is None


def test_whatsapp_flow_is_labelled() -> None:
    flows, d = _dissect("whatsapp_voice_and_message.pcap")
    f = d.facts.loc[_flow(flows, "173.192.222.189", 5222)]
    assert "whatsapp" in f["protocols"] and f["whatsapp_prologue"].startswith("WA ")
