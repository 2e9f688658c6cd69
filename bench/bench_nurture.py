"""Due-step throughput of the nurture scheduler against an SMTP server on loopback.

    python bench/bench_nurture.py [--leads 100000] [--runs 1] [--batch 500] [--database URL]

Set-up (not timed): N leads bulk-inserted, each with an e-mail opt-in in the
consent ledger, all enrolled in a one-step sequence due now. Timed: one
``run_once`` that claims, checks exit conditions and consent, renders the
templates (Jinja2 sandbox, HTML + text), sends over SMTP and records
(ledger row, enrolment advanced, one ``email_sent`` event per lead).

Baseline, measured in the same run: the floor for the same work without the
CRM, i.e. plain ``smtplib`` sending pre-serialised MIME messages of the same
shape over one connection to the same server. The SMTP server is
aiosmtpd's discarding ``Sink`` handler in its own process. Times are
medians over ``--runs``; nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.timezone.utc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sink() -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}", "-c", "aiosmtpd.handlers.Sink"])
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the SMTP sink did not start")


def baseline(port: int, n: int) -> float:
    """Seconds to send n pre-serialised two-part messages with plain smtplib over one connection."""
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText
    from email.policy import compat32

    wire = compat32.clone(linesep="\r\n", max_line_length=998)
    msgs = []
    for i in range(n):
        m = MIMEMultipart("alternative")
        m.attach(MIMEText(f"Hi Lead{i},\nwelcome to the trial.\n", "plain", "utf-8"))
        m.attach(MIMEText(f"<p>Hi Lead{i}</p><p>welcome to the trial.</p>", "html", "utf-8"))
        m["From"], m["To"], m["Subject"] = "news@shop.example", f"lead{i}@example.org", f"Welcome Lead{i}"
        m["Message-ID"] = f"<nurture-bench-{i}-trial-0@shop.example>"
        m["List-Unsubscribe"] = "<https://crm.example.com/u/" + "x" * 140 + ">"
        msgs.append((f"lead{i}@example.org", m.as_bytes(policy=wire)))
    t = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as s:
        for to, raw in msgs:
            s.sendmail("news@shop.example", [to], raw)
    return time.perf_counter() - t


def setup(url: str, port: int, n: int, batch: int):
    import sqlalchemy as sa

    from corecrm.app import Crm
    from corecrm.config import Config
    from corecrm.storage import schema
    from corecrm.storage.db import bulk_insert, ts

    from corecrm_plugins.nurture_sequences import consent, store
    from corecrm_plugins.nurture_sequences.actions import runtime

    os.environ.setdefault("BENCH_NURTURE_SECRET", "bench-secret")
    cfg = Config.from_dict({"plugins": {
        "channel_email": {"host": "127.0.0.1", "port": port, "from_address": "news@shop.example"},
        "nurture_sequences": {
            "secret": {"env": "BENCH_NURTURE_SECRET"}, "unsubscribe_url": "https://crm.example.com/u/{token}", "batch_size": batch,
            "sequences": {"trial": {"steps": [{"name": "welcome", "subject": "Welcome {{ lead.first_name }}",
                                                "text": "Hi {{ lead.first_name }},\nwelcome to the trial.\n",
                                                "html": "<p>Hi {{ lead.first_name }}</p><p>welcome to the trial.</p>"}]}},
        },
    }})  # fmt: skip
    ws = f"bench{int(time.time() * 1000) % 10**9}"
    crm = Crm(cfg, database=url, workspace=ws, clock=lambda: T0)
    crm.ensure_schema()
    cols = ("workspace", "stage", "status", "first_name", "email", "email_norm", "created_at", "updated_at")
    with crm.engine.begin() as conn:
        now = ts(T0, conn)
        bulk_insert(conn, schema.leads, cols, [(ws, "nurturing", "open", f"Lead{i}", f"lead{i}@example.org", f"lead{i}@example.org", now, now) for i in range(n)])
        ids = [r[0] for r in conn.execute(sa.select(schema.leads.c.id).where(schema.leads.c.workspace == ws).order_by(schema.leads.c.id))]
    t = time.perf_counter()
    with crm.engine.begin() as conn:
        consent.record(conn, ws, [consent.ConsentEntry(i, "email", "marketing", "opted_in", T0, "import", f"lead{k}@example.org") for k, i in enumerate(ids)], recorded_at=T0)
    t_consent = time.perf_counter() - t
    rt = runtime(crm)
    t = time.perf_counter()
    with crm.engine.begin() as conn:
        store.enrol(conn, ws, rt.cfg, [(i, "trial", "bench", "bench") for i in ids], now=T0)
    t_enrol = time.perf_counter() - t
    return crm, rt, t_consent, t_enrol


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--leads", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--database", help="database URL (default: a SQLite file in a temporary directory)")
    args = ap.parse_args()

    from corecrm_plugins.nurture_sequences.scheduler import run_once

    sink, port = start_sink()
    tmp = tempfile.TemporaryDirectory()
    try:
        base, nurt, consent_t, enrol_t = [], [], [], []
        for r in range(args.runs):
            base.append(baseline(port, args.leads))
            url = args.database or f"sqlite:///{Path(tmp.name) / f'bench{r}.db'}"
            crm, rt, tc, te = setup(url, port, args.leads, args.batch)
            consent_t.append(tc)
            enrol_t.append(te)
            t = time.perf_counter()
            stats = run_once(rt, T0)
            nurt.append(time.perf_counter() - t)
            assert stats.sent == args.leads, stats  # a correctness check, not a timing assertion
            crm.close()
        b, s = statistics.median(base), statistics.median(nurt)
        n = args.leads
        print(f"database: {args.database or 'sqlite (temporary file)'}; leads: {n:,}; batch: {args.batch}; runs: {args.runs}")
        print(f"baseline  plain smtplib, pre-built messages, one connection : {b:8.2f} s  {n / b:10,.0f} msg/s")
        print(f"nurture   run_once: claim+consent+render+SMTP+record         : {s:8.2f} s  {n / s:10,.0f} steps/s")
        print(f"ratio     nurture / baseline                                 : {s / b:8.2f} x")
        print(f"set-up    consent ledger insert: {statistics.median(consent_t):.2f} s ({n / statistics.median(consent_t):,.0f} rows/s); "
              f"enrolment: {statistics.median(enrol_t):.2f} s ({n / statistics.median(enrol_t):,.0f} leads/s)")  # fmt: skip
    finally:
        sink.terminate()
        sink.wait(10)
        tmp.cleanup()


if __name__ == "__main__":
    main()
