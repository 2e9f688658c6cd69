"""``corecrm report nurture``: what the sequences did, per sequence, in a few grouped queries."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping

import sqlalchemy as sa

from corecrm.records import Report, ReportTable
from corecrm.storage import schema

from corecrm_plugins.nurture_sequences.consent import is_current
from corecrm_plugins.nurture_sequences.tables import consent, enrolments, messages

COLUMNS = ["sequence", "enrolled", "active", "completed", "exited", "exited_by_reason", "sent", "failed", "skipped",
           "unsubscribed", "converted", "conversion_rate"]  # fmt: skip


def run_report(engine: Any, workspace: str, date_from: Any = None, date_to: Any = None) -> ReportTable:
    """Figures for the cohort of enrolments made in ``[date_from, date_to]`` (all when not given)."""
    import datetime as dt

    e, m, c, lc = enrolments.c, messages.c, consent.c, schema.leads.c
    cohort = [e.workspace == workspace]
    if date_from is not None:
        cohort.append(e.enrolled_at >= dt.datetime.combine(date_from, dt.time(0), tzinfo=dt.timezone.utc))
    if date_to is not None:
        cohort.append(e.enrolled_at < dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time(0), tzinfo=dt.timezone.utc))
    per: dict[str, dict[str, Any]] = defaultdict(lambda: {k: 0 for k in COLUMNS[1:]} | {"exited_by_reason": {}})
    with engine.connect() as conn:
        for seq, status, reason, n in conn.execute(
            sa.select(e.sequence, e.status, e.exit_reason, sa.func.count()).where(*cohort).group_by(e.sequence, e.status, e.exit_reason)
        ).all():
            row = per[seq]
            row["enrolled"] += n
            row[status] = row.get(status, 0) + n
            if status == "exited":
                row["exited_by_reason"][reason or "?"] = row["exited_by_reason"].get(reason or "?", 0) + n
        for seq, status, n in conn.execute(
            sa.select(m.sequence, m.status, sa.func.count())
            .select_from(messages.join(enrolments, e.id == m.enrolment_id))
            .where(m.workspace == workspace, *cohort)
            .group_by(m.sequence, m.status)
        ).all():
            if status in ("sent", "failed", "skipped"):
                per[seq][status] += n
        # Unsubscribed: enrolled leads whose current consent (the statement made last) for any channel is an opt-out made after enrolment.
        unsub = (
            sa.select(e.sequence, sa.func.count(sa.distinct(e.lead_id)))
            .select_from(enrolments.join(consent, sa.and_(c.workspace == e.workspace, c.lead_id == e.lead_id)))
            .where(*cohort, c.status == "opted_out", c.at >= e.enrolled_at, is_current(consent))
            .group_by(e.sequence)
        )
        for seq, n in conn.execute(unsub).all():
            per[seq]["unsubscribed"] = n
        conv = (
            sa.select(e.sequence, sa.func.count())
            .select_from(enrolments.join(schema.leads, sa.and_(lc.id == e.lead_id, lc.workspace == e.workspace)))
            .where(*cohort, sa.or_(lc.stage == "customer", lc.customer_id.is_not(None)))
            .group_by(e.sequence)
        )
        for seq, n in conn.execute(conv).all():
            per[seq]["converted"] = n
    rows = []
    for seq in sorted(per):
        r = per[seq]
        r["conversion_rate"] = round(r["converted"] / r["enrolled"], 4) if r["enrolled"] else None
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(r["exited_by_reason"].items()))
        rows.append([seq] + [reasons if k == "exited_by_reason" else r.get(k, 0) for k in COLUMNS[1:]])
    notes = [] if rows else ["no lead was enrolled in a nurture sequence in this workspace" + (" in this period" if date_from or date_to else "")]
    if date_from or date_to:
        notes.append("figures are for the leads enrolled in the period (--from/--to), whatever happened to them since")
    return ReportTable(title="Nurture sequences", columns=list(COLUMNS), rows=rows, notes=notes, data={"sequences": {k: dict(v) for k, v in per.items()}})


def nurture_report() -> Report:
    def _run(crm: Any, workspace: str, params: Mapping[str, Any] | None = None) -> ReportTable:
        p = params or {}
        return run_report(crm.engine, workspace, p.get("date_from"), p.get("date_to"))

    return Report(
        name="nurture",
        title="Nurture sequences",
        run=_run,
        description="Enrolled, active, completed, exited by reason, sent, failed, unsubscribed and conversion of nurtured leads, per sequence.",
    )
