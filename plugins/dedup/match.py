"""Matching a batch of incoming leads against stored leads (and against each other).

One pass per batch: the batch's blocking keys are looked up in
``dedup_keys`` with a few ``IN`` queries, the candidate leads are loaded
with one more, and every incoming lead is compared with the stored leads it
shares a key with. Nothing is queried per lead.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any, Mapping, Sequence

from corecrm.records import MatchCandidate

from corecrm_plugins.dedup import store
from corecrm_plugins.dedup.engine import Matcher, candidate_pairs
from corecrm_plugins.dedup.rules import config_from_settings

_MATCHERS: dict[str, Matcher] = {}


def matcher_for(settings: Mapping[str, Any]) -> Matcher:
    """The compiled matcher for these settings (compiled once per distinct configuration)."""
    key = json.dumps({k: settings.get(k) for k in ("blocking_keys", "rules", "max_block_size")}, sort_keys=True, default=str)
    m = _MATCHERS.get(key)
    if m is None:
        if len(_MATCHERS) > 32:
            _MATCHERS.clear()
        m = _MATCHERS[key] = Matcher(config_from_settings(settings))
    return m


def _engine(ctx: Any) -> Any:
    return getattr(getattr(ctx, "crm", None), "engine", None)


def match_stored(leads: Sequence[Any], matcher: Matcher, conn: Any, workspace: str, *, limit: int = 3) -> list[MatchCandidate]:
    """Candidates among stored leads for every lead of the batch."""
    keys = [matcher.keys(lead) for lead in leads]
    hits = store.lookup(conn, workspace, {k for ks in keys for k in ks})
    if not hits:
        return []
    big = {k for k, ids in hits.items() if len(ids) > matcher.config.max_block_size}
    wanted: dict[int, set[int]] = defaultdict(set)
    for i, ks in enumerate(keys):
        for k in ks:
            if k in hits and k not in big:
                wanted[i].update(hits[k])
    stored = store.load_leads(conn, workspace, {lid for ids in wanted.values() for lid in ids})
    prepared = {lid: matcher.prepare(lead) for lid, lead in stored.items()}
    out: list[MatchCandidate] = []
    for i, ids in wanted.items():
        if leads[i].id is not None:
            ids = ids - {leads[i].id}
        mine = matcher.prepare(leads[i])
        found = []
        for lid in ids:
            if lid not in prepared:
                continue  # merged away or another status: not a candidate
            o = matcher.compare(mine, prepared[lid])
            if o is not None:
                found.append(MatchCandidate(i, lid, o.score, o.action, o.rule, o.reasons))
        found.sort(key=lambda c: (c.action == "merge", c.score, -c.lead_id), reverse=True)
        out.extend(found[:limit])
    return out


def match_within(leads: Sequence[Any], matcher: Matcher) -> dict[int, tuple[int, Any]]:
    """For each lead, the earlier lead of the same batch it duplicates best: ``{i: (j, outcome)}`` with ``j < i``."""
    stats = candidate_pairs((matcher.keys(lead) for lead in leads), matcher.config.max_block_size)
    if not stats.pairs:
        return {}
    prepared: dict[int, tuple[str, ...]] = {}
    best: dict[int, tuple[int, Any]] = {}
    for j, i in sorted(stats.pairs):
        pi = prepared.get(i) or prepared.setdefault(i, matcher.prepare(leads[i]))
        pj = prepared.get(j) or prepared.setdefault(j, matcher.prepare(leads[j]))
        o = matcher.compare(pi, pj)
        if o is None:
            continue
        cur = best.get(i)
        if cur is None or (o.action == "merge", o.score) > (cur[1].action == "merge", cur[1].score):
            best[i] = (j, o)
    return best
