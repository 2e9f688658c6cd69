"""capture_csv: messy real-world files, rejects with line numbers, idempotent and resumable imports."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from corecrm.cli import main

CONFIG = '[plugins]\nenabled = ["capture_json", "capture_csv"]\n[plugins.capture_csv]\nbatch_size = 50\n'


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for var in ("CORECRM_CONFIG", "CORECRM_WORKSPACE", "CORECRM_DATABASE", "CORECRM_LOAD_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "corecrm.toml").write_text(CONFIG)
    return tmp_path


def imp(*args: str) -> dict:
    r = CliRunner().invoke(main, ["import", *args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def leads(home: Path) -> list[dict]:
    r = CliRunner().invoke(main, ["leads", "list", "--json"])
    return json.loads(r.stdout)


def rejects(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_semicolon_windows_1252_quoted_newline_and_ragged_rows(home):
    text = (
        "Vorname;Nachname;E-Mail;Telefon;Firma;Land;PLZ;Notiz\r\n"
        'Anna;Müller;anna@firma.de;+49 30 1234567;Firma GmbH;DE;10115;"Rückruf\r\nbitte"\r\n'
        "Ben;Schmidt;kaputt;;;DE;;\r\n"
        ";;;;;;;\r\n"
        "Cara;Lang;cara@x.de;;;;;;extra\r\n"
        "Dieter;Groß;dieter@x.de;;;AT\r\n"
        "Eva;Weiß;eva@x.de;;Café Weiß;AT;1010;\r\n"
    )
    (home / "de.csv").write_bytes(text.encode("cp1252"))
    s = imp("de.csv")
    assert (s["encoding"], s["delimiter"]) == ("cp1252", ";")
    assert (s["imported"], s["rejected"]) == (2, 3)
    got = {ld["email"]: ld for ld in leads(home)}
    assert got["anna@firma.de"]["last_name"] == "Müller" and got["eva@x.de"]["company"] == "Café Weiß"
    rj = {int(r["line"]): r for r in rejects(home / "de.csv.rejects.csv")}
    assert set(rj) == {4, 6, 7}  # physical line numbers, after a quoted newline
    assert rj[4]["code"] == "invalid_email" and rj[4]["column"] == "E-Mail" and rj[4]["row"].startswith("Ben;Schmidt;kaputt")
    assert rj[6]["code"] == "too_many_fields" and rj[7]["code"] == "missing_fields"
    mapping = {m["column"]: m["field"] for m in s["mapping"]}
    assert mapping == {"Vorname": "first_name", "Nachname": "last_name", "E-Mail": "email", "Telefon": "phone", "Firma": "company", "Land": "country", "PLZ": "postal_code", "Notiz": "note"}


def test_utf16_tab_file_with_bom(home):
    text = "email\tsurname\tgiven name\tmail address 2\r\nann@a.test\tLee\tAnn\tann2@a.test\r\nbob@b.test\tKing\tBob\t\r\n"
    (home / "u16.tsv").write_bytes(text.encode("utf-16"))
    s = imp("u16.tsv")
    assert s["encoding"] == "utf-16" and s["delimiter"] == "\t" and s["imported"] == 2
    ann = next(ld for ld in leads(home) if ld["email"] == "ann@a.test")
    assert (ann["first_name"], ann["last_name"], ann["attributes"]) == ("Ann", "Lee", {"mail_address_2": "ann2@a.test"})


def test_empty_and_duplicate_headers_and_fuzzy_matching(home):
    (home / "h.csv").write_text("Emial Adress,Company,Company,,Cuntry\nx@y.test,Acme,Acme Ltd,note here,GB\n", encoding="utf-8")
    s = imp("h.csv")
    m = {x["column"]: (x["field"], x["how"]) for x in s["mapping"]}
    assert m["Emial Adress"][0] == "email" and m["Emial Adress"][1] == "fuzzy"
    assert m["Company"] == ("company", "exact") and m["Company_2"] == ("attributes.company_2", "attribute")
    assert m["column_4"] == ("attributes.column_4", "attribute") and m["Cuntry"][0] == "country"
    [ld] = leads(home)
    assert ld["attributes"] == {"company_2": "Acme Ltd", "column_4": "note here"} and ld["country"] == "GB"


def test_hundred_columns(home):
    header = ["email", "first_name"] + [f"custom field {i}" for i in range(98)]
    rows = [[f"p{r}@x.test", f"P{r}"] + [f"v{r}-{i}" for i in range(98)] for r in range(30)]
    with (home / "wide.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    s = imp("wide.csv", "--unmapped", "attributes")
    assert s["imported"] == 30
    ld = leads(home)[0]
    assert len(ld["attributes"]) == 98 and ld["attributes"]["custom_field_97"] == "v0-97"
    imp("wide.csv")  # same file again: nothing new
    assert len(leads(home)) == 30


def test_xlsx_with_dates_and_numbers(home):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(["Name", "E-mail", "Phone", "Signed up", "Employees", "Budget"])
    ws.append(["Ann Lee", "ann@x.test", 442079460000, dt.datetime(2026, 2, 3), 250, 1500.5])
    ws.append(["Bob", "not-an-email", None, dt.date(2026, 2, 4), 3, None])
    wb.save(home / "leads.xlsx")
    s = imp("leads.xlsx")
    assert (s["imported"], s["rejected"]) == (1, 1)
    [ld] = leads(home)
    assert (ld["first_name"], ld["last_name"], ld["phone"]) == ("Ann", "Lee", "442079460000")
    assert ld["attributes"] == {"signed_up": "2026-02-03", "employees": "250", "budget": "1500.5"}
    [rj] = rejects(home / "leads.xlsx.rejects.csv")
    assert rj["line"] == "3" and rj["code"] == "invalid_email"


def test_explicit_map_saved_mapping_and_errors(home):
    (home / "a.csv").write_text("col1,col2,junk\nann@x.test,Acme,zzz\n")
    r = CliRunner().invoke(main, ["import", "a.csv", "--map", "col1=email", "--map", "col2=company", "--map", "junk=-", "--save-mapping", "vendor"])
    assert r.exit_code == 0, r.output
    assert "[plugins.capture_csv.mappings.vendor]" in (home / "corecrm.toml").read_text()
    [ld] = leads(home)
    assert (ld["email"], ld["company"], ld["attributes"]) == ("ann@x.test", "Acme", {})
    (home / "b.csv").write_text("col1,col2,junk\nbob@x.test,Bobco,zzz\n")
    assert imp("b.csv", "--mapping", "vendor")["imported"] == 1
    for args, msg in [(["--map", "col1=emial"], "unknown field 'emial'"), (["--map", "nope=email"], "no column 'nope'"), (["--mapping", "ghost"], "no saved mapping 'ghost'")]:
        r = CliRunner().invoke(main, ["import", "b.csv", *args])
        assert r.exit_code == 1 and msg in r.output, r.output


def test_dry_run_writes_nothing(home):
    (home / "a.csv").write_text("email\nann@x.test\nbad\n")
    s = imp("a.csv", "--dry-run")
    assert (s["imported"], s["rejected"], s["dry_run"]) == (1, 1, True)
    assert leads(home) == []
    assert imp("a.csv")["imported"] == 1  # the dry run did not mark anything as imported


def test_update_and_skip_existing(home):
    (home / "a.csv").write_text("email,company,city\nann@x.test,Acme,\nbob@x.test,Bobco,Leeds\n")
    imp("a.csv")
    (home / "b.csv").write_text("email,company,city\nANN@x.test,Acme Holdings,York\ncat@x.test,Catco,\n")
    s = imp("b.csv", "--skip-existing")
    assert (s["imported"], s["skipped_existing"]) == (1, 1)
    (home / "c.csv").write_text("email,company,city\nann@x.test,Acme Holdings,York\n")
    s = imp("c.csv", "--update")
    assert s["updated"] == 1
    ann = next(ld for ld in leads(home) if ld["email"] == "ann@x.test")
    assert (ann["company"], ann["city"]) == ("Acme Holdings", "York")
    shown = json.loads(CliRunner().invoke(main, ["leads", "show", str(ann["id"]), "--json"]).stdout)
    upd = [e for e in shown["events"] if e["type"] == "updated"]
    assert upd and upd[0]["detail"]["fields"]["company"] == {"old": "Acme", "new": "Acme Holdings"}


def test_rejects_report_neutralises_formulas(home):
    (home / "evil.csv").write_text('email,company\n"=HYPERLINK(""http://x"")",@SUM(A1)\n')
    imp("evil.csv")
    raw = (home / "evil.csv.rejects.csv").read_text()
    [rj] = rejects(home / "evil.csv.rejects.csv")
    assert rj["row"].startswith("'=") and rj["message"].startswith("not an e-mail") and "'=HYPERLINK" in raw


def test_unreadable_input_is_a_clear_error(home):
    (home / "bin.csv").write_bytes(b"email\n\xff\xfe\x00\x00garbage\x00")
    (home / "empty.csv").write_text("")
    r = CliRunner().invoke(main, ["import", "empty.csv"])
    assert r.exit_code == 1 and "empty.csv: empty file" in r.output
    r = CliRunner().invoke(main, ["import", "missing.csv"])
    assert r.exit_code == 1 and "missing.csv: no such file" in r.output
    r = CliRunner().invoke(main, ["import", "bin.csv", "--encoding", "ascii"])
    assert r.exit_code == 1 and "bin.csv" in r.output and "not valid ascii" in r.output
    assert leads(home) == []


def test_killed_import_resumes_and_every_row_lands_exactly_once(home):
    n = 6000
    with (home / "big.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["email", "first_name", "company"])
        for i in range(n):
            w.writerow([f"p{i}@x.test", f"P{i}", f"Co {i % 50}"])
    cmd = [sys.executable, "-m", "corecrm.cli", "import", "big.csv"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=home, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = home / "corecrm.db"
    deadline = time.time() + 120
    committed = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
            committed = con.execute("SELECT coalesce(max(last_line), 0) FROM csv_imports").fetchone()[0]
            con.close()
        except sqlite3.Error:
            continue
        if committed > 200:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the import finished before it could be killed"
    assert 0 < committed < n + 1
    s = imp("big.csv")
    assert s["resumed_from_line"] is not None
    con = sqlite3.connect(db)
    total, distinct = con.execute("SELECT count(*), count(DISTINCT email) FROM leads").fetchone()
    con.close()
    assert total == distinct == n
    assert imp("big.csv")["imported"] == 0
