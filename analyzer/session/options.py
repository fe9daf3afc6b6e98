"""The session's options: one definition, checked once before any capture is read."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analyzer.errors import OptionError
from analyzer.session.policy import Policy, build_policy

SESSION_OPTIONS = ("geoip", "allow", "region", "policy", "vantage", "anonymize", "anonymize_servers")


@dataclass(frozen=True)
class SessionOptions:
    """Validated analysis options (validated before any capture is read)."""

    policy: Policy | None
    vantage: Any
    geoip: tuple[str, ...]
    anonymize: str | bytes | None
    anonymize_servers: bool
    recorded: dict[str, Any]  # what the report's `options` shows (never the anonymisation key)

    def as_options(self, given: dict[str, Any]) -> dict[str, Any]:
        """The options normalised (geoip as a list, key resolved), to ship to other processes."""
        return {
            **given,
            "geoip": list(self.geoip),
            "anonymize": self.anonymize,
            "anonymize_servers": self.anonymize_servers,
        }


def prepare_options(
    geoip: Iterable[str] | str | None = (),
    allow: str | list[str] | None = None,
    region: str | None = None,
    policy: str | Path | None = None,
    vantage: str | None = None,
    anonymize: str | bytes | None = None,
    anonymize_servers: bool = False,
) -> SessionOptions:
    """Check every option up front; raise OptionError with a one-line reason."""
    from analyzer.geo.vantage import parse_vantage

    pol = build_policy(allow, region, policy)
    stated = parse_vantage(vantage) if vantage else None
    if isinstance(anonymize, str) and anonymize:
        from analyzer.session.anonymize import resolve_key

        try:  # `env:NAME` and `file:PATH` keep the key out of process listings and shell history
            anonymize = resolve_key(anonymize)
        except ValueError as exc:
            raise OptionError(str(exc), "anonymize") from None
    paths = [os.fspath(geoip)] if isinstance(geoip, str | os.PathLike) else [os.fspath(g) for g in geoip or ()]
    for p in paths:
        if not Path(p).is_file():
            raise OptionError("no such file", "geoip", p)
    recorded = {
        "geoip": [os.path.basename(p) for p in paths],
        "allow": allow,
        "region": region,
        "policy": os.path.basename(str(policy)) if policy else None,
        "vantage": vantage,
        "anonymized": bool(anonymize),
    }
    return SessionOptions(pol, stated, tuple(paths), anonymize, bool(anonymize_servers), recorded)


def check_options(options: dict[str, Any]) -> SessionOptions:
    """The one check of the session's options (API, multi-file and batch alike): unknown names are
    refused, then every value is validated; raises OptionError with a one-line reason."""
    unknown = sorted(set(options) - set(SESSION_OPTIONS))
    if unknown:
        raise OptionError(f"unknown option(s): {', '.join(unknown)}; expected {', '.join(SESSION_OPTIONS)}")
    return prepare_options(**options)
