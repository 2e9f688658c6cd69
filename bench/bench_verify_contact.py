"""verify_contact benchmark: per-lead cost of verification and screening, against baselines from the same run.

Leads are generated with a fixed seed in the shapes lead files have: names
in any case, e-mails at business and free-mail domains (a few typos and
disposable ones), phones typed in national or international format with
separators, countries as codes, names and aliases, postal codes.

Measured as process CPU time (the timed code is single-threaded, and CPU
time stays meaningful on a shared, loaded machine), µs per lead, median
[min–max] of RUNS:

* ``floor``: a loop touching the same six fields with ``str.strip().lower()``.
* ``library``: the libraries called per value as their docs show
  (email-validator, phonenumbers parse/is_valid/format, pycountry lookup),
  no cache and no fast path, on a subsample.
* ``verify cold``: ``crm_verify_leads`` on fresh leads with every cache empty.
* ``verify warm``: the same batch again (caches filled: re-imports, repeats).
* ``screen``: ``crm_screen_leads`` after verification.

    python bench/bench_verify_contact.py                # 100,000 leads, 3 runs
    python bench/bench_verify_contact.py --leads 200000 --runs 5

Prints medians and ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any, Callable

from corecrm.models import Lead

FIRST = ["emma", "LIAM", "Olivia", "noah", "Ava", "LUCAS", "Mia", "leon", "Sofia", "Mateo", "jean-luc", "MARY ANN"]
LAST = ["smith", "JONES", "Müller", "dubois", "Rossi", "García", "o'brien", "van der berg", "McDonald", "NOWAK"]
BUSINESS = [f"company{i}.com" for i in range(3000)] + [f"firma{i}.de" for i in range(1000)] + [f"societe{i}.fr" for i in range(500)]
FREE = ["gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "gmx.de", "orange.fr", "icloud.com"]
TYPOS = ["gmial.com", "gamil.com", "hotmial.com", "yahooo.com", "outlok.com"]
DISPOSABLE = ["mailinator.com", "10minutemail.com", "guerrillamail.com"]
COUNTRIES = [
    ("GB", ["GB", "UK", "United Kingdom", "england", "gb"], "020 7946 {:04d}", "+44 20 7946 {:04d}", "SW1A {}AA"),
    ("US", ["US", "USA", "United States", "us"], "(202) 555-{:04d}", "+1 202-555-{:04d}", "9410{}"),
    ("DE", ["DE", "Germany", "Deutschland"], "030 {:08d}", "+49 30 {:08d}", "1011{}"),
    ("FR", ["FR", "France", "france"], "01 42 68 {:04d}", "+33 1 42 68 {:04d}", "7500{}"),
]


def make_leads(n: int, seed: int = 42) -> list[Lead]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        code, names, national, intl, postal = rng.choice(COUNTRIES)
        r = rng.random()
        domain = rng.choice(TYPOS) if r < 0.01 else rng.choice(DISPOSABLE) if r < 0.02 else rng.choice(FREE) if r < 0.45 else rng.choice(BUSINESS)
        first, last = rng.choice(FIRST), rng.choice(LAST)
        local = f"{first.split()[0].lower()}.{last.split()[-1].lower()}{i}"
        digits = rng.randrange(10**8 if code == "DE" else 10**4)
        phone = (national if rng.random() < 0.6 else intl).format(digits)
        out.append(Lead(
            first_name=first if rng.random() < 0.9 else f"{first} {last}", last_name=last if rng.random() < 0.9 else None,
            email=local + "@" + (domain.upper() if rng.random() < 0.05 else domain), phone=phone,
            country=rng.choice(names), postal_code=postal.format(rng.randrange(10)), source="web",
        ))  # fmt: skip
    return out


def timed(fn: Callable[[], Any], runs: int, before: Callable[[], None] | None = None) -> list[float]:
    out = []
    for _ in range(runs):
        if before:
            before()
        t = time.process_time()
        fn()
        out.append(time.process_time() - t)
    return out


def clear_caches() -> None:
    from corecrm_plugins.verify_contact import emails, geo, names, phones

    for f in (emails.check_email, emails.suggest_domain, emails.is_disposable, phones._check, phones.region_of_e164, geo.normalise_country,
              geo.normalise_region, geo.check_postal_code, names.title_case, names.split_full_name):  # fmt: skip
        f.cache_clear()


def floor(leads: list[Lead]) -> None:
    for lead in leads:
        for v in (lead.first_name, lead.last_name, lead.email, lead.phone, lead.country, lead.postal_code):
            if v:
                v.strip().lower()


def library(leads: list[Lead]) -> None:
    import phonenumbers as pn
    import pycountry
    from email_validator import EmailNotValidError, validate_email

    for lead in leads:
        try:
            validate_email(lead.email, check_deliverability=False)
        except EmailNotValidError:
            pass
        try:
            c = pycountry.countries.lookup(lead.country).alpha_2
        except LookupError:
            c = None
        try:
            num = pn.parse(lead.phone, c)
            pn.is_valid_number(num)
            pn.format_number(num, pn.PhoneNumberFormat.E164)
        except pn.NumberParseException:
            pass


def fmt(name: str, secs: list[float], n: int, base: float | None) -> str:
    us = [s / n * 1e6 for s in secs]
    med = statistics.median(us)
    ratio = f"  {med / base:6.1f}× floor" if base else ""
    return f"{name:<28} {med:8.2f} µs/lead [{min(us):.2f}–{max(us):.2f}]  {n / statistics.median(secs):>10,.0f} leads/s{ratio}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--leads", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--library-sample", type=int, default=5_000)
    a = ap.parse_args()

    from corecrm_plugins import verify_contact
    from corecrm_plugins.verify_contact.screen import screen_batch
    from corecrm_plugins.verify_contact.verify import verify_batch

    settings = {s.key: s.default for s in verify_contact.crm_plugin_settings()}
    leads = make_leads(a.leads)
    sample = leads[: a.library_sample]
    verify_batch(leads[:100], settings)  # imports and metadata loading out of the timings
    library(sample[:100])

    base = timed(lambda: floor(leads), a.runs)
    base_us = statistics.median(base) / a.leads * 1e6
    lib = timed(lambda: library(sample), a.runs)
    cold = timed(lambda: verify_batch(leads, settings), a.runs, before=clear_caches)
    warm = timed(lambda: verify_batch(leads, settings), a.runs)
    records = verify_batch(leads, settings)
    applied = apply(leads, records)
    scr = timed(lambda: screen_batch(applied, settings), a.runs)

    print(f"verify_contact: {a.leads:,} leads, {a.runs} runs, library on {len(sample):,}")
    print(fmt("floor (strip/lower)", base, a.leads, None))
    print(fmt("library per value", lib, len(sample), base_us))
    print(fmt("verify cold (batch path)", cold, a.leads, base_us))
    print(fmt("verify warm (cached)", warm, a.leads, base_us))
    print(fmt("screen", scr, a.leads, base_us))
    lib_us, cold_us = statistics.median(lib) / len(sample), statistics.median(cold) / a.leads
    print(f"library / batch path (cold): {lib_us / cold_us:.2f}×; records per lead: {len(records) / a.leads:.2f}")


def apply(leads: list[Lead], records: list[Any]) -> list[Lead]:
    import copy

    from corecrm.records import FieldUpdate

    out = [copy.copy(lead) for lead in leads]
    for r in records:
        if isinstance(r, FieldUpdate):
            setattr(out[r.index], r.field, r.value)
    return out


if __name__ == "__main__":
    main()
