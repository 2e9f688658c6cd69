"""The e-mail and ADF parsers on the public corpora and the synthetic edge cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from corecrm.errors import ConfigError
from corecrm.records import RawCapture
from corecrm_plugins.capture_email.adf import AdfError, parse_adf
from corecrm_plugins.capture_email.config import EmailSettings, declared_settings, validate_profiles, validate_sources
from corecrm_plugins.capture_email.extract import EmailParseError, parse_email, sniff_email
from corecrm_plugins.capture_email.fields import key_values, split_name, BUILTIN_LABELS
from corecrm_plugins.capture_email.formats import make_adf_format, make_email_format
from corecrm_plugins.capture_email.htmltext import html_to_text

DATA = Path(__file__).resolve().parent.parent / "data" / "capture_email"


def load(name: str) -> bytes:
    return (DATA / name).read_bytes()


@pytest.fixture()
def cfg() -> EmailSettings:
    return EmailSettings.from_settings({})


# --------------------------------------------------------------------------- public corpora


def test_odoo_customer_request_becomes_lead_from_sender(cfg: EmailSettings) -> None:
    parsed = parse_email(load("odoo_crm_customer_request.eml"), cfg)
    assert parsed.skipped is None
    [lead] = parsed.leads
    assert (lead.first_name, lead.last_name) == ("John", "Right")
    assert lead.email == "info@customer.com"
    # The ISO-8859-1 8bit body is decoded, and kept as the first note.
    assert "Bonjour l'équipe de vente," in lead.note
    assert "S'il vous plaît fournir votre cotation" in lead.note
    assert lead.attributes["email"]["subject"] == "Fournir votre devis avec le meilleur prix."
    assert lead.attributes["email"]["message_id"] == "<4EA4F95D.904@customer.com>"
    assert parsed.meta["extractor"] == "sender"


def test_bounce_creates_no_lead_and_says_why(cfg: EmailSettings) -> None:
    parsed = parse_email(load("cpython_msg_16_bounce_dsn.eml"), cfg)
    assert parsed.leads == []
    assert parsed.skipped.startswith("bounce: multipart/report")


@pytest.mark.parametrize(
    "name",
    ["sendadf_minimal_compact.adf.xml", "sendadf_minimal_pretty.adf.xml", "synthetic_spec_style_header_not_wellformed.adf.xml"],
)
def test_adf_samples_become_leads_with_vehicle(name: str) -> None:
    [lead] = parse_adf(load(name))
    assert (lead.first_name, lead.last_name) == ("John", "Doe")
    assert lead.phone == "393-999-3922"
    vehicle = lead.attributes["vehicle"]
    assert (vehicle["year"], vehicle["make"], vehicle["model"]) == ("1999", "Chevrolet", "Blazer")
    assert lead.attributes["vendor"]["name"] == "Acura of Bellevue"
    assert lead.interests == ["1999 Chevrolet Blazer"]
    assert lead.source == "adf"


def test_spec_prolog_is_not_wellformed_but_is_read() -> None:
    import xml.etree.ElementTree as ET

    raw = load("synthetic_spec_style_header_not_wellformed.adf.xml")
    with pytest.raises(ET.ParseError):
        ET.fromstring(raw)
    assert parse_adf(raw)[0].attributes["requestdate"] == "2000-03-30T15:30:20-08:00"


def test_adf_capture_format_sniffs_and_parses(cfg: EmailSettings) -> None:
    fmt = make_adf_format(cfg)
    raw = RawCapture(load("sendadf_minimal_pretty.adf.xml"), origin="lead.adf.xml")
    assert fmt.sniff(raw) == 95
    assert make_email_format(cfg).sniff(raw) == 0
    parsed = fmt.parse(raw)
    assert parsed.leads[0].attributes["vehicle"]["make"] == "Chevrolet"


# --------------------------------------------------------------------------- lead shapes


def test_contact_form_7_lead_comes_from_reply_to_and_body(cfg: EmailSettings) -> None:
    [lead] = parse_email(load("cf7_wordpress.synthetic.eml"), cfg).leads
    assert (lead.first_name, lead.last_name, lead.email) == ("Jane", "Doe", "jane.doe@example.net")
    assert lead.phone == "+44 20 7946 0958"
    assert lead.company == "Doe & Daughters Ltd"
    assert lead.interests == ["Office chairs", "Standing desks"]
    assert lead.note.startswith("Hello, we need a quote for 40 chairs.")
    assert "contact form" not in lead.note  # the signature is cut
    assert lead.attributes["subject"] == "Quote for 40 chairs"


def test_form_mailer_without_reply_to_takes_address_from_body(cfg: EmailSettings) -> None:
    raw = (
        b"From: noreply@forms.example.com\r\nTo: sales@crm.example.org\r\nSubject: form\r\nMessage-ID: <f1@x.example>\r\n\r\n"
        b"Someone wrote from kim@example.org about widgets.\r\n"
    )
    [lead] = parse_email(raw, cfg).leads
    assert lead.email == "kim@example.org"
    assert lead.first_name is None


def test_german_labels_quoted_printable(cfg: EmailSettings) -> None:
    [lead] = parse_email(load("german_form.synthetic.eml"), cfg).leads
    assert (lead.first_name, lead.last_name) == ("Jürgen", "Müller")
    assert lead.email == "j.mueller@example.de"
    assert (lead.phone, lead.company, lead.city, lead.postal_code) == ("030 1234567", "Müller Maschinenbau GmbH", "Berlin", "10115")
    assert lead.note.startswith("Bitte senden Sie mir ein Angebot")


def test_html_table_scripts_are_dropped(cfg: EmailSettings) -> None:
    parsed = parse_email(load("html_table.synthetic.eml"), cfg)
    [lead] = parsed.leads
    assert (lead.first_name, lead.last_name, lead.email, lead.country) == ("Ana", "Silva", "ana.silva@example.pt", "PT")
    assert lead.phone == "+351 21 000 0000"
    text = repr(lead.attributes) + repr(lead.note)
    assert "document.cookie" not in text and "alert(1)" not in text and "alert(3)" not in text
    # Escaped markup in a value is kept as inert text, never turned into a tag.
    assert lead.attributes["form"]["Budget"] == "<script>alert(2)</script> 5000 EUR"


def test_first_and_last_name_lines(cfg: EmailSettings) -> None:
    [lead] = parse_email(load("realtor_names.synthetic.eml"), cfg).leads
    assert (lead.first_name, lead.last_name, lead.email) == ("Priya", "Patel", "priya.patel@example.com")
    assert lead.note == "I'd like to schedule a viewing this weekend."
    assert lead.attributes["form"]["Property"].startswith("123 Main St")


def test_adf_attachment_with_vendor_extensions(cfg: EmailSettings) -> None:
    parsed = parse_email(load("adf_attachment.synthetic.eml"), cfg)
    assert parsed.meta["adf_in"] == "attachment lead.xml"
    [lead] = parsed.leads
    assert (lead.first_name, lead.last_name, lead.email) == ("Maria", "Lopez", "maria.lopez@example.com")
    assert lead.phone == "555-201-9999"  # the cellphone is preferred
    assert (lead.city, lead.region, lead.postal_code, lead.country) == ("Austin", "US-TX", "78701", "US")
    assert lead.attributes["vehicle"]["model"] == "Civic"
    assert [v["interest"] for v in lead.attributes["vehicles"]] == ["buy", "trade-in"]
    assert lead.attributes["adf_extra"]["navigationhistory"] == "/civic;/finance"
    assert lead.attributes["adf_extra"]["customer"]["gender"] == "F"
    assert lead.attributes["provider"]["leadtype"] == "internet"
    assert "VIN: 1HGCM82633A004352" in lead.note
    assert lead.attributes["adf_status"] == "resend"


def test_adf_in_html_escaped_body(cfg: EmailSettings) -> None:
    adf = load("sendadf_minimal_compact.adf.xml").decode()
    html = "<html><body><p>Lead:</p><pre>" + adf.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") + "</pre></body></html>"
    raw = (
        "From: crm-export@dealer.example.com\r\nTo: me@example.com\r\nSubject: lead\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/html; charset=utf-8\r\n\r\n" + html
    ).encode()
    [lead] = parse_email(raw, cfg).leads
    assert lead.attributes["vehicle"]["year"] == "1999"


# --------------------------------------------------------------------------- not leads


def test_auto_reply_is_skipped(cfg: EmailSettings) -> None:
    parsed = parse_email(load("autoreply_ooo.synthetic.eml"), cfg)
    assert parsed.leads == [] and parsed.skipped == "auto-reply: Auto-Submitted: auto-replied"


@pytest.mark.parametrize(
    "headers, reason",
    [
        ("X-Autoreply: yes\r\n", "auto-reply: X-Autoreply: yes"),
        ("Precedence: auto_reply\r\n", "auto-reply: Precedence: auto_reply"),
        ("Precedence: bulk\r\n", "auto-reply: Precedence: bulk"),
        ("Return-Path: <>\r\n", "bounce: empty Return-Path (<>)"),
    ],
)
def test_auto_reply_headers(cfg: EmailSettings, headers: str, reason: str) -> None:
    raw = f"From: a@example.com\r\nSubject: hello\r\n{headers}\r\nbody\r\n".encode()
    assert parse_email(raw, cfg).skipped == reason


@pytest.mark.parametrize("subject", ["Out of Office: Re: quote", "Automatic reply: hello", "Abwesenheitsnotiz", "Réponse automatique : absent"])
def test_out_of_office_subjects(cfg: EmailSettings, subject: str) -> None:
    raw = f"From: a@example.com\r\nSubject: {subject}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nbody\r\n".encode()
    assert parse_email(raw, cfg).skipped.startswith("auto-reply: out-of-office subject")


def test_own_address_is_skipped() -> None:
    cfg = EmailSettings.from_settings({"own_addresses": ["crm@example.org"]})
    raw = b"From: CRM <CRM@example.org>\r\nSubject: your lead\r\n\r\nbody\r\n"
    assert parse_email(raw, cfg).skipped == "own address: mail from the CRM's own address crm@example.org"
    assert parse_email(raw, EmailSettings.from_settings({}), extra_own=frozenset({"crm@example.org"})).skipped.startswith("own address")


# --------------------------------------------------------------------------- bad input


def test_broken_mime_still_reads_what_it_can(cfg: EmailSettings) -> None:
    parsed = parse_email(load("broken_mime.synthetic.eml"), cfg)
    [lead] = parsed.leads
    assert (lead.first_name, lead.last_name, lead.email) == ("Carl", "Broken", "carl@example.com")
    assert parsed.meta["date_invalid"].startswith("Mon, 32 Foo")
    assert "StartBoundaryNotFoundDefect" in parsed.meta["defects"]


def test_charset_with_a_nul_byte_is_ignored(cfg: EmailSettings) -> None:
    # Found by the fuzz test: codecs.lookup raises ValueError (not LookupError) on a NUL.
    raw = b"From: a@example.com\r\nSubject: s\r\nContent-Type: text/plain; charset=\x00SO-8859-1\r\n\r\nName: Zo\xe9 Smith\r\n"
    [lead] = parse_email(raw, cfg).leads
    assert (lead.first_name, lead.last_name) == ("Zoé", "Smith")


def test_zip_and_binary_attachments_are_not_read(cfg: EmailSettings) -> None:
    parsed = parse_email(load("zip_attachment.synthetic.eml"), cfg)
    notes = {a["filename"]: a for a in parsed.meta["attachments"]}
    assert notes["invoice.zip"]["read"] is False and notes["run.exe"]["read"] is False
    [lead] = parsed.leads
    assert "5 € per page" in lead.note  # windows-1252 euro sign


def test_huge_attachment_is_noted_not_read() -> None:
    cfg = EmailSettings.from_settings({"max_attachment_bytes": 1000})
    big = "A" * 5000
    raw = (
        "From: Big Sender <big@example.com>\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
        "--XX\r\nContent-Type: text/plain\r\n\r\nHello\r\n--XX\r\nContent-Type: text/xml\r\nContent-Disposition: attachment; filename=big.xml\r\n\r\n"
        f"{big}\r\n--XX--\r\n"
    ).encode()
    parsed = parse_email(raw, cfg)
    [att] = parsed.meta["attachments"]
    assert att["read"] is False and "max_attachment_bytes" in att["note"]
    assert parsed.leads[0].email == "big@example.com"


def test_too_large_message_is_an_error() -> None:
    cfg = EmailSettings.from_settings({"max_message_bytes": 100})
    with pytest.raises(EmailParseError, match="over max_message_bytes"):
        parse_email(b"From: a@example.com\r\nSubject: x\r\n\r\n" + b"x" * 200, cfg)


def test_malformed_adf_is_an_error_naming_the_place(cfg: EmailSettings) -> None:
    with pytest.raises(EmailParseError, match="ADF in body: malformed ADF XML"):
        parse_email(load("malformed_adf.synthetic.eml"), cfg)


def test_adf_entities_are_never_expanded() -> None:
    with pytest.raises(AdfError):
        parse_adf(load("entities.synthetic.adf.xml"))
    from defusedxml.ElementTree import fromstring
    from defusedxml import DTDForbidden

    with pytest.raises(DTDForbidden):  # the same document, uncut: the DTD itself is refused
        fromstring(load("entities.synthetic.adf.xml"), forbid_dtd=True)


def test_not_an_email_is_an_error(cfg: EmailSettings) -> None:
    with pytest.raises(EmailParseError):
        parse_email(b"", cfg)


def test_mbox_given_to_capture_says_what_to_do(cfg: EmailSettings) -> None:
    mbox = b"From a@b Mon Jan  1 00:00:00 2026\nFrom: a@example.com\nSubject: 1\n\nx\n\nFrom b@c Mon Jan  1 00:00:00 2026\nFrom: b@example.com\nSubject: 2\n\ny\n"
    fmt = make_email_format(cfg)
    with pytest.raises(EmailParseError, match="mbox file with 2 messages.*mail import"):
        fmt.parse(RawCapture(mbox, origin="x.mbox"))


def test_sniff_email() -> None:
    assert sniff_email(load("odoo_crm_customer_request.eml"), None, "mail") == 85
    assert sniff_email(b"anything", "message/rfc822", "stdin") == 95
    assert sniff_email(b'{"email": "a@b.c"}', None, "x.json") == 0
    assert sniff_email(b"name,email\nA,a@b.c\n", None, "x.csv") == 0


# --------------------------------------------------------------------------- profiles


def test_profile_with_most_required_fields_wins() -> None:
    settings = {
        "profiles": [
            {"name": "thin", "match_from": r"@shop\.example\.com$", "extractor": "regex", "patterns": {"phone": r"^Phone: (.+)$"}, "required": ["email", "phone"]},
            {"name": "shop-form", "match_from": r"@shop\.example\.com$", "source": "website", "campaign": "chairs-q4", "fields": {"Interested in": "attributes.product"}},
        ]
    }
    cfg = EmailSettings.from_settings(settings)
    parsed = parse_email(load("cf7_wordpress.synthetic.eml"), cfg)
    assert parsed.meta["profile"] == "shop-form"
    assert [t["profile"] for t in parsed.meta["profiles_tried"]] == ["thin", "shop-form"]
    [lead] = parsed.leads
    assert (lead.source, lead.campaign) == ("website", "chairs-q4")
    assert lead.attributes["form"]["product"] == "Office chairs, Standing desks"
    assert lead.interests == []


def test_regex_profile_reads_the_subject() -> None:
    cfg = EmailSettings.from_settings(
        {"profiles": [{"name": "zillow", "match_subject": "is requesting information", "extractor": "regex", "patterns": {"name": r"^Subject: (.+?) is requesting", "street": r"information about (.+)$", "postal_code": r"^Zip: (\d+)", "attributes.listing": r"about (\d+) "}, "required": ["name"]}]}
    )
    raw = b"From: leads@zillow.example\r\nSubject: Sam Lee is requesting information about 1 Oak Rd\r\n\r\nReply to this lead.\r\nZip: 97201\r\n"
    [lead] = parse_email(raw, cfg).leads
    assert (lead.first_name, lead.last_name) == ("Sam", "Lee")
    assert lead.attributes["street"] == "1 Oak Rd"
    assert lead.postal_code == "97201" and lead.attributes["form"]["listing"] == "1"
    assert lead.email is None  # the marketplace's address is not the lead's


def test_profile_can_ignore_a_sender() -> None:
    cfg = EmailSettings.from_settings({"profiles": [{"name": "newsletters", "match_from": "@news\\.example\\.com$", "ignore": True}]})
    raw = b"From: News <weekly@news.example.com>\r\nSubject: This week\r\n\r\nhello\r\n"
    parsed = parse_email(raw, cfg)
    assert parsed.leads == [] and parsed.skipped.startswith("ignored sender: profile 'newsletters'")


def test_label_map_setting() -> None:
    cfg = EmailSettings.from_settings({"labels": {"Handynummer": "phone", "Kundennummer": "attributes.customer_no"}})
    raw = "From: x@example.com\r\nSubject: s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nName: Eva Braun\r\nHandynummer: 0170 1234\r\nKundennummer: K-7\r\n".encode()
    [lead] = parse_email(raw, cfg).leads
    assert lead.phone == "0170 1234" and lead.attributes["form"]["customer_no"] == "K-7"


# --------------------------------------------------------------------------- helpers and settings


@pytest.mark.parametrize(
    "text, expected",
    [("Mr. John Right", ("John", "Right")), ("Right, John", ("John", "Right")), ("Cher", ("Cher", None)), ("Mme Anne Marie Dupont", ("Anne Marie", "Dupont")), ("", (None, None))],
)
def test_split_name(text: str, expected: tuple) -> None:
    assert split_name(text) == expected


def test_key_values_ignore_prose_and_urls() -> None:
    text = "Please see https://example.com for details: it is great.\nName: A B\nAt 10:30 we meet.\n"
    assert key_values(text, BUILTIN_LABELS) == [("Name", "A B")]


def test_html_to_text_drops_scripts() -> None:
    assert html_to_text("<p>a<script>x()</script></p><style>p{}</style><br>b &amp; c") == "a\n\nb & c"


def _settings_error(validator, value) -> str:
    with pytest.raises(ConfigError) as info:
        validator(value, "plugins.capture_email.x")
    return str(info.value)


def test_settings_errors_name_the_key_path() -> None:
    assert "plugins.capture_email.x[0].match_from" in _settings_error(validate_profiles, [{"name": "a", "match_from": "("}])
    assert "plugins.capture_email.x[1].name" in _settings_error(validate_profiles, [{"name": "a"}, {"name": "a"}])
    assert "plugins.capture_email.x[0].fields.Nom" in _settings_error(validate_profiles, [{"name": "a", "fields": {"Nom": "surname"}}])
    assert "plugins.capture_email.x[0].patterns.email" in _settings_error(validate_profiles, [{"name": "a", "extractor": "regex", "patterns": {"email": "no group"}}])
    assert "plugins.capture_email.x.sales.password" in _settings_error(validate_sources, {"sales": {"host": "h", "user": "u", "password": "hunter2"}})
    assert "plugins.capture_email.x.sales.port" in _settings_error(validate_sources, {"sales": {"host": "h", "user": "u", "password_env": "P", "port": "143"}})
    assert validate_sources({"sales": {"host": "h", "user": "u", "password": {"env": "P"}}}, "k")
    assert {s.key for s in declared_settings()} >= {"profiles", "labels", "sources", "max_attachment_bytes"}
