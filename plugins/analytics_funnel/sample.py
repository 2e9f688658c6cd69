"""A small, seeded sample dataset and the charts of every report drawn from it.

Used for the pictures in ``docs/plugins/analytics_funnel.md`` and available
to a demo::

    python -m corecrm_plugins.analytics_funnel.sample OUTDIR

builds a CRM in a temporary directory, fills it, runs each report and writes
``OUTDIR/analytics_funnel_<report>.svg``.
"""

from __future__ import annotations

import datetime as dt
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from corecrm.storage import schema
from corecrm_plugins.analytics_funnel.tables import campaign_costs

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
STAGES = ("lead", "mql", "sql", "opportunity", "customer")
SOURCES = {"web": ("spring_webinar", "seo"), "ads": ("search_ads", "retargeting"), "email": ("newsletter",), "partner": ("partner_referral",)}
TEAMS = ("north", "south")
PARAMS: dict[str, dict[str, Any]] = {
    "funnel": {"date_from": dt.date(2026, 1, 1), "date_to": dt.date(2026, 6, 30)},
    "attribution": {"date_from": dt.date(2026, 1, 1), "date_to": dt.date(2026, 6, 30)},
    "campaign_economics": {"date_from": dt.date(2026, 1, 1), "date_to": dt.date(2026, 6, 30)},
    "forecast": {"history": 4},
    "retention": {"date_from": dt.date(2025, 1, 1), "date_to": dt.date(2026, 6, 30)},
    "speed_to_lead": {"date_from": dt.date(2026, 1, 1), "date_to": dt.date(2026, 6, 30), "by": ["team"]},
}


def build_sample(crm: Any, workspace: str = "default", seed: int = 7) -> None:
    """Fill the CRM with ~400 leads, their histories, deals, costs and two years of transactions."""
    rnd = random.Random(seed)
    leads, events, deals, customers, txs, costs = [], [], [], [], [], []
    start = dt.datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    for i in range(400):
        source = rnd.choice(list(SOURCES))
        campaign = rnd.choice(SOURCES[source])
        created = start + dt.timedelta(minutes=rnd.randrange(0, 170 * 24 * 60))
        team = TEAMS[i % 2]
        r = rnd.random() * (1.3 if source == "partner" else 1.0)
        top = 4 if r > 0.93 else 3 if r > 0.85 else 2 if r > 0.70 else 1 if r > 0.45 else 0
        assigned = created + dt.timedelta(hours=rnd.expovariate(1 / (2 if team == "north" else 6)))
        contact = created + dt.timedelta(hours=rnd.expovariate(1 / (8 if team == "north" else 20))) if rnd.random() < 0.8 else None
        leads.append({"id": i + 1, "workspace": workspace, "stage": STAGES[top], "status": "open", "source": source, "campaign": campaign,
                      "team": team, "owner": f"{team}-{i % 3}", "created_at": created, "updated_at": created, "assigned_at": assigned,
                      "first_contact_at": contact})
        at = created
        events.append({"workspace": workspace, "lead_id": i + 1, "type": "stage_changed", "at": at, "plugin": "sample", "detail": {"from": None, "to": "lead"}})
        for k in range(1, top + 1):
            at += dt.timedelta(days=rnd.expovariate(1 / (4 + 3 * k)))
            events.append({"workspace": workspace, "lead_id": i + 1, "type": "stage_changed", "at": at, "plugin": "sample", "detail": {"from": STAGES[k - 1], "to": STAGES[k]}})
        for _ in range(rnd.choice((0, 1, 1, 2, 3))):
            s2 = rnd.choice(list(SOURCES))
            events.append({"workspace": workspace, "lead_id": i + 1, "type": rnd.choice(("form_submitted", "email_clicked", "page_visited")),
                           "at": created + dt.timedelta(days=rnd.random() * 20), "plugin": "sample", "detail": {"source": s2, "campaign": rnd.choice(SOURCES[s2])}})
        if top >= 3:
            amount = round(rnd.uniform(2, 30)) * 500.0
            if top == 4 and at < NOW:
                customers.append({"id": len(customers) + 1, "workspace": workspace, "lead_id": i + 1, "created_at": at})
                leads[-1]["customer_id"] = len(customers)
                deals.append({"workspace": workspace, "lead_id": i + 1, "customer_id": len(customers), "pipeline": "sales", "stage": "won", "amount": amount,
                              "owner": leads[-1]["owner"], "status": "won", "expected_close": at.date(), "created_at": created, "closed_at": at})
            else:
                exp = (NOW + dt.timedelta(days=rnd.uniform(-20, 150))).date()
                deals.append({"workspace": workspace, "lead_id": i + 1, "customer_id": None, "pipeline": "sales",
                              "stage": rnd.choice(("new", "qualified", "proposal", "negotiation")), "amount": amount,
                              "owner": leads[-1]["owner"], "status": "open", "expected_close": exp, "created_at": created, "closed_at": None})
    n_customers = len(customers)
    for j in range(120):  # customers imported from the shop, two years of orders
        customers.append({"id": n_customers + j + 1, "workspace": workspace, "lead_id": None, "created_at": dt.datetime(2025, 1, 1, tzinfo=UTC)})
    for cust in customers:
        life = rnd.expovariate(1 / 300)
        first = max(cust["created_at"].date(), dt.date(2025, 1, 1))
        d = first
        while (d - first).days < life and d < NOW.date():
            amt = round(rnd.uniform(20, 400), 2)
            txs.append({"workspace": workspace, "customer_id": cust["id"], "at": d, "amount": amt, "cost": round(amt * rnd.uniform(0.3, 0.9), 2)})
            d += dt.timedelta(days=int(rnd.expovariate(1 / 35)) + 1)
    for source, camps in SOURCES.items():
        for camp in camps:
            for m in range(1, 7):
                first = dt.date(2026, m, 1)
                last = dt.date(2026, m + 1, 1) - dt.timedelta(days=1)
                costs.append({"workspace": workspace, "campaign": camp, "source": source, "period_start": first, "period_end": last,
                              "amount": round(rnd.uniform(300, 1500), 2), "created_at": NOW})
    with crm.engine.begin() as conn:
        conn.execute(schema.leads.insert(), leads)
        conn.execute(schema.events.insert(), events)
        conn.execute(schema.customers.insert(), customers)
        conn.execute(schema.deals.insert(), deals)
        conn.execute(schema.transactions.insert(), txs)
        conn.execute(campaign_costs.insert(), costs)
        # a won deal's history, so the forecast can tell what it said at the start of each month
        rows = conn.execute(sa.select(schema.deals.c.id, schema.deals.c.created_at, schema.deals.c.closed_at).where(schema.deals.c.status == "won")).all()
        conn.execute(schema.events.insert(), [
            {"workspace": workspace, "deal_id": did, "type": "deal_stage_changed", "at": closed - dt.timedelta(days=10), "plugin": "sample",
             "detail": {"deal_id": did, "from": "qualified", "to": "negotiation"}}
            for did, _created, closed in rows if closed is not None
        ] or [{"workspace": workspace, "deal_id": None, "type": "noop", "at": NOW, "plugin": "sample", "detail": {}}])


def render_all(crm: Any, outdir: Path, workspace: str = "default") -> dict[str, Path]:
    """Run every report of this plugin on the CRM and write its chart; returns ``{report: path}``."""
    outdir.mkdir(parents=True, exist_ok=True)
    reports = crm.plugins.collect_named("crm_reports", workspace=workspace, what="report")
    out = {}
    for name, params in PARAMS.items():
        rep = reports[name]
        table = rep.run(crm, workspace, params)
        path = outdir / f"analytics_funnel_{name}.svg"
        rep.chart(table, path)
        out[name] = path
    return out


def main(argv: list[str]) -> int:
    from corecrm.app import Crm
    from corecrm.config import Config

    outdir = Path(argv[0] if argv else ".")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Config.from_dict({"crm": {"database": f"sqlite:///{Path(tmp) / 'sample.db'}"}, "plugins": {"enabled": ["analytics_funnel"]}})
        crm = Crm.open(cfg, clock=lambda: NOW)
        try:
            build_sample(crm)
            for name, path in render_all(crm, outdir).items():
                print(f"{name}: {path}")
        finally:
            crm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
