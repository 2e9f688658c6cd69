"""The parts that need no server: form definitions, body decoding, ADF, tokens, signatures, limits."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corecrm.errors import CaptureError, ConfigError
from corecrm.records import RawCapture
from corecrm_plugins.capture_web import bodies, mapping, signing
from corecrm_plugins.capture_web.forms import parse_forms
from corecrm_plugins.capture_web.limits import FormTokens, RateLimiter
from cw_helpers import DATA

KEY = "plugins.capture_web.forms"


@pytest.mark.parametrize(
    "forms, path",
    [
        ({"c": {"fields": {"mail": "e_mail"}}}, r"forms\.c\.fields\.mail: unknown lead field 'e_mail'"),
        ({"c": {"fields": {"mail": "email"}, "required": ["mail", "name"]}}, r"forms\.c\.required\[1\]"),
        ({"c": {"cors_origins": ["https://ok.example", "https://bad.example/path"]}}, r"forms\.c\.cors_origins\[1\]"),
        ({"c": {"consent": {"text": "ok", "required": "yes"}}}, r"forms\.c\.consent\.required"),
        ({"c": {"consent": {"channel": "email"}}}, r"forms\.c\.consent\.text"),
        ({"c": {"redirect": "javascript:alert(1)"}}, r"forms\.c\.redirect"),
        ({"c": {"colour": "red"}}, r"forms\.c\.colour: unknown key"),
        ({"c": {"fields": {"_cw_token": "email"}}}, r"forms\.c\.fields\._cw_token: reserved"),
        ({"C D": {}}, r"forms\.C D"),
        ({"c": {"min_fill_seconds": -1}}, r"forms\.c\.min_fill_seconds"),
    ],
)
def test_form_config_errors_name_the_key_path(forms, path):
    with pytest.raises(ConfigError, match=path):
        parse_forms(forms, KEY)


def test_bad_form_fails_crm_start_up_with_the_key_path(make_crm):
    with pytest.raises(ConfigError, match=r"plugins\.capture_web\.forms\.c\.fields\.x"):
        make_crm({"plugins": {"enabled": ["capture_web"], "capture_web": {"forms": {"c": {"fields": {"x": "nope"}}}}}})


def test_default_form():
    (form,) = parse_forms({"contact": {}}, KEY).values()
    assert list(form.fields) == ["first_name", "last_name", "email", "phone", "company", "note"]
    assert form.label("note") == "Message" and form.title == "Contact"


@pytest.mark.parametrize("name", ["sendadf_minimal_compact.adf.xml", "sendadf_minimal_pretty.adf.xml", "synthetic_spec_style_header_not_wellformed.adf.xml"])
def test_adf_corpus(name):
    lead = bodies.read_adf((DATA / name).read_bytes())
    assert (lead["first_name"], lead["last_name"], lead["phone"]) == ("John", "Doe", "393-999-3922")
    assert lead["attributes.vehicles"][0] == {**lead["attributes.vehicles"][0], "year": "1999", "make": "Chevrolet", "model": "Blazer"}


def test_adf_quirks_and_extensions():
    doc = b"""<html><body><!-- view email --><adf><prospect status="resend"><requestdate>2024-01-01</requestdate>
      <vehicle interest="test-drive" status="new"><year>2024</year><make>Kia</make><model>EV9</model></vehicle>
      <customer><contact><name part="first">Ana</name><name part="last">Silva</name>
      <email>ana@example.com</email><phone type="fax">111</phone><phone type="cellphone">+351 912 345 678</phone>
      <address><street line="1">Rua A 1</street><city>Lisboa</city><postalcode>1000-001</postalcode><country>PT</country></address>
      </contact><comments><![CDATA[VIN: 123; prequal: 40000]]></comments></customer>
      <vendor><vendorname>Kia Lisboa</vendorname></vendor><provider><name>CarSite</name></provider>
      <gender>f</gender></prospect></adf></body></html>"""
    lead = bodies.read_adf(doc)
    assert lead["phone"] == "+351 912 345 678"  # the cell phone, never the fax
    assert (lead["city"], lead["postal_code"], lead["country"]) == ("Lisboa", "1000-001", "PT")
    assert lead["note"] == "VIN: 123; prequal: 40000"
    assert lead["interests"] == ["test-drive"] and lead["source"] == "CarSite"
    assert lead["attributes.adf_extra"] == {"gender": "f"}  # unknown elements kept, not rejected


@pytest.mark.parametrize(
    "doc, msg",
    [
        (b"<lead><name>x</name></lead>", "no <adf>"),
        (b"<adf><prospect><customer><contact></contact></customer></prospect></adf>", "no customer contact"),
        (b"<adf></adf>", "no <prospect>"),
        (b'<?xml version="1.0"?><!DOCTYPE adf [<!ENTITY x "y">]><adf><prospect/></adf>', "ADF"),
    ],
)
def test_adf_errors(doc, msg):
    with pytest.raises(CaptureError, match=msg):
        bodies.read_adf(doc)


def test_lead_to_adf_round_trip():
    lead = {"id": 7, "first_name": "Ana", "last_name": "Silva & Filhos", "email": "a@example.com", "phone": "+351", "city": "Lisboa", "attributes": {"vehicles": [{"interest": "buy", "year": "2024", "make": "Kia", "model": "EV9"}]}}
    back = bodies.read_adf(bodies.lead_to_adf(lead, vendor="Dealer"))
    assert (back["first_name"], back["last_name"], back["email"], back["city"]) == ("Ana", "Silva & Filhos", "a@example.com", "Lisboa")
    assert back["attributes.vehicles"][0]["model"] == "EV9" and back["attributes.vendor"] == "Dealer"


def test_decode_each_content_type():
    assert bodies.decode(b"a=1&b=x+y&b=z", "application/x-www-form-urlencoded; charset=utf-8") == ({"a": "1", "b": ["x y", "z"]}, False)
    mp = b'--B\r\nContent-Disposition: form-data; name="a"\r\n\r\n\xc3\xa9\r\n--B\r\nContent-Disposition: form-data; name="f"; filename="cv.pdf"\r\nContent-Type: application/pdf\r\n\r\n%PDF\r\n--B--\r\n'
    assert bodies.decode(mp, "multipart/form-data; boundary=B") == ({"a": "é", "f": "(file 'cv.pdf', 4 bytes)"}, False)
    assert bodies.decode(b'{"a": 1}', "application/vnd.vendor+json") == ({"a": 1}, False)
    with pytest.raises(CaptureError, match="JSON body must be an object"):
        bodies.decode(b"[1]", "application/json")
    with pytest.raises(CaptureError, match="unsupported Content-Type"):
        bodies.decode(b"x", None)


def test_web_form_format_parses_a_stored_capture_with_its_snapshot():
    meta = {mapping.META_KEY: {"form": "v", "fields": {"nm": "last_name", "int": "interests", "car": "attributes.car"}, "source": "vendor", "campaign": None}}
    raw = RawCapture(payload=b"nm=Doe&int=a%2C+b&car=EV9&other=1", content_type="application/x-www-form-urlencoded", meta=meta)
    assert mapping.sniff(raw) == 100 and mapping.sniff(RawCapture(payload=b"{}")) == 0
    (lead,) = mapping.parse(raw).leads
    assert lead.last_name == "Doe" and lead.interests == ["a", "b"] and lead.source == "vendor"
    assert lead.attributes == {"car": "EV9", "form": {"other": "1"}}
    bot = RawCapture(payload=b"x", meta={mapping.META_KEY: {"bot": "honeypot field filled"}})
    parsed = mapping.parse(bot)
    assert parsed.leads == [] and parsed.skipped == "bot: honeypot field filled"


def test_form_tokens():
    t = FormTokens(b"k")
    tok = t.issue("contact", now=1000.5)
    assert t.check("contact", tok) == 1000.5
    assert t.check("other", tok) is None  # bound to its form
    assert FormTokens(b"other-key").check("contact", tok) is None
    assert t.check("contact", tok[:-2] + "xx") is None
    assert t.check("contact", "garbage") is None and t.check("contact", None) is None


def test_rate_limiter_sliding_window():
    now = [0.0]
    rl = RateLimiter(2, 60, clock=lambda: now[0])
    assert rl.hit("a") is None and rl.hit("a") is None
    assert rl.hit("a") == pytest.approx(60)
    assert rl.hit("b") is None  # per key
    now[0] = 30
    assert rl.hit("a") == pytest.approx(30)
    now[0] = 60.01
    assert rl.hit("a") is None
    assert RateLimiter(0).hit("x") is None  # 0 disables


@settings(max_examples=60, deadline=None)
@given(body=st.binary(max_size=300), secret=st.text(min_size=1, max_size=40), ts=st.integers(min_value=1_000_000_000, max_value=2_000_000_000))
def test_signature_round_trip_and_tamper(body, secret, ts):
    h = signing.headers(secret, body, ts)
    signing.verify(secret, body, h[signing.TIMESTAMP_HEADER], h[signing.SIGNATURE_HEADER], now=ts + 10)
    with pytest.raises(signing.SignatureError):
        signing.verify(secret + "x", body, h[signing.TIMESTAMP_HEADER], h[signing.SIGNATURE_HEADER], now=ts)
    with pytest.raises(signing.SignatureError):
        signing.verify(secret, body + b"\x00", h[signing.TIMESTAMP_HEADER], h[signing.SIGNATURE_HEADER], now=ts)
    with pytest.raises(signing.SignatureError):  # the timestamp is signed too
        signing.verify(secret, body, str(ts + 1), h[signing.SIGNATURE_HEADER], now=ts)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True), st.text(max_size=40).filter(lambda s: s.strip() == s and s), max_size=6))
def test_urlencoded_and_json_decode_to_the_same_fields(fields):
    from urllib.parse import urlencode

    assert bodies.decode(urlencode(fields).encode(), "application/x-www-form-urlencoded")[0] == fields
    assert bodies.decode(json.dumps(fields).encode(), "application/json")[0] == fields
