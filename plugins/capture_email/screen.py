"""Screening e-mail leads: the CRM's own addresses and existing customers.

The capture format already skips mail *from* the addresses in this plugin's
``own_addresses``; it cannot see the core's ``[crm] own_addresses`` nor the
customers table, so this screen does, for the whole batch in one query:

* a lead whose address is one of the CRM's own is rejected (the capture is
  kept with the reason);
* with ``existing_customers = "attach"``, a lead whose address belongs to a
  customer is rejected with ``existing customer …`` and the message is logged
  as a note on that customer's lead instead.

Only leads that came from e-mail (``attributes["email"]``) are screened.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import sqlalchemy as sa

from corecrm.records import ScreenVerdict
from corecrm.storage import schema


def screen(leads: Sequence[Any], ctx: Any, settings: Mapping[str, Any]) -> list[ScreenVerdict]:
    mine = [(i, lead) for i, lead in enumerate(leads) if isinstance(lead.attributes.get("email"), dict) and lead.email]
    if not mine:
        return []
    own = set(ctx.crm.config.own_addresses) | {a.lower() for a in settings.get("own_addresses") or ()}
    out: list[ScreenVerdict] = []
    rest = []
    for i, lead in mine:
        if lead.email.lower() in own:
            out.append(ScreenVerdict(i, "reject", [f"own address: {lead.email.lower()} is one of the CRM's own addresses"]))
        else:
            rest.append((i, lead))
    if settings.get("existing_customers") != "attach" or not rest:
        return out
    emails = sorted({lead.email.lower() for _i, lead in rest})
    c = schema.customers.c
    with ctx.crm.engine.connect() as conn:
        rows = conn.execute(
            sa.select(c.id, c.lead_id, sa.func.lower(c.email).label("email"))
            .where(c.workspace == ctx.workspace, sa.func.lower(c.email).in_(emails))
            .order_by(c.id)
        ).all()
    customers: dict[str, Any] = {}
    for r in rows:
        customers.setdefault(r.email, r)
    for i, lead in rest:
        cust = customers.get(lead.email.lower())
        if cust is None:
            continue
        mail = lead.attributes["email"]
        where = f"lead {cust.lead_id}" if cust.lead_id else "no lead to attach to"
        out.append(ScreenVerdict(i, "reject", [f"existing customer {cust.id} ({lead.email.lower()}): mail attached to the customer, {where}"]))
        if cust.lead_id and ctx.mode in ("intake", "retry") and not ctx.dry_run:
            note = f"E-mail from customer: {mail.get('subject') or '(no subject)'}"
            if lead.note:
                note += "\n\n" + lead.note
            ctx.crm.log_activity(cust.lead_id, "note", note=note[:20000], workspace=ctx.workspace)
    return out
