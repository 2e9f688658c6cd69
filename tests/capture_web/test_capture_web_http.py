"""POST /capture/{form} against the real server on loopback, with the real intake pipeline."""

from __future__ import annotations

import concurrent.futures
import json

import httpx
import pytest

from corecrm_plugins.capture_web import keys
from cw_helpers import DATA, capture_rows, lead_rows, serve, wait_processed, web_crm  # noqa: F401 (fixtures)


@pytest.fixture
def crm(web_crm):
    return web_crm()


@pytest.fixture
def client(crm, serve):
    srv = serve(crm)
    with httpx.Client(base_url=srv.url, timeout=20) as c:
        yield c


def test_health(client):
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    assert r.json()["forms"] == ["contact", "vendor"]


def test_urlencoded_post_creates_lead_with_mapping_and_defaults(crm, client):
    r = client.post("/capture/contact", data={"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com", "message": "Call me"})
    assert r.status_code == 201, r.text
    cid = r.json()["capture_id"]
    wait_processed(crm)
    (lead,) = lead_rows(crm)
    assert (lead["first_name"], lead["last_name"], lead["email"]) == ("Ada", "Lovelace", "ada@example.com")
    assert lead["source"] == "website" and lead["campaign"] == "spring-launch"
    assert lead["capture_id"] == cid
    (cap,) = capture_rows(crm)
    assert cap["format"] == "web_form" and cap["origin"] == "http:contact"
    assert cap["payload"].startswith(b"first_name=Ada")


def test_multipart_post(crm, client):
    r = client.post("/capture/contact", files={"last_name": (None, "Hopper"), "email": (None, "grace@example.com"), "company": (None, "Navy")})
    assert r.status_code == 201, r.text
    wait_processed(crm)
    (lead,) = lead_rows(crm)
    assert (lead["last_name"], lead["email"], lead["company"]) == ("Hopper", "grace@example.com", "Navy")


def test_json_post_with_api_key(crm, client):
    _, key = keys.create(crm.engine, "default", "vendor", crm.now())
    body = {"fname": "Alan", "lname": "Turing", "mail": "alan@example.com", "tel": "+44 20 7946 0958", "zip": "SW1A 1AA", "campaign_code": "x7"}
    r = client.post("/capture/vendor", json=body, headers={"X-Api-Key": key})
    assert r.status_code == 201, r.text
    wait_processed(crm)
    (lead,) = lead_rows(crm)
    assert (lead["first_name"], lead["last_name"], lead["postal_code"], lead["source"]) == ("Alan", "Turing", "SW1A 1AA", "leadvendor")
    assert lead["attributes"]["form"] == {"campaign_code": "x7"}  # unmapped inputs are kept, not dropped


@pytest.mark.parametrize("name", ["sendadf_minimal_pretty.adf.xml", "synthetic_spec_style_header_not_wellformed.adf.xml"])
def test_adf_xml_post(crm, client, name):
    _, key = keys.create(crm.engine, "default", "vendor", crm.now())
    payload = (DATA / name).read_bytes()
    r = client.post("/capture/vendor", content=payload, headers={"Content-Type": "application/xml", "Authorization": f"Bearer {key}"})
    assert r.status_code == 201, r.text
    wait_processed(crm)
    (lead,) = lead_rows(crm)
    assert (lead["first_name"], lead["last_name"], lead["phone"]) == ("John", "Doe", "393-999-3922")
    assert lead["attributes"]["vehicles"][0]["make"] == "Chevrolet"
    assert lead["attributes"]["vendor"] == "Acura of Bellevue"


def test_missing_required_field_is_422_naming_it(crm, client):
    r = client.post("/capture/contact", json={"email": "no-name@example.com"})
    assert r.status_code == 422
    assert r.json()["field"] == "last_name"
    assert "last_name" in r.json()["error"]
    _, key = keys.create(crm.engine, "default", "vendor", crm.now())
    r = client.post("/capture/vendor", data={"fname": "X", "mail": "x@example.com"}, headers={"X-Api-Key": key})
    assert r.status_code == 422 and r.json()["field"] == "lname"
    assert capture_rows(crm) == []  # nothing half-written


def test_browser_422_re_renders_the_form_with_the_error(client):
    r = client.post("/capture/contact", data={"email": "a@example.com"}, headers={"Accept": "text/html"})
    assert r.status_code == 422
    assert 'role="alert"' in r.text and 'aria-invalid="true"' in r.text and 'value="a@example.com"' in r.text


def test_oversized_body_is_413(web_crm, serve):
    crm = web_crm(max_body_bytes=1024)
    srv = serve(crm)
    big = {"last_name": "X", "email": "big@example.com", "message": "x" * 5000}
    r = httpx.post(f"{srv.url}/capture/contact", json=big)
    assert r.status_code == 413
    # a chunked body without Content-Length is cut off while streaming, too
    r = httpx.post(f"{srv.url}/capture/contact", content=iter([b'{"last_name": "X", "message": "', b"y" * 4000, b'"}']), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert capture_rows(crm) == []


def test_missing_bad_and_revoked_keys_are_401(crm, client):
    body = {"lname": "Key"}
    assert client.post("/capture/vendor", json=body).status_code == 401
    assert client.post("/capture/vendor", json=body, headers={"X-Api-Key": "cwk_nothere_secret"}).status_code == 401
    kid, key = keys.create(crm.engine, "default", "vendor", crm.now())
    assert client.post("/capture/vendor", json=body, headers={"X-Api-Key": key + "x"}).status_code == 401
    # a key of another form does not open this one
    _, other = keys.create(crm.engine, "default", "contact", crm.now())
    assert client.post("/capture/vendor", json=body, headers={"X-Api-Key": other}).status_code == 401
    assert client.post("/capture/vendor", json=body, headers={"X-Api-Key": key}).status_code == 201
    _, new = keys.create(crm.engine, "default", "vendor", crm.now(), revoke_others=True)  # rotation
    assert client.post("/capture/vendor", json={"lname": "Rotated"}, headers={"X-Api-Key": key}).status_code == 401
    assert client.post("/capture/vendor", json={"lname": "Rotated"}, headers={"X-Api-Key": new}).status_code == 201
    with crm.engine.connect() as conn:
        from corecrm_plugins.capture_web import tables
        import sqlalchemy as sa

        hashes = [r.key_hash for r in conn.execute(sa.select(tables.keys))]
    assert key not in hashes and new not in hashes  # only digests are stored


def test_rate_limit_per_ip_is_429(web_crm, serve):
    crm = web_crm(rate_per_ip=5)
    srv = serve(crm)
    codes = [httpx.post(f"{srv.url}/capture/contact", json={"last_name": f"R{i}", "email": f"r{i}@example.com"}).status_code for i in range(8)]
    assert codes[:5] == [201] * 5
    assert codes[5:] == [429] * 3
    r = httpx.post(f"{srv.url}/capture/contact", json={"last_name": "R", "email": "r@example.com"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


def test_rate_limit_per_key_is_429(web_crm, serve):
    crm = web_crm(rate_per_ip=0, rate_per_key=3)
    srv = serve(crm)
    _, key = keys.create(crm.engine, "default", "vendor", crm.now())
    _, key2 = keys.create(crm.engine, "default", "vendor", crm.now())
    codes = [httpx.post(f"{srv.url}/capture/vendor", json={"lname": f"K{i}"}, headers={"X-Api-Key": key}).status_code for i in range(5)]
    assert codes == [201, 201, 201, 429, 429]
    # another key of the same form has its own budget
    assert httpx.post(f"{srv.url}/capture/vendor", json={"lname": "Other"}, headers={"X-Api-Key": key2}).status_code == 201


def test_honeypot_hit_is_recorded_and_creates_no_lead(crm, client):
    r = client.post("/capture/contact", data={"last_name": "Bot", "email": "bot@example.com", "_cw_hp": "http://spam.example"})
    assert r.status_code == 201  # the bot is not told
    wait_processed(crm)
    assert lead_rows(crm) == []
    (cap,) = capture_rows(crm)
    assert cap["status"] == "skipped"
    assert "honeypot" in cap["reason"]


def test_too_fast_fill_is_recorded_as_bot(web_crm, serve):
    forms = {"quick": {"required": ["email"], "min_fill_seconds": 3600}}
    crm = web_crm(forms=forms)
    srv = serve(crm)
    page = httpx.get(f"{srv.url}/forms/quick").text
    token = page.split('name="_cw_token" value="', 1)[1].split('"', 1)[0]
    r = httpx.post(f"{srv.url}/capture/quick", data={"email": "fast@example.com", "_cw_token": token})
    assert r.status_code == 201
    wait_processed(crm)
    assert lead_rows(crm) == []
    (cap,) = capture_rows(crm)
    assert cap["status"] == "skipped" and "filled in" in cap["reason"]
    # a forged token is a bot too
    r = httpx.post(f"{srv.url}/capture/quick", data={"email": "forged@example.com", "_cw_token": "1.2.abc.def"})
    wait_processed(crm)
    assert lead_rows(crm) == [] and "forged" in capture_rows(crm)[-1]["reason"]


def test_same_submission_twice_is_one_lead(crm, client):
    body = {"last_name": "Twice", "email": "twice@example.com"}
    r1 = client.post("/capture/contact", json=body)
    r2 = client.post("/capture/contact", json=body)
    assert r1.status_code == 201 and r2.status_code == 200
    assert r2.json() == {"capture_id": r1.json()["capture_id"], "status": "duplicate"}
    wait_processed(crm)
    assert len(lead_rows(crm)) == 1 and len(capture_rows(crm)) == 1


def test_double_click_on_the_form_is_one_lead(crm, client):
    """Two concurrent posts of one rendered form (different multipart boundaries, same token)."""
    page = client.get("/forms/contact").text
    token = page.split('name="_cw_token" value="', 1)[1].split('"', 1)[0]
    fields = {"last_name": (None, "Click"), "email": (None, "click@example.com"), "_cw_token": (None, token)}

    def post(_):
        with httpx.Client(base_url=str(client.base_url)) as c:
            return c.post("/capture/contact", files=fields, headers={"Accept": "application/json"})

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(post, range(4)))
    ids = {r.json()["capture_id"] for r in results}
    assert len(ids) == 1, [r.text for r in results]
    assert sorted(r.json()["status"] for r in results).count("accepted") == 1
    wait_processed(crm)
    assert len(lead_rows(crm)) == 1 and len(capture_rows(crm)) == 1


def test_idempotency_key_header(crm, client):
    h = {"Idempotency-Key": "order-42"}
    r1 = client.post("/capture/contact", json={"last_name": "Idem", "email": "i@example.com", "ts": 1}, headers=h)
    r2 = client.post("/capture/contact", json={"last_name": "Idem", "email": "i@example.com", "ts": 2}, headers=h)
    assert r1.json()["capture_id"] == r2.json()["capture_id"] and r2.json()["status"] == "duplicate"
    wait_processed(crm)
    assert len(lead_rows(crm)) == 1


def test_unknown_form_and_bad_bodies(client):
    assert client.post("/capture/nope", json={"a": 1}).status_code == 404
    r = client.post("/capture/contact", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "invalid JSON" in r.json()["error"]
    r = client.post("/capture/contact", content=b"hello", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = client.post("/capture/contact", content=b"<lead/>", headers={"Content-Type": "application/xml"})
    assert r.status_code == 400 and "<adf>" in r.json()["error"]


def test_browser_post_redirects_and_cors(web_crm, serve):
    forms = {"site": {"required": ["email"], "redirect": "https://www.example.com/thanks", "cors_origins": ["https://www.example.com"]}}
    crm = web_crm(forms=forms)
    srv = serve(crm)
    r = httpx.post(f"{srv.url}/capture/site", data={"email": "r@example.com"}, headers={"Accept": "text/html"})
    assert r.status_code == 303
    assert r.headers["location"].startswith("https://www.example.com/thanks?capture_id=")
    pre = httpx.options(f"{srv.url}/capture/site", headers={"Origin": "https://www.example.com", "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "https://www.example.com"
    assert httpx.options(f"{srv.url}/capture/site", headers={"Origin": "https://evil.example"}).status_code == 403
    r = httpx.post(f"{srv.url}/capture/site", json={"email": "c@example.com"}, headers={"Origin": "https://www.example.com"})
    assert r.headers["access-control-allow-origin"] == "https://www.example.com"


def test_form_page_is_accessible_and_script_free(client):
    r = client.get("/forms/contact")
    assert r.status_code == 200
    html = r.text
    assert "<script" not in html.lower()
    for inp in ("first_name", "last_name", "email", "company", "message"):
        assert f'<label for="cw-{inp}">' in html
    assert 'id="cw-email" name="email" required aria-required="true"' in html
    assert 'name="_cw_hp" tabindex="-1"' in html and 'aria-hidden="true"' in html
    assert 'type="checkbox" id="cw-consent"' in html
    frag = client.get("/forms/contact?embed=1").text
    assert frag.startswith("<style>") and "<html" not in frag and 'action="http://' in frag


def test_consent_is_recorded_on_the_lead(crm, client):
    r = client.post("/capture/contact", data={"last_name": "Opt", "email": "opt@example.com", "_cw_consent": "yes"})
    assert r.status_code == 201
    client.post("/capture/contact", data={"last_name": "NoOpt", "email": "noopt@example.com"})
    wait_processed(crm)
    opted, not_opted = lead_rows(crm)
    c = opted["consent"]["email"]
    assert c["status"] == "granted" and c["purpose"] == "marketing" and c["source"] == "web_form:contact"
    assert c["text"] == "Send me product news by email" and c["proof"]["ip"] == "127.0.0.1"
    assert not not_opted["consent"]


def test_same_intake_path_as_other_captures(web_crm, serve):
    """A verifier plugin sees web leads like any other: the change is recorded with its name."""
    from corecrm.hooks import hookimpl
    from corecrm.records import FieldUpdate

    class Upper:
        @hookimpl
        def crm_verify_leads(self, leads, ctx):
            return [FieldUpdate(i, "last_name", l.last_name.upper(), reason="shout") for i, l in enumerate(leads) if l.last_name]

    crm = web_crm(plugins={"upper": Upper()})
    srv = serve(crm)
    httpx.post(f"{srv.url}/capture/contact", json={"last_name": "quiet", "email": "q@example.com"})
    wait_processed(crm)
    (lead,) = lead_rows(crm)
    assert lead["last_name"] == "QUIET"
    assert any(e.get("plugin") == "upper" for e in (lead["intake"] or [])), json.dumps(lead["intake"])
