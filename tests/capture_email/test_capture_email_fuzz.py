"""Property-based fuzzing of the parsers: random and mutated messages never crash them.

The only exceptions allowed out of a parser are its own declared errors
(:class:`EmailParseError`, :class:`AdfError`), which the core turns into a
quarantined capture with the message. Anything else (``IndexError`` from a
header, ``UnicodeDecodeError`` from a charset, a recursion error…) is a bug.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corecrm.models import Lead
from corecrm.records import ParsedCapture, RawCapture
from corecrm_plugins.capture_email.adf import AdfError, parse_adf
from corecrm_plugins.capture_email.config import EmailSettings
from corecrm_plugins.capture_email.extract import EmailParseError
from corecrm_plugins.capture_email.formats import make_adf_format, make_email_format
from corecrm_plugins.capture_email.htmltext import html_table_rows, html_to_text

DATA = Path(__file__).resolve().parent.parent / "data" / "capture_email"
CORPUS = [p.read_bytes() for p in sorted(DATA.iterdir()) if p.suffix in (".eml", ".xml")]
CFG = EmailSettings.from_settings({"max_attachment_bytes": 2000})
EMAIL = make_email_format(CFG)
ADF = make_adf_format(CFG)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _check(fmt, payload: bytes) -> None:
    raw = RawCapture(payload, origin="fuzz")
    try:
        conf = fmt.sniff(raw)
    except Exception as exc:  # pragma: no cover - a failure here is the bug we look for
        raise AssertionError(f"sniff raised {type(exc).__name__}: {exc}") from exc
    assert 0 <= conf <= 100
    try:
        parsed = fmt.parse(raw)
    except (EmailParseError, AdfError):
        return
    assert isinstance(parsed, ParsedCapture)
    assert parsed.leads or parsed.skipped
    for lead in parsed.leads:
        assert isinstance(lead, Lead)
        assert lead.country is None or len(lead.country) == 2
        assert lead.postal_code is None or len(lead.postal_code) <= 16
        assert lead.region is None or len(lead.region) <= 8


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A corpus file with random flips, cuts, duplications and insertions."""
    data = bytearray(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "dup", "truncate"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] = draw(st.integers(0, 255))
        elif op == "cut":
            j = draw(st.integers(i, min(len(data), i + 200)))
            del data[i:j]
        elif op == "insert":
            junk = draw(
                st.sampled_from(
                    [b"\r\n", b"\n\n", b"=?utf-8?B?", b"=?x-bad?Q?=FF?=", b"--", b"<adf>", b"</adf>", b"<![CDATA[", b"&#0;", b"\x00",
                     b"Content-Type: multipart/mixed; boundary=\"\"\r\n", b"Content-Transfer-Encoding: base64\r\n", b"charset=klingon",
                     b"<!DOCTYPE adf [<!ENTITY x \"y\">]>", b"<script>", b"\xff\xfe", b"Date: Feb 30 2026 25:99\r\n"]
                )
            )
            data[i:i] = junk
        elif op == "dup":
            j = draw(st.integers(i, min(len(data), i + 300)))
            data[i:i] = data[i:j]
        else:
            del data[i:]
    return bytes(data)


_header_names = st.sampled_from(
    ["From", "To", "Reply-To", "Subject", "Date", "Message-ID", "Content-Type", "Content-Transfer-Encoding", "Return-Path", "Auto-Submitted", "Precedence", "Cc", "X-Autoreply"]
)
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)


@st.composite
def synthetic(draw: st.DrawFn) -> bytes:
    """A message built from random headers and a random (possibly multipart) body."""
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        name = draw(_header_names)
        value = draw(_text).replace("\r", " ").replace("\n", " ")
        lines.append(f"{name}: {value}")
    body_kind = draw(st.sampled_from(["plain", "html", "multipart", "kv"]))
    charset = draw(st.sampled_from(["utf-8", "iso-8859-1", "klingon", "", "utf-16"]))
    if body_kind == "multipart":
        lines.append('Content-Type: multipart/mixed; boundary="ZZ"')
        parts = []
        for _ in range(draw(st.integers(0, 3))):
            ctype = draw(st.sampled_from(["text/plain", "text/html", "application/xml", "application/zip", "message/rfc822", "multipart/alternative"]))
            parts.append(f"--ZZ\r\nContent-Type: {ctype}; charset={charset}\r\n\r\n{draw(_text)}")
        body = "\r\n".join(parts) + ("\r\n--ZZ--" if draw(st.booleans()) else "")
    elif body_kind == "html":
        lines.append(f"Content-Type: text/html; charset={charset}")
        body = "<table>" + "".join(f"<tr><td>{draw(_text)}</td><td>{draw(_text)}</td></tr>" for _ in range(draw(st.integers(0, 4)))) + draw(_text)
    elif body_kind == "kv":
        labels = st.sampled_from(["Name", "E-mail", "Phone", "Vorname", "Country", "Message", "Interested in", "PLZ", draw(_text)])
        body = "\n".join(f"{draw(labels)}: {draw(_text)}" for _ in range(draw(st.integers(0, 6))))
    else:
        body = draw(_text)
    raw = "\r\n".join(lines) + "\r\n\r\n" + body
    enc = draw(st.sampled_from(["utf-8", "latin-1"]))
    return raw.encode(enc, "replace")


@FUZZ
@given(st.binary(max_size=3000))
def test_random_bytes_never_crash(payload: bytes) -> None:
    _check(EMAIL, payload)
    _check(ADF, payload)


@FUZZ
@given(mutated())
def test_mutated_corpus_never_crashes(payload: bytes) -> None:
    _check(EMAIL, payload)
    _check(ADF, payload)


@FUZZ
@given(synthetic())
def test_synthetic_messages_never_crash(payload: bytes) -> None:
    _check(EMAIL, payload)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=500))
def test_html_helpers_never_crash(html: str) -> None:
    assert isinstance(html_to_text(html), str)
    assert isinstance(html_table_rows(html), list)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["<adf>", "</adf>", "<prospect>", "</prospect>", "<customer>", "</customer>", "<contact>", "</contact>",
                                 "<name part=\"full\">", "</name>", "<phone>", "</phone>", "<vehicle>", "</vehicle>", "<year>", "</year>", "x", "&amp;", "<x/>"]), max_size=30))
def test_adf_token_soup_never_crashes(tokens: list[str]) -> None:
    try:
        leads = parse_adf("".join(tokens))
    except AdfError:
        return
    assert leads
