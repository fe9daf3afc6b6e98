"""Geofence policy: which countries may carry which role, and the violations of a flow table.

A policy comes from `--allow CC,CC`, `--region NAME` or `--policy FILE.toml`:

    [default]                 # applies to every role not listed below
    allow = ["region:north-america"]
    [roles.key_exchange]
    allow = ["US", "CA"]
    [roles.dns]
    allow = "any"

Severity follows what the role exposes: key exchange critical, media high, signaling medium,
anything else low. A public address that no database places (ZZ) is a violation of low
confidence: it may well be inside the allowed region.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from analyzer.classify.roles import ROLES
from analyzer.common.files import POLICY_MAX_BYTES, FileTooLarge, read_bounded
from analyzer.errors import OptionError

SEVERITY = {"key_exchange": "critical", "media": "high", "signaling": "medium"}
UNKNOWN_COUNTRY = "ZZ"


@cache
def regions() -> dict[str, frozenset[str]]:
    text = resources.files("analyzer.data").joinpath("regions.toml").read_text(encoding="utf-8")
    return {k: frozenset(v) for k, v in tomllib.loads(text)["regions"].items()}


# Common names for countries that are not their ISO alpha-2 code (UK is the ISO-reserved code
# for GB; EL is the EU's code for Greece).
_ALIASES = {"UK": "GB", "EL": "GR"}


@cache
def _country_codes() -> tuple[frozenset[str], dict[str, str]]:
    """ISO 3166-1 alpha-2 codes and alpha-3 -> alpha-2, from the shipped iso3166.csv."""
    import csv

    from analyzer.geo.datafiles import DATA_DIR

    alpha2: set[str] = set()
    alpha3: dict[str, str] = {}
    with (DATA_DIR / "iso3166.csv").open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row.get("alpha2"):
                alpha2.add(row["alpha2"])
                if row.get("alpha3"):
                    alpha3[row["alpha3"]] = row["alpha2"]
    return frozenset(alpha2), alpha3


def country_code(item: str) -> str | None:
    """The ISO alpha-2 code for a 2-letter code, an alpha-3 code or an alias; None if unknown."""
    code = item.strip().upper()
    alpha2, alpha3 = _country_codes()
    code = _ALIASES.get(code, alpha3.get(code, code))
    return code if code in alpha2 else None


def expand(entries: list[str] | str, where: str, option: str | None = None) -> frozenset[str] | None:
    """Country codes and region names -> a set; "any" -> None (no restriction).

    `where` names the source in messages (a file and its key); with `option` (an API
    parameter) the OptionError names that parameter instead.
    """

    def fail(detail: str) -> OptionError:
        return OptionError(detail, option, shown) if option else OptionError(f"{where}: {detail}")

    shown = ",".join(map(str, entries)) if isinstance(entries, list | tuple) else entries
    if isinstance(entries, str):
        if entries.strip().lower() == "any":
            return None
        entries = [e for e in entries.split(",") if e.strip()]
    if not isinstance(entries, list | tuple):
        raise fail(f'expected a list of country codes or region names, or "any"; got {entries!r}')
    out: set[str] = set()
    for raw in entries:
        if not isinstance(raw, str):
            raise fail(f"{raw!r} is not a country code or region name (expected a string)")
        item = raw.strip()
        name = item.removeprefix("region:").lower()
        if item.lower().startswith("region:") or name in regions():
            if name not in regions():
                raise fail(f"unknown region {name!r}; known: {', '.join(sorted(regions()))}")
            out |= regions()[name]
        elif re.fullmatch(r"[A-Za-z]{2,3}", item):
            code = country_code(item)
            if code is None:
                raise fail(f"{item!r} is not an ISO 3166 country code")
            out.add(code)
        else:
            raise fail(f"{item!r} is neither a country code nor a region name")
    if not out:
        raise fail("the allowed list is empty")
    return frozenset(out)


@dataclass(frozen=True)
class Policy:
    """Allowed countries per role; a role missing from `by_role` uses `default` (None = any)."""

    default: frozenset[str] | None
    by_role: dict[str, frozenset[str] | None] = field(default_factory=dict)
    source: str = ""

    def allowed(self, role: str) -> frozenset[str] | None:
        return self.by_role.get(role, self.default)

    def describe(self) -> dict[str, Any]:
        def show(s: frozenset[str] | None) -> list[str] | None:
            return None if s is None else sorted(s)

        return {
            "source": self.source,
            "allowed_countries": show(self.default),
            "allowed_by_role": {r: show(self.allowed(r)) for r in ROLES},
        }


def build_policy(
    allow: str | list[str] | None = None, region: str | None = None, policy_file: str | Path | None = None
) -> Policy | None:
    """The policy from the options (at most one may be given), or None for no policy."""
    given = [x is not None for x in (allow, region, policy_file)]
    if sum(given) > 1:
        raise OptionError("give only one of allow, region, policy")
    if allow is not None:
        return Policy(
            expand(allow, "allow", option="allow"),
            source=f"--allow {allow if isinstance(allow, str) else ','.join(map(str, allow))}",
        )
    if region is not None:
        name = region.strip().lower()
        if name not in regions():
            raise OptionError(f"unknown region; known: {', '.join(sorted(regions()))}", "region", region)
        return Policy(regions()[name], source=f"--region {name}")
    if policy_file is not None:
        return load_policy_file(policy_file)
    return None


def load_policy_file(path: str | Path) -> Policy:
    try:
        data = tomllib.loads(read_bounded(path, POLICY_MAX_BYTES, "--policy").decode("utf-8"))
    except FileNotFoundError:
        raise OptionError("no such file", "policy", str(path)) from None
    except FileTooLarge as exc:
        raise OptionError(str(exc)) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise OptionError(f"cannot read ({exc})", "policy", str(path)) from None
    default_section = data.get("default", {})
    if not isinstance(default_section, dict):
        raise OptionError(f"{path} [default]: expected a table with an 'allow' key")
    default_allow = default_section.get("allow", "any")
    default = expand(default_allow, f"{path} [default]")
    by_role: dict[str, frozenset[str] | None] = {}
    roles = data.get("roles") or {}
    if not isinstance(roles, dict):
        raise OptionError(f"{path} [roles]: expected tables such as [roles.media]")
    for role, spec in roles.items():
        if role not in ROLES:
            raise OptionError(f"{path}: unknown role {role!r}; roles are {', '.join(ROLES)}")
        if not isinstance(spec, dict) or "allow" not in spec:
            raise OptionError(f"{path} [roles.{role}]: needs an 'allow' list")
        by_role[role] = expand(spec["allow"], f"{path} [roles.{role}]")
    return Policy(default, by_role, source=f"--policy {Path(path).name}")


def violations(flows: pd.DataFrame, policy: Policy | None) -> list[dict[str, Any]]:
    """One violation per (flow, role) whose remote country the policy does not allow."""
    if policy is None or flows.empty:
        return []
    out: list[dict[str, Any]] = []
    conf = flows["server_country_confidence"] if "server_country_confidence" in flows else [None] * len(flows)
    implausible = flows["geo_implausible"] if "geo_implausible" in flows else [False] * len(flows)
    has_split = "bytes_by_role" in flows
    cols = ["flow_id", "roles", "remote_country", "remote_scope", "remote_ip", "app"]
    rows = flows[[*cols, "bytes_by_role"] if has_split else cols].itertuples(index=False)
    for row, loc_conf, ruled_out in zip(rows, conf, implausible, strict=True):
        if row.remote_scope != "public" or not row.remote_country:
            continue
        for role in row.roles:
            allowed = policy.allowed(role)
            if allowed is None or row.remote_country in allowed:
                continue
            unknown = row.remote_country == UNKNOWN_COUNTRY
            contested = loc_conf == "contested" or bool(ruled_out)
            out.append(
                {
                    "flow_id": int(row.flow_id),
                    "role": role,
                    "country": row.remote_country,
                    "remote_ip": row.remote_ip,
                    "app": row.app,
                    "severity": "low" if unknown else SEVERITY.get(role, "low"),
                    # "high"/"low" as before; "needs-verification" when the location it rests
                    # on is contested or ruled out by RTT (the endpoint's evidence says why).
                    "confidence": "low" if unknown else ("needs-verification" if contested else "high"),
                    "location_confidence": loc_conf or ("unknown" if unknown else None),
                    # The flow's bytes in this role (probes and padding are `other`, not media).
                    "bytes": int((row.bytes_by_role or {}).get(role, 0))
                    if has_split and isinstance(row.bytes_by_role, dict) else None,
                }
            )
    return out
