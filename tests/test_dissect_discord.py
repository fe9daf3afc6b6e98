"""Discord voice IP discovery and keep-alive (analyzer/dissect/discord.py)."""

from __future__ import annotations

import ipaddress

from analyzer.dissect import discord
from analyzer.dissect.flowfacts import dissect_one
from analyzer.dissect.spec import FlowContext, FlowMeta


def _discovery(kind: int, address: bytes, port: int) -> bytes:
    return bytes([0, kind, 0, 70]) + (1234).to_bytes(4, "big") + address.ljust(64, b"\0") + port.to_bytes(2, "big")


def _ctx(*payloads: bytes) -> FlowContext:
    meta = FlowMeta("udp", 40000, 50004, "10.0.0.2", "66.22.196.173")
    n = len(payloads)
    return FlowContext(meta, list(range(1, n + 1)), [i % 2 for i in range(n)], [-1] * n, list(payloads))


def test_discovery_address_parses_and_refuses_garbage() -> None:
    assert discord.discovery_address(_discovery(2, b"84.59.132.100", 57955)) == "84.59.132.100:57955"
    assert discord.discovery_address(_discovery(2, b"2001:db8::7", 1)) == f"{ipaddress.ip_address('2001:db8::7')}:1"
    assert discord.discovery_address(_discovery(2, b"not an address", 1)) is None
    assert discord.discovery_address(_discovery(2, b"\xff\xfe", 1)) is None


def test_flow_fact_is_the_first_public_address_else_true() -> None:
    ctx = _ctx(_discovery(1, b"", 0), _discovery(2, b"84.59.132.100", 57955), _discovery(2, b"1.2.3.4", 9))
    dissect_one(ctx)
    assert ctx.facts["discord_ip_discovery"] == "84.59.132.100:57955"
    assert ctx.facts["protocols"] == ["discord"]
    only_requests = _ctx(_discovery(1, b"", 0))
    dissect_one(only_requests)
    assert only_requests.facts["discord_ip_discovery"] is True


def test_keepalive_and_its_near_misses() -> None:
    ctx = _ctx(discord.KEEPALIVE + b"\0\0\0\1")
    dissect_one(ctx)
    assert ctx.facts.get("discord_keepalive") is True
    longer = _ctx(discord.KEEPALIVE + b"\0" * 8)
    dissect_one(longer)
    assert "discord_keepalive" not in longer.facts
