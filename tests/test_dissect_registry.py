"""The dissector registry (analyzer/dissect/registry.py): every kind table is derived from the
protocol modules' declarations, the compiled twin is checked against it, and the constants that
used to be written in several places live in one module each."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from analyzer.classify import roles
from analyzer.dissect import kinds as K
from analyzer.dissect import registry
from analyzer.dissect.spec import Dissector, Kind, Rule
from analyzer.scan import chunks

ANALYZER = Path(__file__).resolve().parents[1] / "analyzer"


def test_kind_codes_are_the_declared_ones() -> None:
    declared = {k.name: k.code for d in registry.DISSECTORS for k in d.kinds}
    declared.update({k.name: k.code for k in registry.BASE_KINDS})
    assert {name: K.KIND_CODES[name] for name in declared} == declared
    assert list(K.KIND_NAMES) == sorted(declared, key=declared.get)


def test_tables_elsewhere_are_the_registry_tables() -> None:
    assert roles.KIND_ROLE is registry.KIND_ROLE
    assert tuple(sorted(K.KIND_CODES[k] for k in registry.CONTROL_KINDS)) == chunks.CONTROL_CODES
    # Every role a kind declares is a role of the report; every labelled kind's label names a
    # protocol the flow-naming order knows.
    assert set(registry.KIND_ROLE.values()) <= set(roles.ROLES)
    assert set(registry.KIND_LABEL.values()) <= set(registry.PROTOCOL_ORDER)
    assert registry.FACT_COLUMNS[:2] == ("protocol", "protocols") and registry.FACT_COLUMNS[-1] == "errors"
    # Every fact has a column type the batch dataset knows, and the dataset declares every fact.
    from analyzer.batch import schema

    assert set(registry.FACT_TYPES.values()) <= set(schema.TYPE_NAMES)
    assert set(registry.FACT_COLUMNS) <= set(dict(schema.FLOW_FACTS))


def test_ladders_are_sorted_and_hooks_ordered() -> None:
    for transport, rules in registry.LADDERS.items():
        assert [r.priority for r in rules] == sorted(r.priority for r in rules), transport
    for hooks in (registry.UDP_FLOW, registry.UDP_PACKET, registry.UDP_FINISH, registry.TCP_FLOW):
        assert [h.order for h in hooks] == sorted(h.order for h in hooks)


@pytest.mark.skipif(K._compiled is None, reason="compiled kinds not built")
def test_compiled_enum_and_ladders_match_the_registry() -> None:
    names, rules = registry.compiled_declarations(K._compiled)
    assert registry.compiled_mismatch(names, rules) is None
    # The C enum covers every kind the registry has today, and both C ladders are complete.
    assert names == registry.KIND_NAMES
    for transport in registry.TRANSPORTS:
        assert rules[transport] == tuple(r.name for r in registry.LADDERS[transport])


def test_a_stale_compiled_build_is_detected() -> None:
    rules = {t: tuple(r.name for r in registry.LADDERS[t]) for t in registry.TRANSPORTS}
    names = registry.KIND_NAMES
    swapped = (names[1], names[0], *names[2:])
    assert "do not match" in registry.compiled_mismatch(swapped, rules)
    udp = rules["udp"]
    reordered = {**rules, "udp": (udp[1], udp[0], *udp[2:])}
    assert "not the first" in registry.compiled_mismatch(names, reordered)
    # Missing kinds or rules at the end are fine: those rules run in numpy after the C loop.
    fewer = {**rules, "udp": udp[:-1]}
    assert registry.compiled_mismatch(names[:-1], fewer) is None
    assert registry.numpy_only_rules(fewer["udp"], "udp") == registry.LADDERS["udp"][-1:]


def _rule(name: str, priority: int, kind: str) -> Rule:
    return Rule(name, "udp", priority, (kind,), lambda b, s, d: np.zeros(b.off.shape, bool))


def test_contradicting_declarations_are_refused() -> None:
    a = Dissector("a", kinds=(Kind("a1", 3),), rules=(_rule("ra", 10, "a1"),), facts=(("x", "str"),))
    same_code = Dissector("b", kinds=(Kind("b1", 3),))
    with pytest.raises(registry.RegistryError):
        registry._kinds((a, same_code))
    gap = Dissector("b", kinds=(Kind("b1", 5),))
    with pytest.raises(registry.RegistryError):
        registry._kinds((a, gap))
    same_priority = Dissector("b", kinds=(Kind("b1", 4),), rules=(_rule("rb", 10, "b1"),))
    with pytest.raises(registry.RegistryError):
        registry._ladders((a, same_priority), {"a1", "b1"})
    unknown_kind = Dissector("b", rules=(_rule("rb", 20, "nope"),))
    with pytest.raises(registry.RegistryError):
        registry._ladders((a, unknown_kind), {"a1"})
    with pytest.raises(registry.RegistryError):
        registry._facts((a, Dissector("b", facts=(("x", "str"),))))
    ok = Dissector("b", kinds=(Kind("b1", 4),), rules=(_rule("rb", 20, "b1"),), facts=(("y", "str"),))
    assert [k.name for k in registry._kinds((ok, a))] == ["none", "other", "tcp", "a1", "b1"]
    assert [r.name for r in registry._ladders((ok, a), {"a1", "b1"})["udp"]] == ["ra", "rb"]


# Constants that used to be written in several modules, and the one module that owns each now.
# (_kinds.c, the compiled twin, states its own copy; the twin tests prove it equal.)
_OWNED = {
    r"(?i)2112a442|\\x21\\x12\\xa4\\x42": "dissect/stun.py",  # STUN magic cookie
    r"range\(8801|8810": "dissect/zoom.py",  # Zoom's multimedia-router ports
    r"\"INVITE\"|b\"INVITE": "dissect/sip.py",  # SIP request methods
    r"5060": "dissect/sip.py",
    r"\b5353\b": "dissect/dns.py",
    r"(?i)5a525450": "dissect/zrtp.py",  # ZRTP cookie
    r"(?i)6b3343cf": "dissect/quic.py",  # QUIC v2
    r"\b1900\b": "dissect/ssdp.py",  # SSDP
}


@pytest.mark.parametrize("pattern", sorted(_OWNED))
def test_shared_constants_live_in_one_module(pattern: str) -> None:
    where = sorted(
        str(p.relative_to(ANALYZER)) for p in ANALYZER.rglob("*.py") if re.search(pattern, p.read_text("utf-8"))
    )
    assert where == [_OWNED[pattern]]
