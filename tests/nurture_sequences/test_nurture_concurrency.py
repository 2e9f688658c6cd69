"""Two schedulers in two processes at once: every message is sent exactly once."""

from __future__ import annotations

import multiprocessing as mp
from collections import Counter

import sqlalchemy as sa

from nurture_testkit import T0, backend_url, consent_in, email_settings, enrol, nurture_crm, nurture_settings, smtp, worker_process  # noqa: F401

from corecrm_plugins.nurture_sequences.tables import messages


def test_two_schedulers_in_two_processes_send_each_message_once(nurture_crm, smtp):
    n = 240
    cfg = nurture_settings(batch_size=15)
    crm = nurture_crm(cfg)
    ids = crm.add_leads([{"first_name": f"L{i}", "email": f"lead{i}@example.org"} for i in range(n)])
    consent_in(crm, ids)
    enrol(crm, ids)

    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    plugins_cfg = {"nurture_sequences": cfg, "channel_email": email_settings(smtp.port)}
    url = str(crm.engine.url.render_as_string(hide_password=False))
    procs = [ctx.Process(target=worker_process, args=(url, plugins_cfg, crm.workspace, T0.isoformat(), start, out)) for _ in range(2)]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0

    keys = [m["X-Corecrm-Idempotency-Key"] for m in smtp.parsed()]
    assert len(keys) == n and len(set(keys)) == n  # each lead's step 1 exactly once
    assert sum(r["sent"] for r in results) == n
    assert sum(r["claimed"] for r in results) == n
    with crm.engine.connect() as conn:
        statuses = Counter(r[0] for r in conn.execute(sa.select(messages.c.status).where(messages.c.workspace == crm.workspace)))
    assert statuses == {"sent": n}
    assert len(crm.events_of(type="email_sent")) == n
