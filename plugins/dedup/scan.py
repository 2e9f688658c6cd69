"""``dedup scan``: duplicates among stored leads, set-based.

1. The workspace's blocking keys are rebuilt in bulk (leads streamed in id
   order, keys written with the bulk insert path).
2. Candidate pairs come from one self-join of ``dedup_keys`` on the key,
   leaving out keys shared by more than ``max_block_size`` leads.
3. The leads in those pairs are loaded in chunks and compared with the same
   rules as at capture time.
4. With ``apply``, ``merge`` pairs are merged (the older lead survives) and
   ``flag`` pairs get ``possible_duplicate`` events on both leads (once).
"""

from __future__ import annotations

from typing import Any, Mapping

import sqlalchemy as sa

from corecrm.storage import schema

from corecrm_plugins.dedup import merge, store
from corecrm_plugins.dedup.match import matcher_for


def rebuild_index(conn: Any, workspace: str, matcher: Any, batch: int = 5000) -> tuple[int, int]:
    """Replace the workspace's keys; returns (leads, keys)."""
    store.clear_index(conn, workspace)
    n_leads = n_keys = 0
    buf: list[tuple[int, list[str]]] = []
    for lead in store.iter_leads(conn, workspace):
        buf.append((lead.id, matcher.keys(lead)))
        n_leads += 1
        if len(buf) >= batch:
            n_keys += store.index_leads(conn, workspace, buf, replace=False)
            buf = []
    n_keys += store.index_leads(conn, workspace, buf, replace=False)
    return n_leads, n_keys


def scan(crm: Any, workspace: str, settings: Mapping[str, Any], *, apply: bool = False) -> dict[str, Any]:
    matcher = matcher_for(settings)
    max_block = matcher.config.max_block_size
    with crm.engine.begin() as conn:
        n_leads, n_keys = rebuild_index(conn, workspace, matcher)
    with crm.engine.connect() as conn:
        pairs = sorted(store.candidate_pairs_sql(conn, workspace, max_block))
        oversized = store.oversized_blocks(conn, workspace, max_block)
        ids = {i for p in pairs for i in p}
        leads = store.load_leads(conn, workspace, ids)
    prepared = {i: matcher.prepare(lead) for i, lead in leads.items()}
    found = []
    for a, b in pairs:
        if a not in prepared or b not in prepared:
            continue
        o = matcher.compare(prepared[a], prepared[b])
        if o is None:
            continue
        action = o.action if settings.get("auto_merge", True) else "flag"
        found.append({"lead_id": a, "duplicate_id": b, "rule": o.rule, "score": o.score, "action": action, "reasons": o.reasons})
    found.sort(key=lambda p: (p["action"] != "merge", -p["score"], p["lead_id"], p["duplicate_id"]))
    report: dict[str, Any] = {
        "workspace": workspace, "leads": n_leads, "keys": n_keys, "candidate_pairs": len(pairs),
        "oversized_blocks": oversized, "max_block_size": max_block, "pairs": found,
        "merge": sum(p["action"] == "merge" for p in found), "flag": sum(p["action"] == "flag" for p in found),
    }  # fmt: skip
    if apply:
        report.update(_apply(crm, workspace, found, matcher))
    return report


def _apply(crm: Any, workspace: str, found: list[dict[str, Any]], matcher: Any) -> dict[str, int]:
    now = crm.now()
    merged = flagged = skipped = 0
    gone: set[int] = set()
    e = schema.events
    with crm.engine.begin() as conn:
        seen = {
            (lid, (store._decode(d) or {}).get("lead_id"))
            for lid, d in conn.execute(sa.select(e.c.lead_id, e.c.detail).where(e.c.workspace == workspace, e.c.type == "possible_duplicate"))
        }
        flags: list[dict[str, Any]] = []
        for p in found:
            a, b = p["lead_id"], p["duplicate_id"]
            if p["action"] == "merge":
                if a in gone or b in gone:
                    skipped += 1
                    continue
                merge.merge_leads(conn, workspace, a, b, now, reason=f"dedup scan: rule {p['rule']} score {p['score']}", matcher=matcher)
                gone.add(b)
                merged += 1
            else:
                for x, y in ((a, b), (b, a)):
                    if (x, y) not in seen:
                        seen.add((x, y))
                        flags.append({"lead_id": x, "type": "possible_duplicate", "detail": {"lead_id": y, "score": p["score"], "rule": p["rule"], "reasons": p["reasons"]}})
                flagged += 1
        store.add_events(conn, workspace, flags, now, merge.PLUGIN)
    return {"merged": merged, "flagged": flagged, "skipped": skipped}
