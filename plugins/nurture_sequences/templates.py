"""Safe template rendering: a Jinja2 sandbox, HTML autoescaped, a plain-text part always.

Lead fields come from strangers (a web form, an imported file): in the HTML
part they are escaped, and the sandbox keeps a template from reaching Python
internals (``{{ lead.__class__ }}`` fails). Undefined names fail loudly
(``StrictUndefined``) so a typo is caught by ``corecrm config check`` rather
than sent as an empty string.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

from corecrm.errors import ConfigError

#: Lead fields a template may use as ``{{ lead.<field> }}``.
LEAD_TEMPLATE_FIELDS: tuple[str, ...] = (
    "id", "first_name", "last_name", "full_name", "email", "phone", "company", "title", "country", "region", "city",
    "postal_code", "source", "campaign", "language", "timezone", "interests", "attributes", "stage", "owner", "team",
    "score", "grade",
)  # fmt: skip

class _SampleAttributes(dict):  # type: ignore[type-arg]
    """Industry data differs per deployment: at check time any ``lead.attributes.<key>`` exists."""

    def __missing__(self, key: str) -> str:
        return f"sample {key}"


#: A lead used to trial-render templates when the configuration is checked.
SAMPLE_LEAD: dict[str, Any] = {
    "id": 1, "first_name": "Ada", "last_name": "Lovelace", "full_name": "Ada Lovelace", "email": "ada@example.com",
    "phone": "+44 20 7946 0000", "company": "Analytical Engines Ltd", "title": "CTO", "country": "GB",
    "region": "GB-ENG", "city": "London", "postal_code": "EC1A 1BB", "source": "web", "campaign": "trial",
    "language": "en", "timezone": "Europe/London", "interests": ["trial"], "attributes": _SampleAttributes(), "stage": "nurturing",
    "owner": "sam", "team": "sales", "score": 42.0, "grade": "B",
}  # fmt: skip


@functools.lru_cache(maxsize=2)
def _env(autoescape: bool) -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(autoescape=autoescape, undefined=StrictUndefined, keep_trailing_newline=True)


@functools.lru_cache(maxsize=4096)
def _compile(source: str, autoescape: bool) -> Any:
    return _env(autoescape).from_string(source)


class TemplateError(Exception):
    """A template that does not parse or does not render; ``part`` says which one."""

    def __init__(self, part: str, message: str) -> None:
        self.part = part
        super().__init__(f"{part}: {message}")


def render_part(source: str, context: Mapping[str, Any], *, html: bool, part: str) -> str:
    from jinja2 import TemplateError as JinjaError

    try:
        return _compile(source, html).render(**context)
    except JinjaError as exc:
        where = f" (line {exc.lineno})" if getattr(exc, "lineno", None) else ""
        raise TemplateError(part, f"{type(exc).__name__}: {exc.message or exc}{where}") from None


def render_step(step: Any, context: Mapping[str, Any]) -> dict[str, str | None]:
    """Render a step's ``subject``, ``text`` and ``html`` parts (the subject is one line)."""
    subject = render_part(step.subject, context, html=False, part="subject") if step.subject else ""
    subject = " ".join(subject.split())
    text = render_part(step.text, context, html=False, part="text")
    html = render_part(step.html, context, html=True, part="html") if step.html else None
    return {"subject": subject, "text": text, "html": html}


def lead_context(lead: Mapping[str, Any]) -> dict[str, Any]:
    return {f: lead.get(f) for f in LEAD_TEMPLATE_FIELDS}


def check_sequences(sequences: Mapping[str, Any], key: str) -> None:
    """Compile and trial-render every step against :data:`SAMPLE_LEAD`; raise naming the part's key path."""
    for sname, seq in sequences.items():
        for step in seq.steps:
            ctx = build_context(SAMPLE_LEAD, seq, step, unsubscribe_url="https://example.com/unsubscribe/TOKEN")
            try:
                render_step(step, ctx)
            except TemplateError as exc:
                raise ConfigError(str(exc).split(": ", 1)[1], key=f"{key}.{sname}.steps[{step.index}].{exc.part}") from None


def build_context(lead: Mapping[str, Any], seq: Any, step: Any, *, unsubscribe_url: str | None) -> dict[str, Any]:
    return {
        "lead": lead_context(lead),
        "sequence": {"name": seq.name, "purpose": seq.purpose, "steps": len(seq.steps)},
        "step": {"name": step.name, "number": step.index + 1},
        "unsubscribe_url": unsubscribe_url or "",
    }


#: Stands in for the link when a confirmation template is trial-rendered.
SAMPLE_CONFIRM_URL = "https://example.com/confirm/SAMPLE-TOKEN"


def confirmation_context(lead: Mapping[str, Any], *, confirm_url: str, channel: str, purpose: str, address: str | None,
                         valid_until: str | None) -> dict[str, Any]:  # fmt: skip
    """What a double opt-in template sees: ``lead``, ``confirm_url``, ``channel``, ``purpose``, ``address``, ``valid_until``."""
    return {"lead": lead_context(lead), "confirm_url": confirm_url, "channel": channel, "purpose": purpose, "address": address or "",
            "valid_until": valid_until or ""}  # fmt: skip


def render_confirmation(subject: str, text: str, html: str | None, context: Mapping[str, Any]) -> dict[str, str | None]:
    return {
        "subject": " ".join(render_part(subject, context, html=False, part="subject").split()),
        "text": render_part(text, context, html=False, part="text"),
        "html": render_part(html, context, html=True, part="html") if html else None,
    }


def check_confirmation_part(source: str, key: str) -> None:
    """Trial-render one confirmation template; the text part must contain the link."""
    part = key.rsplit(".", 1)[-1].removeprefix("confirm_")
    ctx = confirmation_context(SAMPLE_LEAD, confirm_url=SAMPLE_CONFIRM_URL, channel="email", purpose="marketing", address=SAMPLE_LEAD["email"],
                               valid_until="2026-03-16T08:00:00+00:00")  # fmt: skip
    try:
        out = render_part(source, ctx, html=part == "html", part=part)
    except TemplateError as exc:
        raise ConfigError(str(exc).split(": ", 1)[1], key=key) from None
    if part == "text" and SAMPLE_CONFIRM_URL not in out:
        raise ConfigError("the confirmation text must contain the link: write {{ confirm_url }} in it", key=key)
