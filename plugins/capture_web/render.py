"""The generated HTML form: accessible, embeddable, and working without JavaScript.

Every input has a ``<label for>``; required inputs carry ``required`` and
``aria-required``; the error summary (after a 422) is a ``role="alert"``
region linked to the field with ``aria-invalid`` and ``aria-describedby``.
The honeypot sits in a visually hidden block, out of the tab order and
hidden from assistive technology, so only bots fill it. The page has no
script at all: it posts to ``/capture/{form}`` and the server redirects.
"""

from __future__ import annotations

from html import escape

from corecrm_plugins.capture_web.forms import FormDef

_INPUT_TYPES = {"email": "email", "phone": "tel", "postal_code": "text"}
_AUTOCOMPLETE = {
    "first_name": "given-name",
    "last_name": "family-name",
    "email": "email",
    "phone": "tel",
    "company": "organization",
    "title": "organization-title",
    "country": "country",
    "city": "address-level2",
    "postal_code": "postal-code",
}

_CSS = """
.cw-form{font-family:system-ui,sans-serif;max-width:32rem;margin:1rem auto;padding:1rem}
.cw-form h1{font-size:1.4rem}
.cw-field{margin:0 0 .9rem}
.cw-field label{display:block;font-weight:600;margin-bottom:.25rem}
.cw-field input,.cw-field textarea{width:100%;box-sizing:border-box;padding:.5rem;font:inherit;border:1px solid #555;border-radius:4px}
.cw-field input:focus,.cw-field textarea:focus,.cw-consent input:focus,.cw-form button:focus{outline:3px solid #1a73e8;outline-offset:2px}
.cw-req{color:#b00020}
.cw-consent{display:flex;gap:.5rem;align-items:flex-start;margin:0 0 1rem}
.cw-consent label{font-weight:normal}
.cw-form button{padding:.6rem 1.4rem;font:inherit;font-weight:600;background:#1a4fa0;color:#fff;border:0;border-radius:4px}
.cw-errors{border:2px solid #b00020;padding:.5rem 1rem;margin-bottom:1rem}
.cw-hp,.cw-sr{position:absolute!important;left:-10000px!important;width:1px;height:1px;overflow:hidden}
"""

HONEYPOT = "_cw_hp"
TOKEN = "_cw_token"
CONSENT = "_cw_consent"


def render_form(form: FormDef, *, action: str, token: str, error: tuple[str, str] | None = None, values: dict[str, str] | None = None, standalone: bool = True) -> str:
    """The form as an HTML page (``standalone``) or a fragment to paste into a site."""
    values = values or {}
    parts: list[str] = []
    parts.append(f'<form class="cw-form" method="post" action="{escape(action)}" accept-charset="utf-8" aria-labelledby="cw-title-{escape(form.name)}">')
    parts.append(f"<h1 id=\"cw-title-{escape(form.name)}\">{escape(form.title)}</h1>")
    if error:
        field, message = error
        parts.append(
            f'<div class="cw-errors" role="alert" id="cw-errors" tabindex="-1"><p>There is a problem: '
            f'<a href="#cw-{escape(field)}">{escape(message)}</a></p></div>'
        )
    parts.append('<p>Fields marked <span class="cw-req" aria-hidden="true">*</span><span class="cw-sr"> (a star)</span> are required.</p>')
    for name, target in form.fields.items():
        fid = f"cw-{name}"
        req = name in form.required
        label = escape(form.label(name))
        star = ' <span class="cw-req" aria-hidden="true">*</span>' if req else ""
        attrs = [f'id="{fid}"', f'name="{escape(name)}"']
        if req:
            attrs += ["required", 'aria-required="true"']
        ac = _AUTOCOMPLETE.get(target)
        if ac:
            attrs.append(f'autocomplete="{ac}"')
        if error and error[0] == name:
            attrs += ['aria-invalid="true"', 'aria-describedby="cw-errors"']
        value = escape(values.get(name, ""))
        if target == "note" or target.startswith("attributes.message"):
            control = f"<textarea {' '.join(attrs)} rows=\"5\">{value}</textarea>"
        else:
            typ = _INPUT_TYPES.get(target, "text")
            control = f'<input type="{typ}" {" ".join(attrs)} value="{value}">'
        parts.append(f'<div class="cw-field"><label for="{fid}">{label}{star}</label>{control}</div>')
    if form.consent is not None:
        req = ' required aria-required="true"' if form.consent.required else ""
        parts.append(
            f'<div class="cw-consent"><input type="checkbox" id="cw-consent" name="{CONSENT}" value="yes"{req}>'
            f'<label for="cw-consent">{escape(form.consent.text)}</label></div>'
        )
    # Honeypot: visually hidden, out of the tab order, hidden from screen readers.
    parts.append(
        f'<div class="cw-hp" aria-hidden="true"><label for="cw-hp-{escape(form.name)}">Leave this field empty</label>'
        f'<input type="text" id="cw-hp-{escape(form.name)}" name="{HONEYPOT}" tabindex="-1" autocomplete="off" value=""></div>'
    )
    parts.append(f'<input type="hidden" name="{TOKEN}" value="{escape(token)}">')
    parts.append(f'<button type="submit">{escape(form.submit_label)}</button>')
    parts.append("</form>")
    body = "\n".join(parts)
    if not standalone:
        return f"<style>{_CSS}</style>\n{body}"
    return page(form.title, body)


def page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def thanks(form: FormDef, capture_id: int | None) -> str:
    ref = f"<p>Your reference: <strong>{capture_id}</strong></p>" if capture_id is not None else ""
    return page(form.title, f'<div class="cw-form" role="status"><h1>Thank you</h1><p>We received your details.</p>{ref}</div>')
