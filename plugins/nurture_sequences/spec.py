"""Sequences and enrolment rules: parsed from TOML, validated with exact key paths.

A sequence is an ordered list of steps. Each step waits ``delay`` after the
previous step's *scheduled* time (the enrolment time for the first step), then
optionally moves forward to the next ``at`` time of day in the lead's own time
zone, and sends its templates (``subject``, ``text``, ``html``) through
``channel``. Scheduling from the previous step's scheduled time (not its
actual send time) keeps a sequence on its calendar even when a worker was
down for an hour.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Mapping

import attrs

from corecrm.errors import ConfigError

#: Why an enrolment may end early. Each is checked against the lead's current
#: state right before every send, so a missed lifecycle event never lets a
#: message through.
EXIT_CONDITIONS: tuple[str, ...] = ("qualified", "replied", "converted", "unsubscribed", "disqualified")

#: Stages that count as "qualified" for the ``qualified`` exit condition.
QUALIFIED_STAGES: frozenset[str] = frozenset({"mql", "sql", "opportunity"})

#: Event types that count as a reply for the ``replied`` exit condition.
REPLY_EVENTS: tuple[str, ...] = ("email_replied", "replied")

#: When a rule is evaluated.
RULE_TRIGGERS: tuple[str, ...] = ("intake", "stage_changed", "converted", "date")

_DURATION_RE = re.compile(r"^\s*(?:(\d+)\s*w)?\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s)?\s*$")
_TIME_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def parse_duration(value: Any, key: str) -> dt.timedelta:
    """``"3d"``, ``"1d12h"``, ``"90m"``, ``"2w"`` or a number of seconds."""
    if isinstance(value, bool):
        raise ConfigError(f"expected a duration such as '2d' or '3h30m', got {value!r}", key=key)
    if isinstance(value, (int, float)):
        if value < 0:
            raise ConfigError(f"a duration cannot be negative, got {value!r}", key=key)
        return dt.timedelta(seconds=value)
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m and value.strip() and any(m.groups()):
            w, d, h, mi, s = (int(g or 0) for g in m.groups())
            return dt.timedelta(weeks=w, days=d, hours=h, minutes=mi, seconds=s)
        if value.strip() == "0":
            return dt.timedelta(0)
    raise ConfigError(f"expected a duration such as '2d' or '3h30m', got {value!r}", key=key)


def _zone(name: str | None) -> dt.tzinfo | None:
    if not name:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@attrs.define(slots=True, frozen=True)
class Step:
    index: int
    name: str
    delay: dt.timedelta
    channel: str
    subject: str
    text: str
    html: str | None = None
    at: dt.time | None = None  #: local time of day in the lead's time zone

    def due(self, base: dt.datetime, tz_name: str | None, default_tz: str | None = None) -> dt.datetime:
        """When this step is due, ``base`` being the previous step's scheduled time (UTC)."""
        t = base + self.delay
        if self.at is None:
            return t
        tz = _zone(tz_name) or _zone(default_tz) or dt.timezone.utc
        local = t.astimezone(tz)
        cand = dt.datetime.combine(local.date(), self.at, tzinfo=tz)
        if cand < local:
            cand = dt.datetime.combine(local.date() + dt.timedelta(days=1), self.at, tzinfo=tz)
        # Round-trip through UTC so a wall time that falls in a DST gap resolves.
        return cand.astimezone(dt.timezone.utc)


@attrs.define(slots=True, frozen=True)
class Rule:
    """Enrol leads matching ``match`` into ``sequence`` when ``on`` happens."""

    index: int
    sequence: str
    on: str
    match: Mapping[str, Any]
    to: frozenset[str] = frozenset()  #: stage_changed: target stages (empty = any)
    date_field: str | None = None  #: date rule: e.g. ``attributes.renewal_date``
    days_before: int = 0
    name: str = ""

    def matches(self, lead: Any) -> bool:
        for field, want in self.match.items():
            have = lead.get(field)
            if isinstance(have, (list, tuple, set, frozenset)):
                wants = want if isinstance(want, list) else [want]
                if not any(w in have for w in wants):
                    return False
            elif isinstance(want, list):
                if have not in want:
                    return False
            elif have != want:
                return False
        return True

    def date_due(self, lead: Any, now: dt.datetime) -> bool:
        """Date rule: the lead's date field is within ``days_before`` days from now (and not past)."""
        raw = lead.get(self.date_field) if self.date_field else None
        if raw is None:
            return False
        try:
            day = raw if isinstance(raw, dt.date) else dt.date.fromisoformat(str(raw)[:10])
        except ValueError:
            return False
        if isinstance(day, dt.datetime):
            day = day.date()
        today = now.date()
        return today <= day <= today + dt.timedelta(days=self.days_before)


@attrs.define(slots=True, frozen=True)
class Sequence:
    name: str
    steps: tuple[Step, ...]
    purpose: str = "marketing"
    exit_on: frozenset[str] = frozenset(EXIT_CONDITIONS)
    description: str = ""
    rules: tuple[Rule, ...] = ()


_STEP_KEYS = {"name", "delay", "at", "channel", "subject", "text", "html"}
_SEQ_KEYS = {"steps", "purpose", "exit_on", "description", "enrol"}
_RULE_KEYS = {"on", "match", "to", "date_field", "days_before", "name"}


def _need(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(msg, key=key)


def _name(value: Any, key: str, what: str) -> str:
    _need(isinstance(value, str) and bool(_NAME_RE.match(value)), key, f"expected a {what} name in snake_case, got {value!r}")
    return value


def parse_sequences(raw: Any, key: str) -> dict[str, Sequence]:
    """Parse ``[plugins.nurture_sequences.sequences]``; raise naming the exact key path."""
    _need(isinstance(raw, dict), key, "expected a table of sequences")
    out: dict[str, Sequence] = {}
    for sname, body in raw.items():
        skey = f"{key}.{sname}"
        _name(sname, skey, "sequence")
        _need(isinstance(body, dict), skey, "expected a table with steps")
        unknown = sorted(set(body) - _SEQ_KEYS)
        _need(not unknown, f"{skey}.{unknown[0] if unknown else ''}", f"unknown key (valid: {', '.join(sorted(_SEQ_KEYS))})")
        steps_raw = body.get("steps")
        _need(isinstance(steps_raw, list) and len(steps_raw) > 0, f"{skey}.steps", "expected a non-empty list of steps")
        purpose = body.get("purpose", "marketing")
        _name(purpose, f"{skey}.purpose", "purpose")
        exit_on = body.get("exit_on", list(EXIT_CONDITIONS))
        _need(isinstance(exit_on, list), f"{skey}.exit_on", "expected a list of exit conditions")
        for i, cond in enumerate(exit_on):
            _need(cond in EXIT_CONDITIONS, f"{skey}.exit_on[{i}]", f"unknown exit condition {cond!r} (valid: {', '.join(EXIT_CONDITIONS)})")
        steps: list[Step] = []
        seen: set[str] = set()
        for i, st in enumerate(steps_raw):
            k = f"{skey}.steps[{i}]"
            _need(isinstance(st, dict), k, "expected a table (delay, channel, subject, text, html)")
            unknown = sorted(set(st) - _STEP_KEYS)
            _need(not unknown, f"{k}.{unknown[0] if unknown else ''}", f"unknown key (valid: {', '.join(sorted(_STEP_KEYS))})")
            name = st.get("name", f"step{i + 1}")
            _name(name, f"{k}.name", "step")
            _need(name not in seen, f"{k}.name", f"duplicate step name {name!r}")
            seen.add(name)
            delay = parse_duration(st.get("delay", 0), f"{k}.delay")
            at = None
            if "at" in st:
                m = _TIME_RE.match(st["at"]) if isinstance(st["at"], str) else None
                _need(m is not None, f"{k}.at", f"expected a time of day HH:MM, got {st['at']!r}")
                assert m is not None
                at = dt.time(int(m.group(1)), int(m.group(2)))
            channel = st.get("channel", "email")
            _need(isinstance(channel, str) and bool(channel), f"{k}.channel", "expected a channel name")
            for part in ("subject", "text", "html"):
                if part in st:
                    _need(isinstance(st[part], str), f"{k}.{part}", "expected a template string")
            _need(isinstance(st.get("text"), str) and bool(st["text"].strip()), f"{k}.text", "every step needs a plain-text template (text)")
            subject = st.get("subject", "")
            _need(channel != "email" or bool(subject.strip()), f"{k}.subject", "an email step needs a subject template")
            steps.append(Step(i, name, delay, channel, subject, st["text"], st.get("html"), at))
        rules = parse_rules(body.get("enrol", []), f"{skey}.enrol", sname)
        out[sname] = Sequence(sname, tuple(steps), purpose, frozenset(exit_on), str(body.get("description", "")), tuple(rules))
    return out


def parse_rules(raw: Any, key: str, seq: str) -> list[Rule]:
    """Parse a sequence's ``enrol`` rules (``[[plugins.nurture_sequences.sequences.<name>.enrol]]``)."""
    _need(isinstance(raw, list), key, "expected a list of enrolment rules")
    out = []
    for i, r in enumerate(raw):
        k = f"{key}[{i}]"
        _need(isinstance(r, dict), k, "expected a table (on, match, to)")
        unknown = sorted(set(r) - _RULE_KEYS)
        _need(not unknown, f"{k}.{unknown[0] if unknown else ''}", f"unknown key (valid: {', '.join(sorted(_RULE_KEYS))})")
        on = r.get("on", "intake")
        _need(on in RULE_TRIGGERS, f"{k}.on", f"expected one of {', '.join(RULE_TRIGGERS)}, got {on!r}")
        match = r.get("match", {})
        _need(isinstance(match, dict), f"{k}.match", "expected a table of field = value")
        to = r.get("to", [])
        if isinstance(to, str):
            to = [to]
        _need(isinstance(to, list) and all(isinstance(t, str) for t in to), f"{k}.to", "expected a stage or a list of stages")
        if to:
            from corecrm.lifecycle import Stage

            valid = {s.value for s in Stage}
            for j, t in enumerate(to):
                _need(t in valid, f"{k}.to[{j}]" if isinstance(r.get("to"), list) else f"{k}.to", f"unknown stage {t!r} (valid: {', '.join(sorted(valid))})")
        date_field = r.get("date_field")
        days_before = r.get("days_before", 0)
        if on == "date":
            _need(isinstance(date_field, str) and bool(date_field), f"{k}.date_field", "a date rule needs date_field (e.g. attributes.renewal_date)")
            _need(isinstance(days_before, int) and not isinstance(days_before, bool) and days_before >= 0, f"{k}.days_before", f"expected a whole number of days >= 0, got {days_before!r}")
        name = r.get("name", f"{seq}.enrol[{i}]")
        _need(isinstance(name, str), f"{k}.name", "expected a string")
        out.append(Rule(i, seq, on, dict(match), frozenset(to), date_field, int(days_before or 0), name))
    return out
