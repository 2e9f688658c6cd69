"""Human-readable explanations of a lead's history (``corecrm explain``, ``leads show``).

Each event type has a one-line renderer; unknown types (from plugins) print
their detail as ``key=value`` pairs, so a new plugin is explained without
touching the core.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from corecrm.models import CONTACT_FIELDS, Event, Lead

if TYPE_CHECKING:
    from corecrm.app import Crm


def _num(x: Any) -> str:
    if isinstance(x, float) and x == int(x):
        return str(int(x))
    return str(x)


def _signed(x: Any) -> str:
    s = _num(x)
    return s if s.startswith("-") else f"+{s}"


def _captured(d: dict[str, Any]) -> list[str]:
    bits = [f"capture {d.get('capture_id')}"] if d.get("capture_id") is not None else []
    if d.get("origin"):
        bits.append(f"from {d['origin']}")
    if d.get("source"):
        bits.append(f"source {d['source']}")
    return [", ".join(bits) or "captured"]


def _field_updated(d: dict[str, Any]) -> list[str]:
    why = f" ({d['reason']})" if d.get("reason") else ""
    return [f"{d.get('field')}: {d.get('old')!r} -> {d.get('new')!r}{why}"]


def _finding(d: dict[str, Any]) -> list[str]:
    sug = f" (did you mean {d['suggestion']!r}?)" if d.get("suggestion") else ""
    fld = f" [{d['field']}]" if d.get("field") else ""
    return [f"{d.get('severity', 'info')}{fld}: {d.get('message')}{sug}"]


def _scored(d: dict[str, Any]) -> list[str]:
    lines = []
    head = f"{_signed(d.get('points', d.get('score', 0)))} points"
    if "score" in d and "previous" in d:
        head = f"score {_num(d.get('previous'))} -> {_num(d.get('score'))}"
    if d.get("ruleset"):
        head += f" (ruleset {d['ruleset']})"
    lines.append(head)
    for c in d.get("contributions") or []:
        grp = f" [{c['group']}]" if c.get("group") else ""
        plug = f" ({c['plugin']})" if c.get("plugin") and c.get("plugin") != d.get("_plugin") else ""
        lines.append(f"    {_signed(c.get('points')):>6}  {c.get('rule')}{grp}: {c.get('reason') or ''}{plug}")
    return lines


def _assigned(d: dict[str, Any]) -> list[str]:
    who = d.get("owner") or (f"queue {d.get('queue') or d.get('team')}" if (d.get("queue") or d.get("team")) else "nobody")
    team = f" (team {d['team']})" if d.get("team") and d.get("owner") else ""
    rule = f" by rule {d['rule']!r}" if d.get("rule") else ""
    lines = [f"to {who}{team}{rule}" + (f": {d['reason']}" if d.get("reason") else "")]
    exp = d.get("explanation") or {}
    for cand in exp.get("candidates") or []:
        if isinstance(cand, dict):
            verdict = cand.get("skipped") or cand.get("why") or ("chosen" if cand.get("chosen") else "")
            lines.append(f"    candidate {cand.get('member') or cand.get('id')}: {verdict}")
    if exp.get("strategy"):
        lines.append(f"    strategy: {exp['strategy']}" + (f" — {exp['choice']}" if exp.get("choice") else ""))
    return lines


def _stage(d: dict[str, Any]) -> list[str]:
    why = f" ({d['reason']})" if d.get("reason") else ""
    return [f"{d.get('from')} -> {d.get('to')}{why}"]


def _merged(d: dict[str, Any]) -> list[str]:
    out = [f"merged capture {d.get('capture_id')} into this lead; filled {sorted(d.get('filled') or {}) or 'nothing'}"]
    if d.get("conflicting"):
        out.append(f"    kept existing values; other values seen: {d['conflicting']}")
    if d.get("consent_not_carried"):
        out.append("    consent of the merged record was not carried over")
    return out


_RENDER: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "captured": _captured,
    "field_updated": _field_updated,
    "finding": _finding,
    "scored": _scored,
    "assigned": _assigned,
    "stage_changed": _stage,
    "merged": _merged,
    "matched": lambda d: [f"duplicate of lead {d.get('lead_id')} (score {d.get('score')}, rule {d.get('rule')})"],
    "possible_duplicate": lambda d: [f"may duplicate lead {d.get('lead_id')} (score {d.get('score')}, rule {d.get('rule')})"],
    "graded": lambda d: [f"grade {d.get('previous')} -> {d.get('grade')}" + (f" ({d['reason']})" if d.get("reason") else "")],
    "screened": lambda d: [f"{d.get('verdict')}: {'; '.join(d.get('reasons') or []) or 'no concerns'}"],
    "stage_refused": lambda d: [f"stage {d.get('to')} refused: {d.get('error')}"],
    "converted": lambda d: [f"became customer {d.get('customer_id')}" + (f" with deal {d['deal_id']}" if d.get("deal_id") else "")],
    "activity": lambda d: [f"{d.get('type')}" + (f" by {d['owner']}" if d.get("owner") else "") + (f": {d['note']}" if d.get("note") else "")],
    "first_contact": lambda d: [f"first contact {d.get('minutes_since_capture')} minutes after capture"],
}


def render_event(e: Event) -> list[str]:
    fn = _RENDER.get(e.type)
    if fn is not None:
        detail = dict(e.detail)
        detail["_plugin"] = e.plugin
        return fn(detail)
    return [", ".join(f"{k}={v}" for k, v in e.detail.items()) or "-"]


def render_explain(lead: Lead, events: list[Event]) -> str:
    lines = [f"lead {lead.id} {lead.full_name or lead.email or ''} — stage {lead.stage.value}, score {_num(lead.score) if lead.score is not None else '-'}"
             f"{' grade ' + lead.grade if lead.grade else ''}, owner {lead.owner or '-'}{' (team ' + lead.team + ')' if lead.team else ''}"]  # fmt: skip
    if lead.score_detail and lead.score_detail.get("contributions"):
        lines.append("why this score:")
        for c in lead.score_detail["contributions"]:
            lines.append(f"  {_signed(c['points']):>6}  {c['rule']}: {c.get('reason') or ''}  [{c.get('plugin')}]")
        lines.append(f"  {'=' + _num(lead.score):>6}")
    lines.append("history:")
    for e in events:
        rendered = render_event(e)
        by = f" [{e.plugin}]" if e.plugin else ""
        lines.append(f"  {e.at:%Y-%m-%d %H:%M:%S}  {e.type}{by}: {rendered[0]}")
        lines.extend(f"  {' ' * 19}  {line}" for line in rendered[1:])
    return "\n".join(lines)


def render_lead(crm: Crm, lead: Lead, events: list[Event]) -> str:
    lines = [f"lead {lead.id} ({lead.workspace})  stage {lead.stage.value}  status {lead.status}"]
    for f in CONTACT_FIELDS + ("source", "campaign"):
        v = getattr(lead, f)
        if v:
            lines.append(f"  {f:12} {v}")
    if lead.interests:
        lines.append(f"  {'interests':12} {', '.join(lead.interests)}")
    for k, v in lead.attributes.items():
        lines.append(f"  {'attr.' + k:12} {v}")
    lines.append(f"  {'score':12} {_num(lead.score) if lead.score is not None else '-'}  grade {lead.grade or '-'}")
    lines.append(f"  {'owner':12} {lead.owner or '-'}  team {lead.team or '-'}")
    lines.append(render_explain(lead, events).split("\n", 1)[1] if events else "")
    return "\n".join(lines)
