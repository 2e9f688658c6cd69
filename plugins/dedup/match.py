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


class BatchView:
    """A batch's blocking keys and prepared fields, each computed once and shared by both look-ups."""

    def __init__(self, leads: Sequence[Any], matcher: Matcher) -> None:
        self.leads = leads
        self.matcher = matcher
        self.keys = [matcher.keys(lead) for lead in leads]
        self._prepared: dict[int, tuple[str, ...]] = {}

    def prepared(self, i: int) -> tuple[str, ...]:
        p = self._prepared.get(i)
        if p is None:
            p = self._prepared[i] = self.matcher.prepare(self.leads[i])
        return p


def match_stored(view: BatchView, conn: Any, workspace: str, *, limit: int = 3, max_compare: int = 10) -> list[MatchCandidate]:
    """Candidates among stored leads for every lead of the batch: a few set-based queries in all."""
    matcher = view.matcher
    leads = view.leads
    hits = store.lookup(conn, workspace, {k for ks in view.keys for k in ks})
    if not hits:
        return []
    big = {k for k, ids in hits.items() if len(ids) > matcher.config.max_block_size}
    wanted: dict[int, list[int]] = {}
    for i, ks in enumerate(view.keys):
        shared: dict[int, int] = defaultdict(int)
        for k in ks:
            if k in hits and k not in big:
                for lid in hits[k]:
                    shared[lid] += 1
        own = leads[i].id
        if own is not None:
            shared.pop(own, None)
        if shared:
            # The stored leads sharing the most keys first; at most max_compare of them.
            wanted[i] = sorted(shared, key=lambda lid: (-shared[lid], lid))[:max_compare]
    rows = store.load_for_matching(conn, workspace, {lid for ids in wanted.values() for lid in ids}, matcher.fields)
    prepared = {lid: matcher.prepare(row) for lid, row in rows.items()}
    out: list[MatchCandidate] = []
    for i, ids in wanted.items():
        mine = view.prepared(i)
        found = []
        for lid in ids:
            theirs = prepared.get(lid)
            if theirs is None:
                continue  # merged away or another status: not a candidate
            o = matcher.compare(mine, theirs)
            if o is not None:
                found.append(MatchCandidate(i, lid, o.score, o.action, o.rule, o.reasons))
        found.sort(key=lambda c: (c.action == "merge", c.score, -c.lead_id), reverse=True)
        out.extend(found[:limit])
    return out


def match_within(view: BatchView) -> dict[int, tuple[int, Any]]:
    """For each lead, the earlier lead of the same batch it duplicates best: ``{i: (j, outcome)}`` with ``j < i``."""
    matcher = view.matcher
    stats = candidate_pairs(view.keys, matcher.config.max_block_size)
    best: dict[int, tuple[int, Any]] = {}
    for j, i in sorted(stats.pairs):
        o = matcher.compare(view.prepared(i), view.prepared(j))
        if o is None:
            continue
        cur = best.get(i)
        if cur is None or (o.action == "merge", o.score) > (cur[1].action == "merge", cur[1].score):
            best[i] = (j, o)
    return best
