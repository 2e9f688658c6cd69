"""The plugin's settings: declarations with deep validation, and the compiled routing set-up.

``[plugins.routing_geo]`` holds ``members``, ``teams``, ``queues``, ``rules``
and a few switches. Each list is validated on its own when the CRM starts
(errors name the key path); cross references (a rule naming an unknown team,
a team with no members) are checked when the whole table is compiled, which
``corecrm config check`` and every routing command do.
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping

import attrs

from corecrm.errors import ConfigError
from corecrm.records import Setting
from corecrm.settings import thaw
from corecrm_plugins.routing_geo.model import Directory, dotted, parse_directory, parse_member, parse_team
from corecrm_plugins.routing_geo.rules import Rule, Ruleset, check_targets, parse_rules, shadow_warnings

PLUGIN = "routing_geo"
PREFIX = f"plugins.{PLUGIN}"


class ShadowedRuleWarning(UserWarning):
    """A territory rule that can never match because an earlier rule takes all its leads."""


def _validate_members(value: Any, key: str) -> None:
    seen: set[str] = set()
    for i, item in enumerate(thaw(value)):
        m = parse_member(item, f"{key}[{i}]")
        if m.id in seen:
            raise ConfigError(f"member {m.id!r} is defined twice", key=f"{key}[{i}].id")
        seen.add(m.id)


def _validate_teams(value: Any, key: str, *, queue: bool = False) -> None:
    pool: dict[str, Any] = {}
    for i, item in enumerate(thaw(value)):
        parse_team(item, f"{key}[{i}]", pool, queue=queue)


def _validate_rules(value: Any, key: str) -> None:
    parse_rules(thaw(value), key)


def _validate_aliases(value: Any, key: str) -> None:
    from corecrm_plugins.routing_geo import geo

    for alias, code in value.items():
        if not isinstance(code, str) or geo.country_code(code) is None:
            raise ConfigError(f"alias {alias!r} maps to unknown country {code!r}", key=f"{key}.{alias}")


def settings() -> list[Setting]:
    return [
        Setting("members", "list", [], "Sales reps: id, name, email, weight, max_open, max_new_per_day, timezone, hours, languages, active, away.", validate=_validate_members),
        Setting("teams", "list", [], "Teams: name, members (ids), strategy, mode (push|pull), sla_minutes, on_breach, escalate_to, match_language, sticky.", validate=_validate_teams),
        Setting("queues", "list", [], "Pull queues that anyone listed (or any member) may claim from.", validate=lambda v, k: _validate_teams(v, k, queue=True)),
        Setting("rules", "list", [], "Ordered territory rules; the first match wins.", validate=_validate_rules),
        Setting("default_queue", "str", "unrouted", "Queue for leads no rule matches."),
        Setting("respect_working_hours", "bool", True, "Skip members outside their working hours (their own time zone)."),
        Setting("sticky_scope", "str", "team", "Sticky owners must be in the matched team ('team') or may be anyone ('any').", choices=("team", "any")),
        Setting("claim_order", "str", "oldest", "Which queued lead a claim takes first: the longest waiting, or the highest score.", choices=("oldest", "score")),
        Setting("country_aliases", "dict", {}, "Extra country names, e.g. { Blighty = \"GB\" }.", validate=_validate_aliases),
        Setting("sweep_interval", "int", 60, "Seconds between passes of `corecrm routing sweep --watch`."),
    ]


@attrs.define(slots=True)
class Routing:
    """Rules + directory, compiled and cross-checked."""

    ruleset: Ruleset
    directory: Directory
    settings: Mapping[str, Any]
    raw_members: dict[str, dict[str, Any]]
    raw_teams: dict[str, dict[str, Any]]
    warnings: list[tuple[str, str]] = attrs.field(factory=list)

    @property
    def rules(self) -> list[Rule]:
        return self.ruleset.rules

    def sla_for(self, rule_name: str | None, team: str | None) -> float | None:
        for r in self.ruleset.rules:
            if r.name == rule_name and r.sla_minutes is not None:
                return r.sla_minutes
        t = self.directory.teams.get(team) if team else None
        return t.sla_minutes if t is not None else None


def compile_settings(settings: Mapping[str, Any], overlay: list[tuple[str, str, dict[str, Any]]] | None = None, *, prefix: str = PREFIX) -> Routing:
    """Build the routing set-up from (validated) settings, plus the database overlay when given."""
    s = thaw(dict(settings))
    aliases = tuple(sorted((str(k).strip().lower(), v) for k, v in (s.get("country_aliases") or {}).items()))
    directory = parse_directory(s, prefix)
    raw_members = {m["id"]: m for m in s.get("members") or [] if isinstance(m, dict) and "id" in m}
    raw_teams = {t["name"]: t for t in (s.get("teams") or []) + (s.get("queues") or []) if isinstance(t, dict) and "name" in t}
    if overlay:
        from corecrm_plugins.routing_geo.store import apply_overlay

        directory = apply_overlay(directory, overlay, raw_members, raw_teams)
    rules = parse_rules(s.get("rules") or [], f"{dotted(prefix)}rules", aliases)
    default_queue = s.get("default_queue") or "unrouted"
    check_targets(rules, directory, default_queue, f"{dotted(prefix)}rules")
    if default_queue in directory.teams and not directory.teams[default_queue].is_queue and directory.teams[default_queue].mode == "push":
        pass  # a push team as the default is allowed: unmatched leads are assigned by its strategy
    ruleset = Ruleset(rules, default_queue, aliases)
    return Routing(ruleset=ruleset, directory=directory, settings=s, raw_members=raw_members, raw_teams=raw_teams,
                   warnings=shadow_warnings(rules, f"{dotted(prefix)}rules"))


def check(settings: Mapping[str, Any], overlay: list[tuple[str, str, dict[str, Any]]] | None = None, *, where: str = "", prefix: str = PREFIX) -> Routing:
    """Compile and emit shadowing warnings (``corecrm config check`` shows them); errors raise ConfigError."""
    try:
        routing = compile_settings(settings, overlay, prefix=prefix)
    except ConfigError as exc:
        if where and not exc.path:
            full = str(exc)
            message = full[len(exc.key) + 2:] if exc.key and full.startswith(f"{exc.key}: ") else full
            raise ConfigError(message, path=where, key=exc.key) from None
        raise
    for key, message in routing.warnings:
        warnings.warn(f"{where + ': ' if where else ''}{key}: {message}", ShadowedRuleWarning, stacklevel=2)
    return routing
