"""verify_contact engines on plain Lead objects: e-mail, phone, geo, names, screening."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corecrm.models import Lead
from corecrm.records import FieldUpdate, Finding
from corecrm_plugins import verify_contact
from corecrm_plugins.verify_contact import emails, geo, names, phones
from corecrm_plugins.verify_contact.screen import screen_batch
from corecrm_plugins.verify_contact.verify import verify_batch

DEFAULTS = {s.key: s.default for s in verify_contact.crm_plugin_settings()}


def run(leads, **over):
    return verify_batch(leads, {**DEFAULTS, **over})


def updates(records, index=0):
    return {r.field: r.value for r in records if isinstance(r, FieldUpdate) and r.index == index}


def findings(records, index=0):
    return {r.code: r for r in records if isinstance(r, Finding) and r.index == index}


# --------------------------------------------------------------------------- e-mail


@pytest.mark.parametrize(
    "value",
    ["John.Doe+x@GMail.COM", "a@b.co", "-a@b.com", "o'brien@example.org", "x@sub.domain.co.uk", "a@b.c1", "a..b@c.com",
     "a@-b.com", "a@localhost", "a@b.test", "é@b.com", "x@xn--bcher-kva.example", "user@münchen.de", " ann@x.com "],
)  # fmt: skip
def test_check_email_gives_the_library_answer(value):
    fast = emails.check_email(value)
    lib = emails.library_check(value.strip())
    assert (fast.normalized, fast.error is None) == (lib.normalized, lib.error is None)


_local = st.text(alphabet="aZ09._+-'%!", min_size=0, max_size=70)
_domain = st.text(alphabet="aZ09.-", min_size=0, max_size=30)
_tld = st.sampled_from(["com", "CO", "uk", "test", "local", "c1", "x", "invalid", "museum", ""])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(local=_local, domain=_domain, tld=_tld)
def test_fast_path_agrees_with_email_validator(local, domain, tld):
    value = f"{local}@{domain}.{tld}" if tld else f"{local}@{domain}"
    fast = emails.fast_check(value)
    if fast is None:
        return  # the library answers these
    lib = emails.library_check(value)
    assert lib.error is None, (value, lib.error)
    assert (fast.normalized, fast.domain, fast.local) == (lib.normalized, lib.domain, lib.local)


def test_fast_path_takes_the_common_shape():
    assert emails.fast_check("Jane.Doe@Example.COM") == emails.EmailCheck("Jane.Doe@example.com", None, "example.com", "Jane.Doe")
    assert emails.fast_check("x@münchen.de") is None and emails.fast_check("a@b.test") is None


def test_domain_typos_disposable_and_role():
    assert emails.suggest_domain("gmial.com") == "gmail.com"
    assert emails.suggest_domain("gmaill.com") == "gmail.com"  # one edit from a popular domain
    assert emails.suggest_domain("hotmial.com") == "hotmail.com"
    assert emails.suggest_domain("acme.con") == "acme.com"
    assert emails.suggest_domain("gmail.com") is None and emails.suggest_domain("acme.io") is None
    assert emails.is_disposable("mailinator.com") and emails.is_disposable("eu.mailinator.com")
    assert not emails.is_disposable("mailinator.com", allow=frozenset({"mailinator.com"}))
    assert emails.is_disposable("burner.example", extra=frozenset({"burner.example"}))
    assert not emails.is_disposable("acme.com")
    assert emails.is_role("info") and emails.is_role("Sales+eu") and not emails.is_role("ann")


def test_email_findings_and_normalisation():
    recs = run([Lead(email=" Ann.Lee@GMIAL.com"), Lead(email="not-an-email"), Lead(email="info@mailinator.com")])
    assert updates(recs, 0) == {"email": "Ann.Lee@gmial.com"}
    typo = findings(recs, 0)["email_domain_typo"]
    assert typo.severity == "warning" and typo.suggestion == "Ann.Lee@gmail.com"
    assert findings(recs, 1)["email_invalid"].severity == "error" and updates(recs, 1) == {}
    assert {"email_disposable", "email_role"} <= set(findings(recs, 2))
    fixed = run([Lead(email="ann@gmial.com")], fix_domain_typos=True)
    u = [r for r in fixed if isinstance(r, FieldUpdate)][0]
    assert u.value == "ann@gmail.com" and "ann@gmial.com" in u.reason  # the original stays in the reason and the history


# --------------------------------------------------------------------------- phone


def test_phone_to_e164_with_the_lead_country_as_default_region():
    recs = run([Lead(phone="020 7946 0958", country="GB"), Lead(phone="(202) 555-0143", country="United States"),
                Lead(phone="+1 202 555 0143", country="DE"), Lead(phone="12", country="GB"), Lead(phone="020 7946 0958")])  # fmt: skip
    assert updates(recs, 0)["phone"] == "+442079460958"
    assert updates(recs, 1) == {"country": "US", "phone": "+12025550143"}
    mismatch = findings(recs, 2)["phone_country_mismatch"]
    assert mismatch.suggestion == "US" and updates(recs, 2)["phone"] == "+12025550143"
    assert "wrong length" in findings(recs, 3)["phone_invalid"].message
    assert "no country" in findings(recs, 4)["phone_invalid"].message
    assert updates(run([Lead(phone="020 7946 0958")], phone_default_region="GB"))["phone"] == "+442079460958"


def test_phone_check_is_cached_per_distinct_number():
    phones._check.cache_clear()
    for typed in ("020 7946 0958", "020-7946-0958", "(020) 7946 0958"):
        phones.check_phone(typed, "GB")
    info = phones._check.cache_info()
    assert (info.hits, info.misses) == (2, 1)  # three spellings, one library call
    assert phones.canonical(" +44 (20) 7946-0958 ") == "+442079460958" and phones.canonical("0800 FLOWERS") == "0800 FLOWERS"


# --------------------------------------------------------------------------- geo


@pytest.mark.parametrize(
    "typed,code,how",
    [("gb", "GB", "exact"), ("GBR", "GB", "exact"), ("UK", "GB", "alias"), ("England", "GB", "alias"),
     ("Deutschland", "DE", "alias"), ("germany", "DE", "name"), ("Untied Kingdom", "GB", "fuzzy"),
     ("Côte d'Ivoire", "CI", "alias"), ("Narnia", None, "unknown")],
)  # fmt: skip
def test_country_normalisation(typed, code, how):
    assert geo.normalise_country(typed) == geo.CountryMatch(code, how)


def test_regions_and_postal_codes():
    assert geo.normalise_region("CA", "US") == "US-CA"
    assert geo.normalise_region("california", "US") == "US-CA"
    assert geo.normalise_region("England", "GB") == "GB-ENG"
    assert geo.normalise_region("us-ny", None) == "US-NY"
    assert geo.normalise_region("Bavaria", "DE") is None  # pycountry spells it Bayern
    assert geo.normalise_region("Bayern", "DE") == "DE-BY"
    assert geo.check_postal_code("sw1a 1aa", "GB") == geo.PostalCheck("SW1A 1AA", True)
    assert geo.check_postal_code("1011", "DE").valid is False
    assert geo.check_postal_code("94105-1234", "US").valid is True
    recs = run([Lead(country="uk", region="england", postal_code="sw1a 1aa"), Lead(country="DE", postal_code="1011"), Lead(country="Narnia")])
    assert updates(recs, 0) == {"country": "GB", "region": "GB-ENG", "postal_code": "SW1A 1AA"}
    assert findings(recs, 1)["postal_code_invalid"].severity == "warning"
    assert findings(recs, 2)["country_unknown"].field == "country"
    assert updates(run([Lead(country="Ruritania")], country_aliases={"Ruritania": "AT"})) == {"country": "AT"}


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "typed,cased",
    [("JOHN", "John"), ("mary-jane o'neil", "Mary-Jane O'Neil"), ("mcdonald", "McDonald"), ("DeAndre", "DeAndre"),
     ("ludwig van beethoven", "Ludwig van Beethoven"), ("de la vega", "de la Vega"), ("VAN", "Van")],
)  # fmt: skip
def test_title_case(typed, cased):
    assert names.title_case(typed) == cased


def test_full_name_split_once_with_reasons():
    recs = run([Lead(first_name="Doe, JANE"), Lead(first_name="Dr. Jane van der Berg"), Lead(first_name="Cher"), Lead(first_name="Ann", last_name="Lee")])
    assert updates(recs, 0) == {"first_name": "Jane", "last_name": "Doe"}
    assert updates(recs, 1) == {"first_name": "Jane", "last_name": "van der Berg"}
    assert findings(recs, 1)["name_salutation"].suggestion == "Dr"
    assert updates(recs, 2) == {} and updates(recs, 3) == {}
    assert updates(run([Lead(first_name="Ada <3")])) == {}  # not a full name: left as typed
    assert len([r for r in recs if isinstance(r, FieldUpdate) and r.index == 0 and r.field == "first_name"]) == 1
    assert updates(run([Lead(first_name="JOHN SMITH")], split_names=False, title_case_names=False)) == {}


def test_verify_never_mutates_the_leads():
    lead = Lead(first_name="JOHN SMITH", email=" J@GMIAL.com", phone="020 7946 0958", country="uk")
    before = (lead.first_name, lead.email, lead.phone, lead.country)
    assert run([lead])
    assert (lead.first_name, lead.email, lead.phone, lead.country) == before


# --------------------------------------------------------------------------- screening


def test_screening_verdicts_and_reasons():
    leads = [
        Lead(email="ann@acme.com"),
        Lead(email="x@mailinator.com"),
        Lead(email="info@acme.com"),
        Lead(email="bob@acme.com", attributes={"honeypot": "http://spam"}),
        Lead(email="cy@acme.com", phone="+1 202 555 0143", country="DE"),
        Lead(email="bad@@acme"),
    ]
    verdicts = {v.index: v for v in screen_batch(leads, DEFAULTS)}
    assert 0 not in verdicts
    assert verdicts[1].verdict == "review" and verdicts[1].reasons[0].startswith("disposable_email")
    assert verdicts[2].verdict == "accept" and verdicts[2].reasons[0].startswith("role_email")
    assert verdicts[3].verdict == "reject" and "attributes.honeypot" in verdicts[3].reasons[0]
    assert verdicts[4].verdict == "review" and "US number" in verdicts[4].reasons[0]
    assert verdicts[5].verdict == "accept" and verdicts[5].reasons[0].startswith("invalid_email")
    strict = screen_batch(leads, {**DEFAULTS, "screen_actions": {"disposable_email": "reject", "role_email": "review"}})
    assert {v.index: v.verdict for v in strict}[1] == "reject"
    assert {v.index: v.verdict for v in strict}[2] == "review"


def test_burst_within_a_batch():
    leads = [Lead(email=f"p{i}@acme.com", attributes={"ip": "203.0.113.9"}) for i in range(5)] + [Lead(email="q@acme.com", attributes={"ip": "198.51.100.1"})]
    verdicts = screen_batch(leads, {**DEFAULTS, "burst_limit": 3})
    assert [(v.index, v.verdict) for v in verdicts] == [(3, "review"), (4, "review")]
    assert "lead number 4 from attributes.ip=203.0.113.9" in verdicts[0].reasons[0]
    assert screen_batch(leads, {**DEFAULTS, "burst_limit": 3, "burst_field": ""}) == []


# --------------------------------------------------------------------------- phone fast path = library


def _example_inputs():
    import phonenumbers as pn
    from phonenumbers import PhoneNumberFormat as F
    from phonenumbers import PhoneNumberType as T

    for region in sorted(pn.SUPPORTED_REGIONS):
        for t in (T.FIXED_LINE, T.MOBILE, T.TOLL_FREE, T.PREMIUM_RATE, T.VOIP, T.UAN):
            ex = pn.example_number_for_type(region, t)
            if ex is None:
                continue
            for fmt in (F.NATIONAL, F.INTERNATIONAL):
                s = pn.format_number(ex, fmt)
                for text in (s, s[:-1], s + "7"):
                    for default in (region, "US"):
                        yield text, default


def test_phone_fast_path_matches_the_library_on_every_shipped_example_number():
    mismatches = [(t, r) for t, r in _example_inputs() if phones.check_phone(t, r) != phones.library_check(t, r)]
    assert mismatches == []


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet="0123456789 -().+/", min_size=1, max_size=22),
    region=st.sampled_from(["GB", "US", "DE", "FR", "IN", "BR", "AU", "IT", "JP", "CA", None]),
)
def test_phone_fast_path_matches_the_library_on_generated_text(text, region):
    assert phones.check_phone(text, region) == phones.library_check(text, region)
