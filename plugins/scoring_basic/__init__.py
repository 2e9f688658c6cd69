"""scoring_basic: explainable rule-based lead scoring and grading, tuned per client in TOML.

Fit rules look at the lead's fields, engagement rules at the events in its
history (with per-event points and half-life decay); groups and the total
may be capped; grades and qualification thresholds follow from the score.
Every point comes back as a :class:`~corecrm.records.ScoreContribution`
carrying the rule, the reason and the ruleset version, and the
contributions sum exactly to the score.

This module only declares hooks; the rule engine, the recompute and diff
paths and the calibration report live in their own modules and are imported
when used, so ``corecrm --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from corecrm.hooks import hookimpl
from corecrm.records import Qualification, ScoreContribution, Setting
from corecrm.settings import thaw

from . import rules as _rules

if TYPE_CHECKING:
    from corecrm.context import HookContext
    from corecrm.models import Lead

    from .engine import Engine

#: The canonical name: entry point, ``[plugins.scoring_basic]`` key, ``plugin`` on records.
NAME = "scoring_basic"

_ENGINES: dict[str, Engine] = {}


def engine_for(settings: Mapping[str, Any]) -> Engine:
    """The compiled engine for these effective settings (cached by ruleset version)."""
    from .engine import Engine

    version = _rules.ruleset_version({k: thaw(settings.get(k)) for k in _rules.RULESET_KEYS})
    eng = _ENGINES.get(version)
    if eng is None:
        if len(_ENGINES) > 64:
            _ENGINES.clear()
        eng = _ENGINES[version] = Engine(_rules.compile_ruleset(settings))
    return eng


@hookimpl
def crm_plugin_settings() -> Iterable[Setting]:
    return [
        Setting(
            "rules",
            "list",
            default=[],
            description="Scoring rules: [[plugins.scoring_basic.rules]] tables with name, op, points, group (see docs/plugins/scoring_basic.md).",
            validate=_rules.validate_rules,
        ),
        Setting(
            "groups",
            "dict",
            default={},
            description="Caps per rule group: [plugins.scoring_basic.groups.<name>] max = …, min = ….",
            validate=_rules.validate_groups,
        ),
        Setting("max_score", "float", default=None, description="Cap on this plugin's total points (a cap:total contribution takes the excess)."),
        Setting("min_score", "float", default=None, description="Floor on this plugin's total points."),
        Setting(
            "grades",
            "dict",
            default={},
            description="Grade = minimum score, e.g. { A = 80, B = 50, C = 20, D = 0 }; below every minimum gets the lowest grade.",
            validate=_rules.validate_grades,
        ),
        Setting(
            "qualification",
            "dict",
            default={},
            description="Thresholds: mql, sql (promote) and nurture_below (qualified leads fall back to nurturing).",
            validate=_rules.validate_qualification,
        ),
        Setting(
            "free_mail_domains",
            "list",
            default=[],
            description="Extra free-mail domains for email_domain rules (a built-in list covers the big providers).",
            validate=_rules.validate_domains,
        ),
        Setting(
            "precision",
            "int",
            default=0,
            description="Decimal places points are counted in (0 = whole points: float sums are then exact).",
            validate=_rules.validate_precision,
        ),
    ]


@hookimpl
def crm_score_leads(leads: Sequence[Lead], ctx: HookContext, settings: Mapping[str, Any]) -> list[ScoreContribution] | None:
    """Fit and engagement points for each lead, caps included, with reasons and the ruleset version."""
    if not settings.get("rules"):
        return None  # an unconfigured scorer scores nothing (and leaves scores to other plugins)
    eng = engine_for(settings)
    return score_batch(eng, leads, ctx)


def score_batch(eng: Engine, leads: Sequence[Lead], ctx: HookContext) -> list[ScoreContribution]:
    version = eng.rs.version
    now = ctx.now
    engaged = bool(eng.rs.engagement)
    out: list[ScoreContribution] = []
    append = out.append
    for i, lead in enumerate(leads):
        events = ctx.events_for(lead) if engaged and lead.id is not None else ()
        hits = eng.hits(lead, events, now)
        if not hits:
            # An explicit zero: the score becomes 0 (not "untouched") and says why.
            append(ScoreContribution(i, "no_rule_matched", 0.0, "no rule matched", None, version, NAME))
            continue
        for h in hits:
            append(ScoreContribution(i, h.rule, eng.points(h), h.reason, h.group, version, NAME))
    return out


@hookimpl
def crm_qualify_leads(
    leads: Sequence[Lead], scores: Sequence[float | None], ctx: HookContext, settings: Mapping[str, Any]
) -> list[Qualification] | None:
    """A grade from the grade table and, past a threshold, a stage move (validated by the core)."""
    if not settings.get("grades") and not settings.get("qualification"):
        return None
    eng = engine_for(settings)
    out: list[Qualification] = []
    for i, (lead, score) in enumerate(zip(leads, scores)):
        if score is None:
            continue
        grade, why_grade = eng.grade(score)
        stage, why_stage = eng.stage(lead.stage, score)
        if grade is None and stage is None:
            continue
        reason = "; ".join(r for r in (f"grade {grade}: {why_grade}" if grade else "", why_stage) if r)
        out.append(Qualification(i, grade=grade, stage=stage.value if stage is not None else None, reason=reason, plugin=NAME))
    return out


@hookimpl
def crm_config_warnings(settings: Mapping[str, Any], workspace: str) -> list[str] | None:
    """Unreachable grades or thresholds, rules worth 0 points, caps on empty groups."""
    return _rules.ruleset_warnings(settings, f"plugins.{NAME} (workspace {workspace})") or None


@hookimpl
def crm_cli_commands() -> Iterable[Any]:
    from .cli import commands

    return commands()


@hookimpl
def crm_reports(settings: Mapping[str, Any]) -> Iterable[Any]:
    from .report import reports

    return reports()
