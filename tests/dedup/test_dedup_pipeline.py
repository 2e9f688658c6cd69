"""dedup in the intake pipeline, ``dedup scan`` and ``leads merge/unmerge``, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from conftest import json_capture

from corecrm.cli import main
from corecrm.storage import schema
from corecrm_plugins.dedup.store import dedup_keys

PLUGINS = ["capture_json", "verify_contact", "dedup"]
ENABLED = {"plugins": {"enabled": PLUGINS}}


def _count(crm, table, *where) -> int:
    with crm.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()


def _events(crm, lead_id, type_):
    return [e for e in crm.history(lead_id) if e.type == type_]


def test_duplicate_capture_merges_into_the_stored_lead(make_crm, db_url):
    crm = make_crm(ENABLED, database=db_url)
    [a] = crm.capture([json_capture([{"first_name": "Ann", "last_name": "Lee", "email": "ann.lee@acme.com", "consent": {"email": True}}], "a")])
    ann = a.lead_ids[0]
    assert _count(crm, dedup_keys, dedup_keys.c.lead_id == ann) >= 2  # indexed after commit
    [b] = crm.capture([json_capture([{"first_name": "ANNE", "last_name": "lee", "email": "Ann.Lee@ACME.com", "phone": "020 7946 0958",
                                      "country": "GB", "consent": {"email": False, "sms": True}}], "b")])  # fmt: skip
    assert b.lead_ids == [ann] and _count(crm, schema.leads) == 1
    lead = crm.lead(ann)
    assert (lead.phone, lead.country, lead.consent) == ("+442079460958", "GB", {"email": True})  # consent never carried
    [merged] = _events(crm, ann, "merged")
    assert merged.plugin == "dedup" and merged.detail["filled"]["phone"] == "+442079460958"
    assert merged.detail["consent_not_carried"] == {"email": False, "sms": True}
    # The merge filled a phone: the stored lead is re-keyed, so a later lead with only that phone finds it.
    [c] = crm.capture([json_capture([{"first_name": "Ann", "last_name": "Lee", "phone": "+44 20 7946 0958", "company": "Acme"}], "c")])
    assert c.lead_ids == [ann] and _count(crm, schema.leads) == 1


def test_duplicates_within_one_batch_and_flags(make_crm, db_url):
    crm = make_crm(ENABLED, database=db_url)
    docs = [
        {"first_name": "Bo", "last_name": "Diaz", "email": "bo@diaz.io"},
        {"first_name": "Bo", "last_name": "Diaz", "email": "BO@diaz.io", "company": "Diaz SL"},
        {"first_name": "Carmen", "last_name": "Diaz", "email": "bo@diaz.io"},
    ]
    [res] = crm.capture([json_capture(docs)])
    assert len(res.lead_ids) == 2 and _count(crm, schema.leads) == 2  # the second lead merged into the first
    bo, carmen = (crm.lead(i) for i in res.lead_ids)
    assert (bo.first_name, bo.company, carmen.first_name) == ("Bo", "Diaz SL", "Carmen")
    assert [e.detail["origin_key"].endswith(":1") for e in _events(crm, bo.id, "merged")] == [True]
    [flag] = [e for e in crm.history(carmen.id) if e.type == "possible_duplicate"]
    assert flag.detail["rule"] == "same_email" and flag.detail["batch_index"] == 0


def test_auto_merge_off_only_flags(make_crm):
    crm = make_crm({"plugins": {"enabled": PLUGINS, "dedup": {"auto_merge": False}}})
    crm.capture([json_capture([{"first_name": "Ann", "last_name": "Lee", "email": "ann@acme.com"}], "a")])
    [b] = crm.capture([json_capture([{"first_name": "Ann", "last_name": "Lee", "email": "ann@acme.com", "source": "fair"}], "b")])
    assert _count(crm, schema.leads) == 2
    [flag] = [e for e in crm.history(b.lead_ids[0]) if e.type == "possible_duplicate"]
    assert flag.detail["rule"] == "name_email" and flag.detail["lead_id"] is not None


def _cli(tmp_path: Path, url: str, *args: str):
    cfg = tmp_path / "cli.toml"
    cfg.write_text('[plugins]\nenabled = ["capture_json", "verify_contact", "dedup"]\n')
    return CliRunner().invoke(main, ["--config", str(cfg), "--database", url, *args], catch_exceptions=False)


def test_scan_finds_stored_duplicates_and_apply_merges_and_flags_once(make_crm, db_url, tmp_path):
    crm = make_crm({"plugins": {"enabled": ["capture_json", "verify_contact"]}}, database=db_url)  # captured without dedup
    docs = [
        {"first_name": "Ann", "last_name": "Lee", "email": "ann@acme.com", "consent": {"email": True}},
        {"first_name": "Ann", "last_name": "Lee", "email": "ANN@acme.com", "phone": "+12025550143"},
        {"first_name": "Tom", "last_name": "Lee", "email": "ann@acme.com"},
        {"first_name": "Zoe", "last_name": "Park", "email": "zoe@park.io"},
    ]
    [res] = crm.capture([json_capture(docs)])
    a, b, c, _ = res.lead_ids
    out = _cli(tmp_path, db_url, "dedup", "scan", "--json")
    assert out.exit_code == 0, out.output
    import json

    report = json.loads(out.output)
    pairs = {(p["lead_id"], p["duplicate_id"]): (p["rule"], p["action"]) for p in report["pairs"]}
    assert pairs[(a, b)] == ("name_email", "merge") and pairs[(a, c)][1] == "flag"
    assert report["leads"] == 4 and report["candidate_pairs"] == 3
    out = _cli(tmp_path, db_url, "dedup", "scan", "--apply")
    assert out.exit_code == 0 and "applied: 1 merged, 2 flagged" in out.output, out.output
    assert crm.lead(b).status == "merged" and crm.lead(b).merged_into == a
    assert crm.lead(a).phone == "+12025550143"
    n_flags = _count(crm, schema.events, schema.events.c.type == "possible_duplicate")
    out = _cli(tmp_path, db_url, "dedup", "scan", "--apply")
    assert "applied: 0 merged" in out.output
    assert _count(crm, schema.events, schema.events.c.type == "possible_duplicate") == n_flags


def test_merge_by_hand_keeps_provenance_never_consent_and_unmerge_restores(make_crm, db_url, tmp_path):
    crm = make_crm({"plugins": {"enabled": ["capture_json"]}}, database=db_url)
    [res] = crm.capture([json_capture([
        {"first_name": "Ann", "last_name": "Lee", "email": "ann@acme.com", "interests": ["crm"]},
        {"first_name": "Annie", "last_name": "Lee", "phone": "+12025550143", "company": "Acme", "interests": ["bi"],
         "consent": {"email": True}, "vehicle": "VW"},
    ])])  # fmt: skip
    a, b = res.lead_ids
    out = _cli(tmp_path, db_url, "leads", "merge", str(a), str(b), "--take", "first_name")
    assert out.exit_code == 0, out.output
    assert "first_name: 'Ann' -> 'Annie'" in out.output and "consent: not carried over" in out.output
    lead = crm.lead(a)
    assert (lead.first_name, lead.phone, lead.company, lead.interests, lead.consent) == ("Annie", "+12025550143", "Acme", ["crm", "bi"], {})
    assert lead.attributes == {"vehicle": "VW"}
    [ev] = _events(crm, a, "merged")
    assert ev.detail["from_lead"] == b and ev.detail["fields"]["phone"] == {"previous": None, "value": "+12025550143", "from_lead": b}
    assert crm.lead(b).status == "merged"
    again = _cli(tmp_path, db_url, "leads", "merge", str(a), str(b))
    assert again.exit_code == 1 and f"lead {b} was already merged into lead {a}" in again.output
    # A field changed after the merge keeps its newer value on unmerge.
    with crm.engine.begin() as conn:
        conn.execute(sa.update(schema.leads).where(schema.leads.c.id == a).values(company="Acme Corp"))
    out = _cli(tmp_path, db_url, "leads", "unmerge", str(b))
    assert out.exit_code == 0, out.output
    assert "kept (changed since the merge): company" in out.output
    lead = crm.lead(a)
    assert (lead.first_name, lead.phone, lead.company, lead.interests, lead.attributes) == ("Ann", None, "Acme Corp", ["crm"], {})
    assert crm.lead(b).status == "open" and crm.lead(b).merged_into is None
    [undone] = _events(crm, a, "unmerged")
    assert (undone.detail["restored"], undone.detail["kept"], undone.plugin) == (["first_name", "phone"], ["company"], "dedup")
    nope = _cli(tmp_path, db_url, "leads", "unmerge", str(a))
    assert nope.exit_code == 1 and f"lead {a} has no merge to undo" in nope.output


def test_merge_errors_are_one_line(make_crm, tmp_path, sqlite_url):
    make_crm(ENABLED)
    out = _cli(tmp_path, sqlite_url, "leads", "merge", "1", "999")
    assert out.exit_code == 1 and out.output.strip().splitlines()[-1].startswith("error: lead 1 not found")
    out = _cli(tmp_path, sqlite_url, "leads", "merge", "1", "2", "--take", "score")
    assert out.exit_code == 1 and "--take score: not a mergeable field" in out.output
