"""Messages parsed per second, per lead format, against stdlib floors measured in the same run.

Run by hand (never asserts timings)::

    python bench/bench_capture_email.py [--n 2000] [--repeat 5] [--capture 2000]

For each format it times ``parse`` of the capture format (everything the
plugin does: MIME, charset, HTML walk, label map, profiles, ADF) and a floor:

* e-mail shapes: ``email.message_from_bytes(policy=default)`` plus
  ``get_body().get_content()``, the least any stdlib-based reader must do;
* bare ADF: ``xml.etree.ElementTree.fromstring`` of the document.

``--capture N`` also times the end-to-end path (``corecrm mail import`` of an
mbox: store raw captures, parse, pipeline, persist) on SQLite against a plain
``sqlite3`` insert of the same raw payloads.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import mailbox
import sqlite3
import statistics
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from corecrm.records import RawCapture
from corecrm_plugins.capture_email.adf import find_adf
from corecrm_plugins.capture_email.config import EmailSettings
from corecrm_plugins.capture_email.formats import make_adf_format, make_email_format

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "capture_email"
SHAPES = {
    "plain e-mail (Latin-1, sender lead)": "odoo_crm_customer_request.eml",
    "key-value form (CF7, Reply-To)": "cf7_wordpress.synthetic.eml",
    "key-value form (German, QP)": "german_form.synthetic.eml",
    "HTML table (+scripts)": "html_table.synthetic.eml",
    "ADF attachment in e-mail": "adf_attachment.synthetic.eml",
    "bounce (skipped)": "cpython_msg_16_bounce_dsn.eml",
}


def _variants(raw: bytes, n: int) -> list[bytes]:
    """n distinct copies (a different Message-ID each), so nothing is cached by identity."""
    out = []
    for i in range(n):
        if b"Message-ID:" in raw:
            out.append(raw.replace(b"Message-ID: <", b"Message-ID: <b%d." % i, 1))
        elif b"Message-id:" in raw:
            out.append(raw.replace(b"Message-id: <", b"Message-id: <b%d." % i, 1))
        else:
            out.append(raw + b"\n<!-- %d -->" % i)
    return out


def _median_rate(fn, items, repeat: int) -> float:
    """Messages per second of *CPU time* (process_time): single-threaded pure parsing, so
    the figure does not depend on how busy the rest of the machine is."""
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        for it in items:
            fn(it)
        times.append(time.process_time() - t0)
    return len(items) / statistics.median(times)


def floor_email(raw: bytes) -> None:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    body = msg.get_body(("plain", "html"))
    if body is not None:
        body.get_content()


def floor_adf(raw: bytes) -> None:
    ET.fromstring(find_adf(raw))


def bench_parsers(n: int, repeat: int) -> None:
    cfg = EmailSettings.from_settings({})
    fmt = make_email_format(cfg)
    adf = make_adf_format(cfg)
    print(f"{'format':40} {'msgs/s':>10} {'floor msgs/s':>13} {'ratio':>7}   (CPU time, median of {repeat}, {n} messages each)")
    for label, name in SHAPES.items():
        raws = [RawCapture(p, origin="bench") for p in _variants((DATA / name).read_bytes(), n)]
        ours = _median_rate(fmt.parse, raws, repeat)
        floor = _median_rate(floor_email, [r.payload for r in raws], repeat)
        print(f"{label:40} {ours:10,.0f} {floor:13,.0f} {floor / ours:6.2f}x")
    for label, name in (("bare ADF (spec prolog)", "synthetic_spec_style_header_not_wellformed.adf.xml"), ("bare ADF (sendadf pretty)", "sendadf_minimal_pretty.adf.xml")):
        raws = [RawCapture(p, origin="bench.adf.xml") for p in _variants((DATA / name).read_bytes(), n)]
        ours = _median_rate(adf.parse, raws, repeat)
        floor = _median_rate(floor_adf, [r.payload for r in raws], repeat)
        print(f"{label:40} {ours:10,.0f} {floor:13,.0f} {floor / ours:6.2f}x")


def bench_capture(n: int) -> None:
    from corecrm.app import Crm
    from corecrm.config import Config

    from corecrm_plugins.capture_email.feed import import_mailbox

    names = ["cf7_wordpress.synthetic.eml", "german_form.synthetic.eml", "html_table.synthetic.eml", "odoo_crm_customer_request.eml"]
    payloads = []
    for i in range(n):
        raw = (DATA / names[i % len(names)]).read_bytes()
        payloads.append(_variants(raw, i + 1)[i])
    with tempfile.TemporaryDirectory() as d:
        box = mailbox.mbox(f"{d}/in.mbox")
        for p in payloads:
            box.add(p)
        box.flush()
        box.close()
        crm = Crm(Config.from_dict({"plugins": {"enabled": ["capture_email"]}}), database=f"sqlite:///{d}/crm.db")
        crm.ensure_schema()
        t0, c0 = time.perf_counter(), time.process_time()
        results = import_mailbox(crm, f"{d}/in.mbox", workspace="default", batch_size=500)
        ours, ours_cpu = time.perf_counter() - t0, time.process_time() - c0
        crm.close()
        made = sum(len(r.lead_ids) for r in results)
        con = sqlite3.connect(f"{d}/floor.db")
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE captures (id INTEGER PRIMARY KEY, origin TEXT, payload BLOB)")
        t0, c0 = time.perf_counter(), time.process_time()
        for start in range(0, n, 500):
            with con:
                con.executemany("INSERT INTO captures (origin, payload) VALUES (?, ?)", [(f"mbox#{i}", p) for i, p in enumerate(payloads[start : start + 500], start)])
        floor, floor_cpu = time.perf_counter() - t0, time.process_time() - c0
        # A second floor: what a hand-written importer does at the least — parse
        # each message with the stdlib and insert one row with sender, subject, body.
        con.execute("CREATE TABLE leads (id INTEGER PRIMARY KEY, email TEXT, name TEXT, subject TEXT, body TEXT)")
        t0, c0 = time.perf_counter(), time.process_time()
        for start in range(0, n, 500):
            rows = []
            for p in payloads[start : start + 500]:
                msg = email.message_from_bytes(p, policy=email.policy.default)
                body = msg.get_body(("plain", "html"))
                sender = msg["from"].addresses[0] if msg["from"] and msg["from"].addresses else None
                rows.append((sender.addr_spec if sender else None, sender.display_name if sender else None, str(msg["subject"] or ""), body.get_content() if body else None))
            with con:
                con.executemany("INSERT INTO captures (origin, payload) VALUES (?, ?)", [(f"mbox#{i}", p) for i, p in enumerate(payloads[start : start + 500], start)])
                con.executemany("INSERT INTO leads (email, name, subject, body) VALUES (?, ?, ?, ?)", rows)
        parse_floor, parse_floor_cpu = time.perf_counter() - t0, time.process_time() - c0
        con.close()
    print(f"\nend to end, {n} messages from an mbox → {made} leads on SQLite (store raw, parse, pipeline, persist):")
    print(f"  {'':6} {'corecrm mail import':>20} {'raw insert floor':>17} {'ratio':>7} {'stdlib parse+insert floor':>26} {'ratio':>7}")
    for label, a, b, c in (("wall", ours, floor, parse_floor), ("cpu", ours_cpu, floor_cpu, parse_floor_cpu)):
        print(f"  {label:6} {n / a:16,.0f} m/s {n / b:13,.0f} m/s {a / b:6.1f}x {n / c:22,.0f} m/s {a / c:6.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--capture", type=int, default=2000, help="messages for the end-to-end run (0: skip)")
    args = ap.parse_args()
    bench_parsers(args.n, args.repeat)
    if args.capture:
        bench_capture(args.capture)


if __name__ == "__main__":
    main()
