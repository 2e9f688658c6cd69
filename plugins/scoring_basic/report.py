"""``corecrm report scoring``: does the model separate winners from losers?

Calibration on leads whose outcome is known: a lead is a *win* when it
converted (``customer_id`` set, stage ``customer`` or status ``converted``) or
has a won deal; a *loss* when it has only lost deals. Leads with open deals
or no deal are left out (their outcome is not known yet). Conversion is
shown by grade and by score band, with the ROC AUC of the score (0.5: the
score tells winners from losers no better than a coin; 1.0: perfectly).

One aggregate query (grouped by score, grade and outcome) does the counting
in the database; the bands and the AUC are computed from its few rows.
``--from``/``--to`` restrict it to leads created in that period.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Mapping

import sqlalchemy as sa

from corecrm.records import Report, ReportTable

def _outcome_query(workspace: str, date_from: dt.date | None, date_to: dt.date | None) -> sa.Select[Any]:
    """Counts of scored leads with a known outcome, grouped by (score, grade, outcome)."""
    from corecrm.storage.schema import deals, leads

    d = (
        sa.select(
            deals.c.lead_id,
            sa.func.sum(sa.case((deals.c.status == "won", 1), else_=0)).label("won"),
            sa.func.sum(sa.case((deals.c.status == "lost", 1), else_=0)).label("lost"),
            sa.func.sum(sa.case((deals.c.status == "open", 1), else_=0)).label("open_"),
        )
        .where(deals.c.workspace == workspace, deals.c.lead_id.is_not(None))
        .group_by(deals.c.lead_id)
        .subquery("d")
    )
    won = sa.or_(
        leads.c.customer_id.is_not(None),
        leads.c.stage == "customer",
        leads.c.status == "converted",
        sa.func.coalesce(d.c.won, 0) > 0,
    )
    lost = sa.and_(sa.func.coalesce(d.c.lost, 0) > 0, sa.func.coalesce(d.c.open_, 0) == 0)
    outcome = sa.case((won, 1), (lost, 0), else_=None).label("outcome")
    inner = (
        sa.select(leads.c.score.label("score"), leads.c.grade.label("grade"), outcome)
        .select_from(leads.outerjoin(d, d.c.lead_id == leads.c.id))
        .where(leads.c.workspace == workspace, leads.c.status != "merged", leads.c.score.is_not(None))
    )
    if date_from is not None:
        inner = inner.where(leads.c.created_at >= dt.datetime.combine(date_from, dt.time(), dt.timezone.utc))
    if date_to is not None:
        inner = inner.where(leads.c.created_at < dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time(), dt.timezone.utc))
    o = inner.subquery("o")
    return (
        sa.select(o.c.score, o.c.grade, o.c.outcome, sa.func.count().label("n"))
        .where(o.c.outcome.is_not(None))
        .group_by(o.c.score, o.c.grade, o.c.outcome)
    )


def _rate(won: int, total: int) -> float | None:
    return won / total if total else None


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def auc(pairs: list[tuple[float, int, int]]) -> float | None:
    """ROC AUC from (score, wins, losses) counts: P(score of a win > score of a loss), ties count half."""
    pos = sum(w for _, w, _ in pairs)
    neg = sum(lo for _, _, lo in pairs)
    if not pos or not neg:
        return None
    losses_below = 0.0
    total = 0.0
    for _score, w, lo in sorted(pairs):
        total += w * (losses_below + lo / 2)
        losses_below += lo
    return total / (pos * neg)


def calibration(
    engine: sa.Engine, workspace: str, band_width: float = 20.0, date_from: dt.date | None = None, date_to: dt.date | None = None
) -> dict[str, Any]:
    """Wins and losses by grade, by score band and by exact score (for the AUC)."""
    with engine.connect() as conn:
        rows = conn.execute(_outcome_query(workspace, date_from, date_to)).all()
    by_grade: dict[str, list[int]] = {}
    by_band: dict[int, list[int]] = {}
    by_score: dict[float, list[int]] = {}
    for score, grade, outcome, n in rows:
        slot = 0 if outcome == 1 else 1
        by_grade.setdefault(grade or "-", [0, 0])[slot] += n
        by_band.setdefault(math.floor(score / band_width), [0, 0])[slot] += n
        by_score.setdefault(float(score), [0, 0])[slot] += n
    won = sum(v[0] for v in by_grade.values())
    lost = sum(v[1] for v in by_grade.values())
    grades = [
        {"grade": g, "leads": w + lo, "won": w, "lost": lo, "conversion": _rate(w, w + lo)}
        for g, (w, lo) in sorted(by_grade.items())
    ]
    bands = [
        {
            "band": f"{b * band_width:g} to {(b + 1) * band_width:g}",
            "min": b * band_width,
            "max": (b + 1) * band_width,
            "leads": w + lo,
            "won": w,
            "lost": lo,
            "conversion": _rate(w, w + lo),
        }
        for b, (w, lo) in sorted(by_band.items(), reverse=True)
    ]
    return {
        "workspace": workspace,
        "known_outcomes": won + lost,
        "won": won,
        "lost": lost,
        "base_rate": _rate(won, won + lost),
        "auc": auc([(s, w, lo) for s, (w, lo) in by_score.items()]),
        "by_grade": grades,
        "by_band": bands,
        "band_width": band_width,
    }


def run(crm: Any, workspace: str, params: Mapping[str, Any] | None = None) -> ReportTable:
    params = params or {}
    width = float(params.get("band_width") or 20.0)
    if width <= 0:
        from corecrm.errors import CrmError

        raise CrmError(f"--band-width must be > 0, got {width:g}")
    if params.get("by"):
        from corecrm.errors import CrmError

        raise CrmError("report scoring breaks down by grade and score band only (no --by)")
    data = calibration(crm.engine, workspace, width, params.get("date_from"), params.get("date_to"))
    rows: list[list[Any]] = []
    for g in data["by_grade"]:
        rows.append(["grade", g["grade"], g["leads"], g["won"], g["lost"], _pct(g["conversion"])])
    for b in data["by_band"]:
        rows.append(["score", b["band"], b["leads"], b["won"], b["lost"], _pct(b["conversion"])])
    notes = []
    if not data["known_outcomes"]:
        notes.append("no scored lead with a known outcome (won, lost or converted) yet")
    else:
        notes.append(
            f"{data['known_outcomes']} leads with a known outcome: {data['won']} won/converted, "
            f"{data['lost']} lost; base rate {_pct(data['base_rate'])}"
        )
        if data["auc"] is not None:
            a = data["auc"]
            verdict = "separates well" if a >= 0.75 else "separates somewhat" if a >= 0.6 else "barely separates" if a > 0.5 else "does not separate"
            notes.append(f"ROC AUC of the score: {a:.3f} (the model {verdict} winners from losers; 0.5 = chance)")
        notes.append("bands include their lower bound; leads with open or no deals are left out")
    if params.get("date_from") or params.get("date_to"):
        notes.append(f"leads created {params.get('date_from') or '…'} to {params.get('date_to') or '…'}")
    return ReportTable(
        title=f"Scoring calibration ({workspace})",
        columns=["by", "segment", "leads", "won", "lost", "conversion"],
        rows=rows,
        notes=notes,
        data=data,
    )


def reports() -> list[Report]:
    import click

    return [
        Report(
            name="scoring",
            title="Scoring calibration: conversion by grade and score band",
            run=run,
            description="Conversion rate by grade and score band for leads whose outcome is known (won, lost or converted), with the score's ROC AUC.",
            params=[click.Option(["--band-width"], type=float, default=20.0, show_default=True, help="Width of the score bands.")],
        )
    ]
