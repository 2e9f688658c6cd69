"""Fraud and junk screening: a verdict per lead (accept, review, reject) with its reasons.

Each signal has a code; the admin maps codes to verdicts in TOML
(``[plugins.verify_contact.screen_actions]``), and a lead gets the strictest
verdict among its signals. Leads with no signal get no record (the core
accepts them). Signals:

``disposable_email``        the address is at a throw-away mailbox provider
``role_email``              ``info@``, ``sales@``… (a function, not a person)
``invalid_email``           an e-mail was given and it is not a valid address (accepted by
                            default: bad data, not fraud; the finding stays on the lead)
``honeypot``                a field humans never see (hidden in the form) was filled
``phone_country_mismatch``  the phone belongs to another country than the one stated
``burst``                   more than ``burst_limit`` leads from one sender (``burst_field``)
                            within ``burst_window_minutes``, counting stored leads too
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any, Mapping, Sequence

from corecrm.models import Lead
from corecrm.records import ScreenVerdict

from corecrm_plugins.verify_contact import emails, geo, phones

SIGNALS: tuple[str, ...] = ("disposable_email", "role_email", "invalid_email", "honeypot", "phone_country_mismatch", "burst")
VERDICTS: tuple[str, ...] = ("accept", "review", "reject")
DEFAULT_ACTIONS: dict[str, str] = {
    "disposable_email": "review",
    "role_email": "accept",
    "invalid_email": "accept",
    "honeypot": "reject",
    "phone_country_mismatch": "review",
    "burst": "review",
}
_RANK = {v: n for n, v in enumerate(VERDICTS)}


def screen_batch(leads: Sequence[Lead], settings: Mapping[str, Any], ctx: Any = None) -> list[ScreenVerdict]:
    actions = {**DEFAULT_ACTIONS, **dict(settings.get("screen_actions", {}))}
    disposable = frozenset(d.lower() for d in settings.get("disposable_domains", ()))
    allow = frozenset(d.lower() for d in settings.get("allow_domains", ()))
    roles = frozenset(r.lower() for r in settings.get("role_local_parts", ()))
    honeypots = list(settings.get("honeypot_fields", ()))
    region_default = (settings.get("phone_default_region") or "").upper() or None
    reasons: dict[int, list[tuple[str, str]]] = defaultdict(list)

    for i, lead in enumerate(leads):
        for field in honeypots:
            value = lead.get(field)
            if value not in (None, "", [], {}):
                reasons[i].append(("honeypot", f"hidden form field {field} was filled in"))
                break
        if lead.email and lead.email.strip():
            check = emails.check_email(lead.email)
            if check.error is not None:
                reasons[i].append(("invalid_email", f"e-mail {lead.email!r} is not valid: {check.error}"))
            else:
                assert check.domain is not None and check.local is not None
                if emails.is_disposable(check.domain, disposable, allow):
                    reasons[i].append(("disposable_email", f"{check.domain} is a disposable mailbox provider"))
                if emails.is_role(check.local, roles):
                    reasons[i].append(("role_email", f"{check.local}@ is a role address"))
        if lead.phone and lead.country:
            country = geo.normalise_country(lead.country).code
            if country:
                pc = phones.check_phone(lead.phone, country or region_default)
                if pc.e164 is not None and pc.region and pc.region != country:
                    reasons[i].append(("phone_country_mismatch", f"phone {pc.e164} is a {pc.region} number, the lead says {country}"))

    field = settings.get("burst_field") or ""
    limit = int(settings.get("burst_limit", 0) or 0)
    if field and limit > 0:
        for i, why in _bursts(leads, field, limit, int(settings.get("burst_window_minutes", 10)), ctx).items():
            reasons[i].append(("burst", why))

    out: list[ScreenVerdict] = []
    for i in sorted(reasons):
        verdict = max((actions.get(code, "review") for code, _ in reasons[i]), key=_RANK.__getitem__)
        out.append(ScreenVerdict(i, verdict, [f"{code}: {why}" for code, why in reasons[i]]))
    return out


def _bursts(leads: Sequence[Lead], field: str, limit: int, window_min: int, ctx: Any) -> dict[int, str]:
    """Leads past the ``limit``-th from one sender value within the window (stored leads count first)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, lead in enumerate(leads):
        value = lead.get(field)
        if value not in (None, ""):
            groups[str(value)].append(i)
    if not groups:
        return {}
    stored = _stored_counts(ctx, field, list(groups), window_min) if ctx is not None else {}
    out: dict[int, str] = {}
    for value, idxs in groups.items():
        before = stored.get(value, 0)
        for n, i in enumerate(idxs, start=before + 1):
            if n > limit:
                out[i] = f"lead number {n} from {field}={value} within {window_min} minutes (limit {limit})"
    return out


def _stored_counts(ctx: Any, field: str, values: list[str], window_min: int) -> dict[str, int]:
    """Stored leads per sender value within the window: one grouped query for the whole batch."""
    crm = getattr(ctx, "crm", None)
    engine = getattr(crm, "engine", None)
    if engine is None:
        return {}
    import sqlalchemy as sa

    from corecrm.storage.schema import leads as t

    if field.startswith("attributes."):
        col = t.c.attributes[field.split(".", 1)[1]].as_string()
    elif field in t.c:
        col = t.c[field]
    else:
        return {}
    since = ctx.now - dt.timedelta(minutes=window_min)
    q = (
        sa.select(col, sa.func.count())
        .where(t.c.workspace == ctx.workspace, t.c.created_at >= since, col.in_(values))
        .group_by(col)
    )
    with engine.connect() as conn:
        return {str(v): int(n) for v, n in conn.execute(q)}
