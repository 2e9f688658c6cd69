"""``corecrm demo``: a CRM built from realistic sample data, run end to end.

It captures leads through the installed capture formats (JSON web-form
batches, plus sample e-mails and ADF files when a plugin reads them), lets the
enabled plugins verify, de-duplicate, score and route them, simulates three
months of sales work on a controlled clock (first contacts, qualification,
deals won and lost, conversions, purchases), then prints what a user wants to
see. Whatever plugins are installed and enabled take part; each section says
which plugin produced it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import secrets
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa

from corecrm.clitools import echo_json, format_table
from corecrm.lifecycle import MAIN_LINE, Stage, rank
from corecrm.records import RawCapture
from corecrm.storage import schema

HERE = Path(__file__).resolve().parent
START = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.timezone.utc)


class DemoClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now


def _section(title: str) -> None:
    click.echo("")
    click.echo(click.style(title, bold=True))
    click.echo("=" * len(title))


def build(directory: Path) -> tuple[Any, dict[str, Any]]:
    """Create the demo CRM in ``directory`` and run the simulation; return (crm, facts)."""
    from corecrm.app import Crm
    from corecrm.config import Config
    from corecrm.demo import sample

    directory.mkdir(parents=True, exist_ok=True)
    # Secrets are references to environment variables, never in the file.
    os.environ.setdefault("CORECRM_DEMO_SECRET", secrets.token_urlsafe(24))
    cfg_path = directory / "corecrm.toml"
    cfg_path.write_text((HERE / "demo.toml").read_text(encoding="utf-8"), encoding="utf-8")
    db = directory / "corecrm.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    clock = DemoClock()
    crm = Crm(Config.load(cfg_path), clock=clock)
    crm.ensure_schema()
    facts: dict[str, Any] = {"directory": str(directory), "plugins": crm.plugins.loaded_names()}
    rng = random.Random(3)

    # 1. Capture: web-form batches over twelve weeks, plus sample mail/ADF files.
    docs = sample.leads()
    batches = [docs[i : i + 25] for i in range(0, len(docs), 25)]
    results = []
    for n, batch in enumerate(batches):
        clock.now = START + dt.timedelta(hours=n * 40)
        raw = RawCapture(payload="\n".join(json.dumps(d) for d in batch).encode(), origin=f"webform-batch-{n:03d}.ndjson")
        results.extend(crm.capture([raw]))
    formats = crm.capture_formats()
    for path in sorted((HERE / "inbox").glob("*")):
        raw = RawCapture(payload=path.read_bytes(), origin=path.name)
        try:
            crm.choose_format(raw)
        except Exception:
            continue  # no installed plugin reads this kind of file
        results.extend(crm.capture([raw]))
    facts["captures"] = Counter(r.status for r in results)
    facts["formats"] = sorted(formats)

    # 2. Sales work: contact, qualify, open deals, win or lose, convert, buy.
    leads = crm.leads()
    facts["leads"] = len(leads)
    pipes = crm.config.pipelines()
    pipe_name = next(iter(pipes))
    won_stage = next(s.name for s in pipes[pipe_name].stages if s.closed == "won")
    lost_stage = next(s.name for s in pipes[pipe_name].stages if s.closed == "lost")
    open_stages = [s.name for s in pipes[pipe_name].stages if not s.closed]
    customers: list[int] = []
    for lead in leads:
        if lead.status != "open":
            continue
        clock.now = (lead.created_at or START) + dt.timedelta(minutes=rng.choice([4, 11, 25, 45, 90, 240, 1440]))
        if lead.owner and rng.random() < 0.85:
            crm.log_activity(lead.id, "call", note="intro call", owner=lead.owner)
        hot = (lead.score or 0) >= 30 or lead.stage in (Stage.MQL, Stage.SQL)
        # Better-scored leads buy more often, so the scoring report has something to find.
        win_chance = min(0.85, 0.35 + (lead.score or 0) / 100)
        if rng.random() < (0.55 if hot else 0.15):
            clock.now += dt.timedelta(days=rng.randint(1, 6))
            if lead.stage in (Stage.LEAD, Stage.MQL, Stage.NURTURING):
                crm.move_stage(lead.id, "sql", reason="qualified on the intro call", actor=lead.owner or "demo")
            clock.now += dt.timedelta(days=rng.randint(1, 10))
            deal_id = crm.create_deal(lead.id, pipeline=pipe_name, amount=float(rng.choice([900, 2500, 6000, 15000])), expected_close=(clock.now + dt.timedelta(days=30)).date())
            for st in open_stages[1:]:
                if rng.random() < 0.6:
                    clock.now += dt.timedelta(days=rng.randint(2, 9))
                    crm.move_deal(deal_id, st, actor=lead.owner or "demo")
            if rng.random() < win_chance:
                clock.now += dt.timedelta(days=rng.randint(1, 14))
                crm.move_deal(deal_id, won_stage, actor=lead.owner or "demo")
                cid, _ = crm.convert(lead.id, actor=lead.owner or "demo")
                customers.append(cid)
            elif rng.random() < 0.6:
                clock.now += dt.timedelta(days=rng.randint(1, 14))
                crm.move_deal(deal_id, lost_stage, reason=rng.choice(["price", "competitor", "timing", "no budget"]), actor=lead.owner or "demo")
        elif rng.random() < 0.2:
            clock.now += dt.timedelta(days=rng.randint(2, 20))
            crm.move_stage(lead.id, "nurturing", reason="not ready to buy", actor=lead.owner or "demo")
        elif rng.random() < 0.05:
            crm.move_stage(lead.id, "disqualified", reason="not a fit", actor=lead.owner or "demo")
    end = START + dt.timedelta(days=180)
    clock.now = end
    tx = sample.transactions(customers, start=START.date() + dt.timedelta(days=20), end=end.date())
    crm.add_transactions(tx)
    facts["customers"] = len(customers)
    facts["transactions"] = len(tx)
    facts["steps"] = run_steps(cfg_path, end)
    return crm, facts


def run_steps(cfg_path: Path, now: dt.datetime) -> list[dict[str, Any]]:
    """Run the admin commands of ``steps.txt`` that installed plugins provide, at the demo's clock."""
    import shlex

    from click.testing import CliRunner

    from corecrm.cli import main

    done = []
    env = {"CORECRM_NOW": now.isoformat(), "CORECRM_CONFIG": str(cfg_path)}
    for line in (HERE / "steps.txt").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        args = shlex.split(line)
        result = CliRunner().invoke(main, args, env=env)
        if result.exit_code == 2 and "No such command" in result.output:
            continue  # no installed plugin provides it
        done.append({"command": f"corecrm {line}", "ok": result.exit_code == 0, "output": result.output.strip().splitlines()[-1:] if result.output.strip() else []})
    return done


def funnel_by_source(crm: Any) -> tuple[list[str], list[list[Any]]]:
    """Leads per source and how many reached each stage of the main line (SQL + events)."""
    ws = crm.workspace
    lt, et = schema.leads, schema.events
    with crm.engine.connect() as conn:
        rows = conn.execute(sa.select(lt.c.id, lt.c.source, lt.c.stage).where(lt.c.workspace == ws, lt.c.status != "merged")).all()
        moves = conn.execute(sa.select(et.c.lead_id, et.c.detail).where(et.c.workspace == ws, et.c.type == "stage_changed")).all()
    best: dict[int, int] = {}
    for lead_id, source, stage in rows:
        best[lead_id] = max(best.get(lead_id, 0), rank(Stage(stage)))
    for lead_id, detail in moves:
        to = (detail or {}).get("to")
        if to and lead_id in best:
            best[lead_id] = max(best[lead_id], rank(Stage(to)))
    stages = [s for s in MAIN_LINE if s not in (Stage.PROSPECT,)]
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * len(stages))
    for lead_id, source, _stage in rows:
        for i, st in enumerate(stages):
            if best[lead_id] >= rank(st):
                counts[source or "(none)"][i] += 1
    cols = ["source", *[s.value for s in stages], "lead→customer"]
    out = []
    for source, c in sorted(counts.items(), key=lambda kv: -kv[1][0]):
        out.append([source, *c, f"{100 * c[-1] / c[0]:.1f}%" if c[0] else "-"])
    return cols, out


def run_demo(directory: str | None, *, as_json: bool = False) -> None:
    target = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="corecrm-demo-"))
    crm, facts = build(target)
    ws = crm.workspace
    report: dict[str, Any] = {"facts": {k: (dict(v) if isinstance(v, Counter) else v) for k, v in facts.items()}}

    funnel_cols, funnel_rows = funnel_by_source(crm)
    report["funnel_by_source"] = {"columns": funnel_cols, "rows": funnel_rows}

    with crm.engine.connect() as conn:
        lt = schema.leads
        owners = conn.execute(
            sa.select(lt.c.team, lt.c.owner, sa.func.count()).where(lt.c.workspace == ws, lt.c.status != "merged").group_by(lt.c.team, lt.c.owner).order_by(lt.c.team, lt.c.owner)
        ).all()
        tx = schema.transactions
        value = conn.execute(
            sa.select(tx.c.customer_id, sa.func.count(), sa.func.sum(tx.c.amount), sa.func.sum(tx.c.amount - sa.func.coalesce(tx.c.cost, 0)))
            .where(tx.c.workspace == ws).group_by(tx.c.customer_id).order_by(sa.func.sum(tx.c.amount - sa.func.coalesce(tx.c.cost, 0)).desc()).limit(8)
        ).all()
    report["assignments"] = [{"team": t, "owner": o, "leads": n} for t, o, n in owners]
    top = [ld for ld in crm.leads(order="score", limit=5) if ld.score is not None]
    report["top_leads"] = [{"id": ld.id, "name": ld.full_name, "company": ld.company, "score": ld.score, "grade": ld.grade, "owner": ld.owner, "why": (ld.score_detail or {}).get("contributions", [])} for ld in top]
    predicted = {cv.customer_id: cv for cv in crm.customer_values([r[0] for r in value])} if value else {}
    report["customer_value"] = [
        {"customer_id": cid, "purchases": n, "revenue": round(rev, 2), "margin_to_date": round(margin, 2), "predicted": round(predicted[cid].value, 2) if cid in predicted else None, "predicted_by": predicted[cid].plugin if cid in predicted else None}
        for cid, n, rev, margin in value
    ]  # fmt: skip
    reports = crm.plugins.collect_named("crm_reports", workspace=ws, what="report")
    report["reports"] = {}
    for name, rep in reports.items():
        try:
            table = rep.run(crm, ws, {"date_from": None, "date_to": None, "by": []})
        except Exception as exc:  # a report failing must not hide the others
            report["reports"][name] = {"plugin": rep.plugin, "error": f"{type(exc).__name__}: {exc}"}
            continue
        report["reports"][name] = {"plugin": rep.plugin, "title": table.title, "columns": table.columns, "rows": table.rows[:8], "notes": table.notes}

    if as_json:
        echo_json(report)
        return
    f = report["facts"]
    _section("corecrm demo")
    click.echo(f"CRM built in {f['directory']} (open it with: corecrm --config {Path(f['directory']) / 'corecrm.toml'} leads list)")
    click.echo(f"plugins: {', '.join(f['plugins'])}")
    click.echo(f"capture formats: {', '.join(f['formats'])}")
    caps = f["captures"]
    click.echo(f"captures: {sum(caps.values())} ({', '.join(f'{v} {k}' for k, v in sorted(caps.items()))}; quarantined ones wait in `corecrm quarantine list`)")
    click.echo(f"leads stored: {f['leads']}; customers: {f['customers']}; purchases: {f['transactions']}")
    for step in f["steps"]:
        click.echo(f"ran `{step['command']}`: {'ok' if step['ok'] else 'FAILED'} {' '.join(step['output'])}")
    _section("Funnel by source")
    click.echo(format_table(funnel_cols, funnel_rows))
    _section("Assignments per rep")
    if any(r["owner"] or r["team"] for r in report["assignments"]):
        click.echo(format_table(["team", "owner", "leads"], [[r["team"] or "-", r["owner"] or "(queue)", r["leads"]] for r in report["assignments"]]))
    else:
        click.echo("no routing plugin is enabled: leads are unassigned")
    _section("Top leads and why")
    if not report["top_leads"]:
        click.echo("no scoring plugin is enabled")
    for t in report["top_leads"]:
        click.echo(f"lead {t['id']} {t['name']} ({t['company'] or 'private'}) score {t['score']:g} grade {t['grade'] or '-'} -> {t['owner'] or 'queue'}")
        for c in t["why"][:6]:
            click.echo(f"    {c['points']:+g}  {c['rule']}: {c.get('reason') or ''}  [{c.get('plugin')}]")
    click.echo("(run `corecrm explain ID` for a lead's whole history)")
    _section("Customer value (top customers by margin to date)")
    click.echo(format_table(["customer", "purchases", "revenue", "margin to date", "predicted", "by"], [[r["customer_id"], r["purchases"], r["revenue"], r["margin_to_date"], r["predicted"], r["predicted_by"]] for r in report["customer_value"]]))
    for name, rep in report["reports"].items():
        _section(f"Report {name} (plugin {rep['plugin']})")
        if "error" in rep:
            click.echo(f"failed: {rep['error']}")
            continue
        click.echo(rep["title"])
        click.echo(format_table(rep["columns"], rep["rows"]))
        for note in rep["notes"]:
            click.echo(f"note: {note}")
    crm.close()
