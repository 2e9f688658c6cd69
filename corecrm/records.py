"""Typed records that hooks return: one record type per kind of result.

Every record has a ``plugin`` field. Plugins may leave it empty: the core calls
each implementation itself (``corecrm.hookrunner``) and stamps the producing
plugin's canonical name on every record it returns, so provenance never
depends on a plugin's good manners.

Records that concern one lead of a batch carry ``index``: the lead's position
in the ``leads`` sequence the hook was given.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Mapping, Sequence

import attrs

if TYPE_CHECKING:
    import click

    from corecrm.models import Lead

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def normalise_name(name: str) -> str:
    """Registered names (formats, reports, channels…) are lower-case snake_case."""
    norm = name.strip().lower().replace("-", "_").replace(" ", "_")
    if not _NAME_RE.match(norm):
        raise ValueError(f"invalid name {name!r}: use letters, digits and underscores, starting with a letter")
    return norm


# --------------------------------------------------------------------------- acquisition


@attrs.define(slots=True, eq=False)
class RawCapture:
    """A payload as it arrived, before any parsing. Stored before it is processed."""

    payload: bytes
    #: Where it came from: a file name, ``stdin``, ``imap:<source>/<uid>``, ``http:<form>``…
    origin: str = ""
    #: A hint from the sender (file suffix, Content-Type, the capture format asked for).
    content_type: str | None = None
    #: Free metadata the source wants kept (IMAP uid, HTTP headers, import row number…).
    meta: dict[str, Any] = attrs.field(factory=dict)
    #: Format to use, skipping sniffing (e.g. ``corecrm capture --format adf``).
    format: str | None = None
    id: int | None = None
    content_hash: str | None = None


@attrs.define(slots=True, eq=False)
class ParsedCapture:
    """What a capture format made of a payload.

    ``leads`` may be empty when ``skipped`` says why (a bounce, an auto-reply):
    such captures are stored with the reason, never silently dropped.
    """

    leads: list[Lead] = attrs.field(factory=list)
    skipped: str | None = None
    meta: dict[str, Any] = attrs.field(factory=dict)


@attrs.define(slots=True, eq=False)
class CaptureFormat:
    """A parser for one kind of raw payload (JSON, email, ADF, CSV…).

    ``sniff`` returns a confidence from 0 (not mine) to 100 (certainly mine);
    the core picks the highest, ties broken by name so the choice never depends
    on plugin load order. ``parse`` raises on input it cannot read: the capture
    is then quarantined with the error and this plugin's name.
    """

    name: str
    sniff: Callable[[RawCapture], int]
    parse: Callable[[RawCapture], ParsedCapture]
    description: str = ""
    plugin: str = ""

    def __attrs_post_init__(self) -> None:
        self.name = normalise_name(self.name)


@attrs.define(slots=True, eq=False)
class CaptureSource:
    """A pollable source of raw captures (an IMAP mailbox, a vendor feed…).

    ``poll(crm, workspace)`` fetches what is new, captures it through
    ``crm.intake`` and returns the number of captures it stored.
    """

    name: str
    kind: str
    poll: Callable[..., int]
    description: str = ""
    plugin: str = ""


@attrs.define(slots=True, eq=False)
class ImportFormat:
    """A tabular import format (CSV, Excel) for ``corecrm import``.

    ``read(path, options)`` yields rows as dicts of column name to string value.
    """

    name: str
    extensions: tuple[str, ...]
    read: Callable[..., Iterable[Mapping[str, Any]]]
    description: str = ""
    plugin: str = ""


# --------------------------------------------------------------------------- filtering


@attrs.define(slots=True, eq=False)
class FieldUpdate:
    """Set one field of lead ``index`` to ``value``; the old value is kept in the event."""

    index: int
    field: str
    value: Any
    reason: str = ""
    plugin: str = ""


@attrs.define(slots=True, eq=False)
class Finding:
    """Something a verifier noticed, recorded on the lead without changing it."""

    index: int
    code: str
    message: str
    severity: Literal["info", "warning", "error"] = "warning"
    field: str | None = None
    suggestion: Any = None
    plugin: str = ""


@attrs.define(slots=True, eq=False)
class ScreenVerdict:
    """A fraud-screening decision. ``review`` quarantines the lead for a human; ``reject`` drops it (recorded)."""

    index: int
    verdict: Literal["accept", "review", "reject"]
    reasons: list[str] = attrs.field(factory=list)
    plugin: str = ""


@attrs.define(slots=True, eq=False)
class MatchCandidate:
    """An existing lead that lead ``index`` may duplicate.

    ``action="merge"`` folds the new lead into ``lead_id`` (highest score wins);
    ``"flag"`` stores it and records the possible duplicate.
    """

    index: int
    lead_id: int | None
    score: float
    action: Literal["merge", "flag"] = "flag"
    rule: str = ""
    reasons: list[str] = attrs.field(factory=list)
    #: A duplicate of another lead *in the same batch* (an earlier position), when ``lead_id`` is None.
    batch_index: int | None = None
    plugin: str = ""


# --------------------------------------------------------------------------- scoring


@attrs.define(slots=True, eq=False)
class ScoreContribution:
    """Points one rule gave lead ``index``. A lead's score is the exact sum of its contributions."""

    index: int
    rule: str
    points: float
    reason: str = ""
    group: str | None = None
    ruleset: str | None = None
    plugin: str = ""


@attrs.define(slots=True, eq=False)
class Qualification:
    """A grade and/or a stage a scorer wants lead ``index`` to have, with the reason.

    The stage move goes through the core's validated transitions; an invalid one
    is recorded as refused, not applied.
    """

    index: int
    grade: str | None = None
    stage: str | None = None
    reason: str = ""
    plugin: str = ""


# --------------------------------------------------------------------------- distribution


@attrs.define(slots=True, eq=False)
class Assignment:
    """Where lead ``index`` goes: an owner (push), or a team/queue to be claimed from (pull).

    ``explanation`` holds the matching rule, the candidates considered and why
    each was skipped, so ``corecrm explain`` can answer "why this rep".
    """

    index: int
    owner: str | None = None
    team: str | None = None
    queue: str | None = None
    rule: str | None = None
    reason: str = ""
    explanation: dict[str, Any] = attrs.field(factory=dict)
    plugin: str = ""


# --------------------------------------------------------------------------- nurturing


@attrs.define(slots=True, eq=False)
class MessageChannel:
    """A way to reach a lead (email, SMS, a task for the owner…)."""

    name: str
    send: Callable[..., Any]
    description: str = ""
    plugin: str = ""

    def __attrs_post_init__(self) -> None:
        self.name = normalise_name(self.name)


@attrs.define(slots=True, eq=False)
class Enrolment:
    """Enrol lead ``index`` (or stored ``lead_id``) in nurture sequence ``sequence``."""

    index: int
    sequence: str
    reason: str = ""
    lead_id: int | None = None
    plugin: str = ""


# --------------------------------------------------------------------------- analytics


@attrs.define(slots=True, eq=False)
class ReportTable:
    """A report's result: columns, rows and notes (e.g. "no data in this period")."""

    title: str
    columns: list[str]
    rows: list[list[Any]]
    notes: list[str] = attrs.field(factory=list)
    data: dict[str, Any] = attrs.field(factory=dict)  #: extra machine-readable results for --json


@attrs.define(slots=True, eq=False)
class Report:
    """A named report for ``corecrm report NAME``.

    ``run(crm, workspace, params)`` returns a :class:`ReportTable`; ``chart``
    (optional) writes an SVG or PNG of a result to a path.
    """

    name: str
    title: str
    run: Callable[..., ReportTable]
    description: str = ""
    chart: Callable[..., None] | None = None
    params: Sequence[Any] = ()  #: click.Option objects the report accepts
    plugin: str = ""

    def __attrs_post_init__(self) -> None:
        self.name = normalise_name(self.name)


@attrs.define(slots=True, eq=False)
class CustomerValue:
    """A customer's value as a plugin estimates it (e.g. predicted CLV)."""

    customer_id: int
    value: float
    kind: str = "clv"
    detail: dict[str, Any] = attrs.field(factory=dict)
    plugin: str = ""


# --------------------------------------------------------------------------- extension


@attrs.define(slots=True, eq=False)
class CliCommand:
    """A click command added under ``group`` (``None`` = top level, else e.g. ``"mail"``)."""

    command: click.Command
    group: str | None = None
    help: str | None = None  #: help text for the group, if the plugin creates it
    plugin: str = ""


#: Types a setting may declare. ``list``/``dict`` settings take a ``validate`` callable for their items.
SettingType = Literal["str", "int", "float", "bool", "list", "dict", "any"]


@attrs.define(slots=True, eq=False)
class Setting:
    """One key a plugin accepts under ``[plugins.<name>]``.

    ``validate(value, key_path)`` may raise :class:`corecrm.errors.ConfigError`
    naming a deeper key (``plugins.scoring_basic.rules[3].op``).
    """

    key: str
    type: SettingType
    default: Any = None
    description: str = ""
    required: bool = False
    choices: Sequence[Any] | None = None
    validate: Callable[[Any, str], Any] | None = None
    plugin: str = ""
