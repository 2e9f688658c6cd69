"""dedup: duplicate detection by blocking keys and fuzzy match rules.

* ``crm_match_leads``: every incoming batch is matched against the stored
  leads (a few set-based look-ups in the ``dedup_keys`` table) and against
  its own earlier leads; pairs above a rule's ``merge_at`` are merged by the
  core, the others flagged as possible duplicates.
* ``crm_leads_captured``: stored leads get their blocking keys indexed.
* ``corecrm dedup scan`` finds duplicates already stored (a self-join on the
  key table); ``corecrm leads merge A B`` / ``leads unmerge ID`` merge by hand
  and undo, with per-field provenance and without carrying consent.

Reference: ``docs/plugins/dedup.md``. rapidfuzz/jellyfish are imported on
first use only.
"""

from __future__ import annotations

import weakref
from typing import Any, Mapping, Sequence

from corecrm.hooks import hookimpl
from corecrm.records import Setting

#: Stored leads a batch merged into, per CRM and workspace: their keys are
#: rebuilt from the committed rows by the next batch (or the observer), since
#: a merge may have filled fields that give them new keys.
_PENDING: "weakref.WeakKeyDictionary[Any, dict[str, set[int]]]" = weakref.WeakKeyDictionary()
#: Key in ``ctx.extra`` for the batch's Lead objects, indexed by the observer once stored.
_BATCH = "dedup_batch"


def _reindex_pending(crm: Any, workspace: str, matcher: Any) -> None:
    from corecrm_plugins.dedup import store

    ids = _PENDING.get(crm, {}).pop(workspace, None)
    if not ids:
        return
    with crm.engine.begin() as conn:
        leads = store.load_leads(conn, workspace, ids)
        store.index_leads(conn, workspace, [(i, matcher.keys(lead)) for i, lead in leads.items()], replace=True)


def _validate_keys(value: Any, key: str) -> None:
    from corecrm_plugins.dedup.rules import validate_keys

    validate_keys(value, key)


def _validate_rules(value: Any, key: str) -> None:
    from corecrm_plugins.dedup.rules import validate_rules

    validate_rules(value, key)


def _positive(value: Any, key: str) -> None:
    from corecrm.errors import ConfigError

    if value < 1:
        raise ConfigError(f"expected a whole number of at least 1, got {value!r}", key=key)


@hookimpl
def crm_plugin_settings() -> list[Setting]:
    from corecrm_plugins.dedup.rules import DEFAULT_KEYS, DEFAULT_RULES

    return [
        Setting("blocking_keys", "list", list(DEFAULT_KEYS), "blocking keys: built-in names or {name, parts} tables", validate=_validate_keys),
        Setting("rules", "list", [dict(r) for r in DEFAULT_RULES], "match rules ([[plugins.dedup.rules]])", validate=_validate_rules),
        Setting("max_block_size", "int", 25, "a key shared by more leads than this is too common to block on", validate=_positive),
        Setting("max_compare", "int", 10, "stored leads compared per incoming lead at most (those sharing the most keys)", validate=_positive),
        Setting("within_batch", "bool", True, "also match the leads of one batch (one import) against each other"),
        Setting("auto_merge", "bool", True, "merge pairs above a rule's merge_at (off: flag them only)"),
        Setting("max_candidates", "int", 3, "candidates reported per lead", validate=_positive),
    ]


@hookimpl
def crm_db_schema() -> list[Any]:
    from corecrm_plugins.dedup.store import metadata

    return [metadata]


@hookimpl
def crm_match_leads(leads: Sequence[Any], ctx: Any, settings: Mapping[str, Any]) -> list[Any]:
    from corecrm.records import MatchCandidate

    from corecrm_plugins.dedup.match import BatchView, match_stored, match_within, matcher_for

    matcher = matcher_for(settings)
    view = BatchView(leads, matcher)
    out: list[Any] = []
    crm = getattr(ctx, "crm", None)
    engine = getattr(crm, "engine", None)
    if engine is not None:
        _reindex_pending(crm, ctx.workspace, matcher)
        with engine.connect() as conn:
            out = match_stored(view, conn, ctx.workspace, limit=int(settings.get("max_candidates", 3)), max_compare=int(settings.get("max_compare", 10)))
    if settings.get("within_batch", True) and len(leads) > 1:
        for i, (j, o) in sorted(match_within(view).items()):
            out.append(MatchCandidate(i, None, o.score, o.action, o.rule, o.reasons, batch_index=j))
    if not settings.get("auto_merge", True):
        for c in out:
            c.action = "flag"
    if crm is not None and getattr(ctx, "mode", "") != "simulate":
        merging = {c.lead_id for c in out if c.action == "merge" and c.lead_id is not None}
        if merging:
            _PENDING.setdefault(crm, {}).setdefault(ctx.workspace, set()).update(merging)
        # The same Lead objects get their ids when stored: the observer indexes them without a query.
        ctx.extra.setdefault(_BATCH, []).extend(leads)
    return out


@hookimpl
def crm_leads_captured(events: Sequence[Any], ctx: Any, settings: Mapping[str, Any]) -> None:
    """Index the blocking keys of the leads just stored (and of stored leads a batch merged into)."""
    from corecrm_plugins.dedup import store
    from corecrm_plugins.dedup.match import matcher_for

    new_ids = [e.lead_id for e in events if e.lead_id is not None]
    matcher = matcher_for(settings)
    _reindex_pending(ctx.crm, ctx.workspace, matcher)
    if not new_ids:
        return
    seen: dict[int, Any] = {}
    folded: set[int] = set()  # stored leads a later lead of the batch was merged into: read back
    for lead in ctx.extra.pop(_BATCH, ()):
        if lead.id is not None:
            if lead.id in seen:
                folded.add(lead.id)
            seen.setdefault(lead.id, lead)
    with ctx.crm.engine.begin() as conn:
        missing = [i for i in new_ids if i not in seen or i in folded]
        if missing:  # leads this plugin did not see at match time (another path): read them back
            seen.update(store.load_leads(conn, ctx.workspace, missing))
        store.index_leads(conn, ctx.workspace, [(i, matcher.keys(seen[i])) for i in new_ids if i in seen], replace=False)


@hookimpl
def crm_cli_commands() -> list[Any]:
    from corecrm.records import CliCommand

    from corecrm_plugins.dedup.cli import merge_command, scan_command, unmerge_command

    return [
        CliCommand(scan_command, group="dedup", help="Find and merge duplicate leads."),
        CliCommand(merge_command, group="leads"),
        CliCommand(unmerge_command, group="leads"),
    ]
