"""capture_email through the core: captures stored, leads made once, skips and quarantines recorded."""

from __future__ import annotations

import json
import mailbox
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from corecrm.records import RawCapture
from corecrm.storage import schema
from corecrm_plugins.capture_email import store
from corecrm_plugins.capture_email.feed import import_mailbox

DATA = Path(__file__).resolve().parent.parent / "data" / "capture_email"
ONLY_EMAIL = {"plugins": {"enabled": ["capture_email"]}}


def load(name: str) -> bytes:
    return (DATA / name).read_bytes()


def count(crm, table, **where) -> int:
    q = sa.select(sa.func.count()).select_from(table)
    for k, v in where.items():
        q = q.where(table.c[k] == v)
    with crm.engine.connect() as conn:
        return conn.execute(q).scalar_one()


def test_eml_capture_makes_one_lead_and_recapture_none(make_crm, db_url):
    crm = make_crm(ONLY_EMAIL, database=db_url)
    [res] = crm.capture([RawCapture(load("odoo_crm_customer_request.eml"), origin="customer_request.eml")])
    assert (res.status, res.format) == ("processed", "email")
    lead = crm.lead(res.lead_ids[0])
    assert (lead.first_name, lead.last_name, lead.email) == ("John", "Right", "info@customer.com")
    assert lead.source == "email"
    # The decoded body is the lead's first note.
    [note] = crm.activities(lead_id=lead.id)
    assert note["type"] == "note" and "Bonjour l'équipe de vente" in note["note"]
    [again] = crm.capture([RawCapture(load("odoo_crm_customer_request.eml"), origin="customer_request.eml")])
    assert again.duplicate and again.lead_ids == res.lead_ids
    assert count(crm, schema.leads) == 1 and count(crm, schema.captures) == 1


def test_bounce_and_auto_reply_are_stored_as_skipped_with_reason(make_crm, db_url):
    crm = make_crm(ONLY_EMAIL, database=db_url)
    results = crm.capture([RawCapture(load("cpython_msg_16_bounce_dsn.eml"), origin="bounce.eml"), RawCapture(load("autoreply_ooo.synthetic.eml"), origin="ooo.eml")])
    assert [r.status for r in results] == ["skipped", "skipped"]
    assert results[0].reason.startswith("bounce: multipart/report")
    assert results[1].reason.startswith("auto-reply: Auto-Submitted")
    assert count(crm, schema.leads) == 0
    with crm.engine.connect() as conn:
        rows = conn.execute(sa.select(schema.captures.c.status, schema.captures.c.reason).order_by(schema.captures.c.id)).all()
    assert [r.status for r in rows] == ["skipped", "skipped"] and rows[0].reason.startswith("bounce:")


def test_adf_files_become_leads_with_vehicle(make_crm, db_url):
    crm = make_crm(ONLY_EMAIL, database=db_url)
    names = ["sendadf_minimal_compact.adf.xml", "sendadf_minimal_pretty.adf.xml", "synthetic_spec_style_header_not_wellformed.adf.xml"]
    results = crm.capture([RawCapture(load(n), origin=n) for n in names])
    assert [r.format for r in results] == ["adf", "adf", "adf"]
    for r in results:
        lead = crm.lead(r.lead_ids[0])
        v = lead.attributes["vehicle"]
        assert (v["year"], v["make"], v["model"]) == ("1999", "Chevrolet", "Blazer")


def test_capture_source_option_overrides_the_default_source_not_a_profile(make_crm):
    crm = make_crm({"plugins": {"enabled": ["capture_email"], "capture_email": {"profiles": [{"name": "shop", "match_from": "@shop\\.example\\.com$", "source": "website"}]}}})
    res = crm.capture(
        [
            RawCapture(load("odoo_crm_customer_request.eml"), origin="a.eml", meta={"source": "partner"}),
            RawCapture(load("sendadf_minimal_pretty.adf.xml"), origin="b.adf.xml", meta={"source": "partner"}),
            RawCapture(load("cf7_wordpress.synthetic.eml"), origin="c.eml", meta={"source": "partner"}),
        ]
    )
    assert [crm.lead(r.lead_ids[0]).source for r in res] == ["partner", "partner", "website"]


def test_bad_messages_are_quarantined_and_the_rest_go_on(make_crm, db_url):
    crm = make_crm(ONLY_EMAIL, database=db_url)
    results = crm.capture(
        [
            RawCapture(load("malformed_adf.synthetic.eml"), origin="bad.eml"),
            RawCapture(load("broken_mime.synthetic.eml"), origin="broken.eml"),
            RawCapture(load("cf7_wordpress.synthetic.eml"), origin="cf7.eml"),
        ]
    )
    assert [r.status for r in results] == ["quarantined", "processed", "processed"]
    assert "ADF in body: malformed ADF XML" in results[0].reason
    [q] = crm.quarantined()
    assert (q["step"], q["plugin"]) == ("parse", "capture_email")
    assert {crm.lead(r.lead_ids[0]).email for r in results[1:]} == {"carl@example.com", "jane.doe@example.net"}


def test_own_addresses_from_core_config_are_rejected(make_crm):
    crm = make_crm({"crm": {"own_addresses": ["sales@crm.example.org"]}, **ONLY_EMAIL})
    raw = b"From: Sales <sales@crm.example.org>\r\nTo: x@example.com\r\nSubject: Re: offer\r\nMessage-ID: <own@crm.example.org>\r\n\r\nHello\r\n"
    # A plain file capture: the plugin's screen sees [crm] own_addresses and rejects the lead.
    [res] = crm.capture([RawCapture(raw, origin="own.eml")])
    assert res.status == "rejected" and "own address: sales@crm.example.org" in res.reason
    # From a mailbox, the source passes the core's own addresses to the parser: skipped before any lead exists.
    from corecrm_plugins.capture_email.feed import Message, capture_messages

    [res2] = capture_messages(crm, [Message(raw.replace(b"own@", b"own2@"), "mbox:x#1")], workspace="default", origin_kind="mbox:x")
    assert res2.status == "skipped" and res2.reason == "own address: mail from the CRM's own address sales@crm.example.org"
    assert count(crm, schema.leads) == 0


def test_existing_customer_mail_is_attached_not_a_new_lead(make_crm, db_url):
    crm = make_crm({"plugins": {"enabled": ["capture_email"], "capture_email": {"existing_customers": "attach"}}}, database=db_url)
    [first] = crm.capture([RawCapture(load("odoo_crm_customer_request.eml"), origin="first.eml")])
    lead_id = first.lead_ids[0]
    crm.convert(lead_id)
    follow_up = load("odoo_crm_customer_request.eml").replace(b"4EA4F95D.904", b"4EA4F95D.905").replace(b"Subject: Fournir", b"Subject: Re: Fournir")
    [res] = crm.capture([RawCapture(follow_up, origin="second.eml")])
    assert res.status == "rejected" and "existing customer" in res.reason
    assert count(crm, schema.leads) == 1
    notes = [a["note"] for a in crm.activities(lead_id=lead_id)]
    assert any(n.startswith("E-mail from customer: Re: Fournir") for n in notes)


def _write_mbox(path: Path, payloads: list[bytes]) -> None:
    box = mailbox.mbox(str(path))
    for p in payloads:
        box.add(p)
    box.flush()
    box.close()


def test_mbox_and_maildir_import_once(make_crm, db_url, tmp_path):
    crm = make_crm(ONLY_EMAIL, database=db_url)
    msgs = [load(n) for n in ("odoo_crm_customer_request.eml", "cf7_wordpress.synthetic.eml", "cpython_msg_16_bounce_dsn.eml", "german_form.synthetic.eml")]
    mbox_path = tmp_path / "leads.mbox"
    _write_mbox(mbox_path, msgs)
    results = import_mailbox(crm, mbox_path, workspace="default")
    assert [r.status for r in results] == ["processed", "processed", "skipped", "processed"]
    assert count(crm, schema.leads) == 3
    assert [r.duplicate for r in import_mailbox(crm, mbox_path, workspace="default")] == [True] * 4
    # The same messages in a Maildir (different bytes: mbox adds no headers here, but
    # a server might) are recognised by content hash or Message-ID.
    md = mailbox.Maildir(str(tmp_path / "Maildir"))
    for m in msgs:
        md.add(m.replace(b"Subject:", b"X-Delivered: again\r\nSubject:", 1))
    results = import_mailbox(crm, tmp_path / "Maildir", workspace="default")
    assert all(r.status == "skipped" and r.reason.startswith("duplicate: Message-ID") for r in results)
    assert count(crm, schema.leads) == 3
    with crm.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(store.messages).where(store.messages.c.workspace == "default")).scalar_one() == 4


def _cli(tmp_path: Path, db: str, *args: str, input: bytes | None = None, extra: str = "") -> object:
    from corecrm.cli import main

    cfg = tmp_path / "corecrm.toml"
    cfg.write_text(f'[crm]\ndatabase = "{db}"\n\n[plugins]\nenabled = ["capture_email"]\n{extra}')
    return CliRunner().invoke(main, ["--config", str(cfg), *args], input=input, catch_exceptions=False)


def test_cli_capture_stdin_file_and_mail_import(tmp_path, sqlite_url):
    res = _cli(tmp_path, sqlite_url, "capture", "-", "--json", input=load("cf7_wordpress.synthetic.eml"))
    assert res.exit_code == 0, res.output
    [out] = json.loads(res.output)
    assert (out["status"], out["format"]) == ("processed", "email")
    eml = tmp_path / "req.eml"
    eml.write_bytes(load("odoo_crm_customer_request.eml"))
    res = _cli(tmp_path, sqlite_url, "capture", str(eml))
    assert res.exit_code == 0 and "processed" in res.output
    res = _cli(tmp_path, sqlite_url, "capture", str(eml))
    assert "duplicate" in res.output
    adf = tmp_path / "lead.adf.xml"
    adf.write_bytes(load("synthetic_spec_style_header_not_wellformed.adf.xml"))
    assert "processed" in _cli(tmp_path, sqlite_url, "capture", str(adf)).output
    box = tmp_path / "in.mbox"
    _write_mbox(box, [load("german_form.synthetic.eml"), load("cpython_msg_16_bounce_dsn.eml")])
    # An mbox given to `capture` is refused with a one-line hint; nothing is written.
    res = _cli(tmp_path, sqlite_url, "capture", str(box))
    assert res.exit_code == 1 and "corecrm mail import" in res.output
    res = _cli(tmp_path, sqlite_url, "mail", "import", str(box))
    assert res.exit_code == 0, res.output
    assert "2 messages (1 processed, 1 skipped)" in res.output and "bounce: multipart/report" in res.output
    res = _cli(tmp_path, sqlite_url, "mail", "poll")
    assert res.exit_code == 1 and "no mail sources configured" in res.output


def test_cli_mail_sources_and_bad_source_config(tmp_path, sqlite_url, monkeypatch):
    monkeypatch.setenv("TEST_IMAP_PW", "secret")
    extra = '\n[plugins.capture_email.sources.sales]\nhost = "127.0.0.1"\nport = 10143\ntls = false\nuser = "leads"\npassword = { env = "TEST_IMAP_PW" }\nprocessed_folder = "Leads/Done"\n'
    res = _cli(tmp_path, sqlite_url, "mail", "sources", extra=extra)
    assert res.exit_code == 0 and "sales: imap leads@127.0.0.1:10143 (plain) folder INBOX" in res.output and "secret" not in res.output
    res = _cli(tmp_path, sqlite_url, "mail", "poll", "--source", "nope", extra=extra)
    assert res.exit_code == 1 and "unknown mail source 'nope'" in res.output
    bad = extra.replace('password = { env = "TEST_IMAP_PW" }', 'password = "hunter2"')
    res = _cli(tmp_path, sqlite_url, "mail", "sources", extra=bad)
    assert res.exit_code == 1 and "plugins.capture_email.sources.sales.password" in res.output
    assert res.output.count("\n") == 1 and "hunter2" not in res.output
