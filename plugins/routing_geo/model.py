"""Teams, members and queues: parsed and validated from settings (and the database overlay).

Every error names the exact key path (``plugins.routing_geo.teams[2].members[0].hours[1]``)
so an admin can find the line. Members are defined once (``[[members]]``)
and referred to by id from any number of teams; capacity is per member, not
per team, so a rep in two teams is not double-booked.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Mapping, Sequence

import attrs

from corecrm.errors import ConfigError
from corecrm.settings import thaw

STRATEGIES = ("round_robin", "weighted", "least_loaded", "sticky")
MODES = ("push", "pull")
ON_BREACH = ("reassign", "escalate", "record")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ID_RE = re.compile(r"^[A-Za-z0-9_.@+-]+$")
_HOURS_RE = re.compile(r"^\s*([a-z]{3})(?:\s*-\s*([a-z]{3}))?\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def dotted(prefix: str) -> str:
    """``"plugins.routing_geo"`` → ``"plugins.routing_geo."``; an empty prefix stays empty (a bare rules file)."""
    return f"{prefix}." if prefix else ""


def err(key: str, message: str) -> ConfigError:
    return ConfigError(message, key=key)


@attrs.define(slots=True, frozen=True)
class Window:
    """Working hours on one weekday, local time, ``start <= t < end`` (minutes since midnight)."""

    day: int
    start: int
    end: int


@attrs.define(slots=True, frozen=True)
class Away:
    start: dt.datetime
    end: dt.datetime  #: exclusive
    note: str = ""


@attrs.define(slots=True)
class Member:
    id: str
    name: str | None = None
    email: str | None = None
    weight: float = 1.0
    max_open: int | None = None
    max_new_per_day: int | None = None
    timezone: str = "UTC"
    hours: tuple[Window, ...] = ()  #: empty: no working-hours limit
    hours_text: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    active: bool = True
    away: tuple[Away, ...] = ()

    def tz(self) -> Any:
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.timezone)


@attrs.define(slots=True)
class Team:
    """A group of members that leads are routed to; ``mode = "pull"`` makes it a claim queue."""

    name: str
    members: tuple[str, ...] = ()
    strategy: str = "round_robin"
    mode: str = "push"
    sla_minutes: float | None = None
    on_breach: str = "reassign"
    escalate_to: str | None = None
    match_language: bool = False
    sticky: bool = False
    is_queue: bool = False  #: declared under ``queues``: never pushes, anyone listed may claim


# --------------------------------------------------------------------------- parsing helpers


def _str(value: Any, key: str, *, allow_none: bool = False) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value.strip():
        raise err(key, f"expected a non-empty string, got {value!r}")
    return value.strip()


def _num(value: Any, key: str, *, minimum: float | None = None, integer: bool = False) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise err(key, f"expected a number, got {value!r}")
    if integer and not isinstance(value, int):
        raise err(key, f"expected a whole number, got {value!r}")
    if minimum is not None and value < minimum:
        raise err(key, f"expected a number >= {minimum:g}, got {value!r}")
    return value


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise err(key, f"expected true or false, got {value!r}")
    return value


def _str_list(value: Any, key: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise err(key, f"expected a list of strings, got {value!r}")
    out = []
    for i, v in enumerate(value):
        out.append(_str(v, f"{key}[{i}]"))
    return out  # type: ignore[return-value]


def _keys(table: Mapping[str, Any], allowed: Sequence[str], key: str) -> None:
    for k in table:
        if k not in allowed:
            raise err(f"{key}.{k}", f"unknown key (valid: {', '.join(sorted(allowed))})")


def parse_hours(value: Any, key: str) -> tuple[tuple[Window, ...], tuple[str, ...]]:
    """``["mon-fri 09:00-17:30", "sat 10:00-14:00"]`` → windows per weekday."""
    texts = _str_list(value, key)
    windows: list[Window] = []
    for i, text in enumerate(texts):
        m = _HOURS_RE.match(text.lower())
        if not m:
            raise err(f"{key}[{i}]", f"expected 'mon-fri 09:00-17:30', got {text!r}")
        d0, d1, h0, m0, h1, m1 = m.groups()
        if d0 not in _DAYS or (d1 and d1 not in _DAYS):
            raise err(f"{key}[{i}]", f"unknown weekday in {text!r} (valid: {', '.join(_DAYS)})")
        start, end = int(h0) * 60 + int(m0), int(h1) * 60 + int(m1)
        if int(m0) > 59 or int(m1) > 59 or start > 24 * 60 or end > 24 * 60 or start >= end:
            raise err(f"{key}[{i}]", f"invalid time range in {text!r} (start must be before end, within 00:00-24:00)")
        a = _DAYS.index(d0)
        b = _DAYS.index(d1) if d1 else a
        days = range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)]
        windows.extend(Window(d, start, end) for d in days)
    return tuple(windows), tuple(texts)


def _when(value: Any, key: str, *, end: bool) -> dt.datetime:
    """A date (whole day, inclusive) or a datetime; naive datetimes are UTC."""
    if isinstance(value, dt.datetime):
        out = value
    elif isinstance(value, dt.date):
        day = value + dt.timedelta(days=1) if end else value
        out = dt.datetime(day.year, day.month, day.day)
    elif isinstance(value, str):
        try:
            if len(value.strip()) == 10:
                return _when(dt.date.fromisoformat(value.strip()), key, end=end)
            out = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise err(key, f"expected a date or datetime (ISO 8601), got {value!r}") from None
    else:
        raise err(key, f"expected a date or datetime, got {value!r}")
    if out.tzinfo is None:
        out = out.replace(tzinfo=dt.timezone.utc)
    return out


def parse_away(value: Any, key: str) -> tuple[Away, ...]:
    if not isinstance(value, list):
        raise err(key, f"expected a list of {{from = ..., to = ...}} tables, got {value!r}")
    out = []
    for i, item in enumerate(value):
        k = f"{key}[{i}]"
        if not isinstance(item, dict):
            raise err(k, "expected a table with 'from' and 'to'")
        _keys(item, ("from", "to", "note"), k)
        if "from" not in item or "to" not in item:
            raise err(k, "needs both 'from' and 'to'")
        start = _when(item["from"], f"{k}.from", end=False)
        stop = _when(item["to"], f"{k}.to", end=True)
        if stop <= start:
            raise err(f"{k}.to", "ends before it starts")
        out.append(Away(start, stop, str(item.get("note", ""))))
    return tuple(out)


MEMBER_KEYS = (
    "id", "name", "email", "weight", "max_open", "max_new_per_day", "timezone",
    "hours", "languages", "active", "away",
)


def parse_member(item: Any, key: str) -> Member:
    if not isinstance(item, dict):
        raise err(key, f"expected a table describing a member, got {item!r}")
    _keys(item, MEMBER_KEYS, key)
    mid = _str(item.get("id"), f"{key}.id")
    assert mid is not None
    if not _ID_RE.match(mid):
        raise err(f"{key}.id", f"invalid member id {mid!r} (letters, digits and . _ @ + -)")
    m = Member(id=mid)
    if "name" in item:
        m.name = _str(item["name"], f"{key}.name")
    if "email" in item:
        m.email = _str(item["email"], f"{key}.email")
    if "weight" in item:
        w = _num(item["weight"], f"{key}.weight", minimum=0)
        if w <= 0:
            raise err(f"{key}.weight", "expected a weight > 0 (set active = false to stop assigning)")
        m.weight = float(w)
    for cap in ("max_open", "max_new_per_day"):
        if item.get(cap) is not None:
            setattr(m, cap, int(_num(item[cap], f"{key}.{cap}", minimum=0, integer=True)))
    if "timezone" in item:
        tz = _str(item["timezone"], f"{key}.timezone")
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(tz)  # type: ignore[arg-type]
        except (ZoneInfoNotFoundError, ValueError):
            raise err(f"{key}.timezone", f"unknown time zone {tz!r} (use an IANA name such as 'Europe/London')") from None
        m.timezone = tz  # type: ignore[assignment]
    if "hours" in item:
        m.hours, m.hours_text = parse_hours(item["hours"], f"{key}.hours")
    if "languages" in item:
        m.languages = tuple(x.lower() for x in _str_list(item["languages"], f"{key}.languages"))
    if "active" in item:
        m.active = _bool(item["active"], f"{key}.active")
    if "away" in item:
        m.away = parse_away(item["away"], f"{key}.away")
    return m


TEAM_KEYS = (
    "name", "members", "strategy", "mode", "sla_minutes", "on_breach", "escalate_to", "match_language", "sticky",
)


def parse_team(item: Any, key: str, members: dict[str, Member], *, queue: bool = False) -> Team:
    if not isinstance(item, dict):
        raise err(key, f"expected a table describing a {'queue' if queue else 'team'}, got {item!r}")
    _keys(item, TEAM_KEYS, key)
    name = _str(item.get("name"), f"{key}.name")
    assert name is not None
    if not _ID_RE.match(name):
        raise err(f"{key}.name", f"invalid name {name!r} (letters, digits and . _ @ + -)")
    t = Team(name=name, is_queue=queue, mode="pull" if queue else "push")
    ids: list[str] = []
    raw_members = item.get("members", [])
    if not isinstance(raw_members, list):
        raise err(f"{key}.members", "expected a list of member ids or member tables")
    for i, mi in enumerate(raw_members):
        mk = f"{key}.members[{i}]"
        if isinstance(mi, dict):
            m = parse_member(mi, mk)
            if m.id in members:
                raise err(f"{mk}.id", f"member {m.id!r} is defined twice; define it once and refer to it by id")
            members[m.id] = m
            ids.append(m.id)
        else:
            mid = _str(mi, mk)
            assert mid is not None
            ids.append(mid)
        if ids.count(ids[-1]) > 1:
            raise err(mk, f"member {ids[-1]!r} listed twice")
    t.members = tuple(ids)
    if "strategy" in item:
        s = _str(item["strategy"], f"{key}.strategy")
        if s not in STRATEGIES:
            raise err(f"{key}.strategy", f"unknown strategy {s!r} (valid: {', '.join(STRATEGIES)})")
        t.strategy = s  # type: ignore[assignment]
    if "mode" in item:
        mode = _str(item["mode"], f"{key}.mode")
        if mode not in MODES:
            raise err(f"{key}.mode", f"unknown mode {mode!r} (valid: push, pull)")
        if queue and mode != "pull":
            raise err(f"{key}.mode", "a queue is always pull (declare a team to push)")
        t.mode = mode  # type: ignore[assignment]
    if item.get("sla_minutes") is not None:
        v = _num(item["sla_minutes"], f"{key}.sla_minutes", minimum=0)
        if v <= 0:
            raise err(f"{key}.sla_minutes", "expected minutes > 0")
        t.sla_minutes = float(v)
    if "on_breach" in item:
        ob = _str(item["on_breach"], f"{key}.on_breach")
        if ob not in ON_BREACH:
            raise err(f"{key}.on_breach", f"unknown action {ob!r} (valid: {', '.join(ON_BREACH)})")
        t.on_breach = ob  # type: ignore[assignment]
    if "escalate_to" in item:
        t.escalate_to = _str(item["escalate_to"], f"{key}.escalate_to")
    for flag in ("match_language", "sticky"):
        if flag in item:
            setattr(t, flag, _bool(item[flag], f"{key}.{flag}"))
    if t.strategy == "sticky":
        t.sticky = True
    return t


@attrs.define(slots=True)
class Directory:
    """Every member, team and queue one workspace routes to."""

    members: dict[str, Member] = attrs.field(factory=dict)
    teams: dict[str, Team] = attrs.field(factory=dict)

    def team(self, name: str) -> Team | None:
        return self.teams.get(name)

    def teams_of(self, member: str) -> list[str]:
        return [t.name for t in self.teams.values() if member in t.members]


def parse_directory(settings: Mapping[str, Any], prefix: str = "plugins.routing_geo") -> Directory:
    """Members, teams and queues from settings; cross references checked."""
    d = Directory()
    raw_members = settings.get("members") or []
    if not isinstance(raw_members, (list, tuple)):
        raise err(f"{dotted(prefix)}members", "expected a list of member tables")
    for i, item in enumerate(raw_members):
        m = parse_member(thaw(item), f"{dotted(prefix)}members[{i}]")
        if m.id in d.members:
            raise err(f"{dotted(prefix)}members[{i}].id", f"member {m.id!r} is defined twice")
        d.members[m.id] = m
    for section, queue in (("teams", False), ("queues", True)):
        raw = settings.get(section) or []
        if not isinstance(raw, (list, tuple)):
            raise err(f"{dotted(prefix)}{section}", f"expected a list of {section[:-1]} tables")
        for i, item in enumerate(raw):
            t = parse_team(thaw(item), f"{dotted(prefix)}{section}[{i}]", d.members, queue=queue)
            if t.name in d.teams:
                raise err(f"{dotted(prefix)}{section}[{i}].name", f"{t.name!r} is already a team or queue name")
            d.teams[t.name] = t
    check_directory(d, prefix)
    return d


def check_directory(d: Directory, prefix: str = "plugins.routing_geo") -> None:
    names = list(d.teams)
    for t in d.teams.values():
        section = "queues" if t.is_queue else "teams"
        idx = [x for x in d.teams.values() if x.is_queue == t.is_queue].index(t)
        key = f"{dotted(prefix)}{section}[{idx}]"
        for i, mid in enumerate(t.members):
            if mid not in d.members:
                raise err(f"{key}.members[{i}]", f"unknown member {mid!r} (defined: {', '.join(sorted(d.members)) or 'none'})")
        if not t.members and not t.is_queue:
            raise err(f"{key}.members", f"team {t.name!r} has no members: its leads could never be assigned")
        if t.escalate_to is not None and t.escalate_to not in d.teams and t.escalate_to not in d.members:
            raise err(f"{key}.escalate_to", f"unknown team, queue or member {t.escalate_to!r} (teams and queues: {', '.join(names)})")
        if t.on_breach == "escalate" and t.escalate_to is None:
            raise err(f"{key}.escalate_to", "on_breach = 'escalate' needs escalate_to (a team, queue or member)")


