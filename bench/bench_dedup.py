"""dedup benchmark: blocking + matching cost per lead, accuracy on generated duplicates, and the pipeline overhead.

Leads are generated with a fixed seed; ``--dup-rate`` of them (5 % by default)
are copies of an earlier lead with realistic damage: re-cased or re-tagged
e-mail, a typo in a name, the phone in another format, a missing field.

Measured in one run (process CPU time, median [min–max] of RUNS):

1. ``floor``: the cheapest possible de-duplication, an in-memory set of
   normalised e-mails (finds only exact e-mail repeats).
2. ``engine``: blocking keys + rule scoring over the whole set in memory
   (``match_records``), with pair completeness, precision and recall
   against the generated truth.
3. ``intake``: ``Crm.intake`` into SQLite in 5,000-lead batches, with and
   without the dedup plugin (look-ups in ``dedup_keys``, within-batch
   matching, key indexing after commit) — the per-lead cost dedup adds.
4. ``scan``: ``corecrm dedup scan`` over the stored leads (keys rebuilt in
   bulk, pairs from a self-join), wall time.

    python bench/bench_dedup.py                  # 50,000 leads, 3 runs
    python bench/bench_dedup.py --leads 200000 --runs 1

Prints medians and ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from corecrm.models import Lead

_SYL = ["an", "ber", "ca", "dor", "el", "fin", "gar", "hol", "is", "jen", "kov", "lan", "mar", "nor", "ost", "par", "quin",
        "ros", "sen", "tor", "ul", "van", "wel", "yor", "zan", "mi", "so", "ri", "ta", "lo"]
_AREAS = ["SW", "SE", "N", "E", "W", "NW", "EC", "WC", "B", "M", "L", "LS", "G", "EH", "CF", "BS", "NG", "S", "OX", "CB"]
COMPANIES = [f"Company {i} Ltd" for i in range(4000)]


def _names(rng: random.Random, n: int, parts: int) -> list[str]:
    out = set()
    while len(out) < n:
        out.add("".join(rng.choice(_SYL) for _ in range(rng.randint(2, parts))).capitalize())
    return sorted(out)


def _zipf(rng: random.Random, items: list[str]) -> str:
    """Common names are common: index drawn from a heavy-tailed distribution."""
    return items[min(len(items) - 1, int(rng.paretovariate(1.2)) - 1)] if rng.random() < 0.5 else rng.choice(items)


def make_leads(n: int, dup_rate: float, seed: int = 7) -> tuple[list[Lead], set[tuple[int, int]]]:
    rng = random.Random(seed)
    first_names, last_names = _names(rng, 400, 3), _names(rng, 8000, 4)
    leads: list[Lead] = []
    cluster: list[int] = []  # a duplicate of a duplicate belongs to the same person
    for i in range(n):
        if leads and rng.random() < dup_rate:
            j = rng.randrange(len(leads))
            orig = leads[j]
            d = copy.deepcopy(orig)
            r = rng.random()
            if r < 0.3 and d.email:
                d.email = d.email.upper()
            elif r < 0.5 and d.first_name:
                k = rng.randrange(len(d.first_name))
                d.first_name = d.first_name[:k] + d.first_name[k + 1 :] or d.first_name  # dropped letter
                d.email = None if rng.random() < 0.5 else d.email
            elif r < 0.7 and d.phone:
                d.phone = d.phone.replace("+44 ", "0").replace("+1 ", "")  # national format
                d.email = None
            else:
                d.last_name = (d.last_name or "").lower()
                d.phone = None
            leads.append(d)
            cluster.append(cluster[j])
            continue
        f, la = _zipf(rng, first_names), _zipf(rng, last_names)
        b2b = rng.random() < 0.6
        company = rng.choice(COMPANIES) if b2b else None
        domain = company.split()[1].lower() + ".example.com" if company else rng.choice(["gmail.com", "yahoo.com", "outlook.com"])
        leads.append(Lead(
            first_name=f, last_name=la, email=f"{f.lower()}.{la.lower()}{i}@{domain}",
            phone=f"+44 20 {rng.randrange(10**8):08d}" if rng.random() < 0.7 else None,
            company=company, country="GB", postal_code=f"{rng.choice(_AREAS)}{rng.randrange(1, 30)} {rng.randrange(10)}{rng.choice('ABDEFG')}{rng.choice('HJLNPQ')}",
        ))  # fmt: skip
        cluster.append(i)
    members: dict[int, list[int]] = {}
    for i, c in enumerate(cluster):
        members.setdefault(c, []).append(i)
    truth = {(x, y) for ms in members.values() for n, x in enumerate(ms) for y in ms[n + 1 :]}
    return leads, truth


def cpu(fn: Callable[[], Any], runs: int, before: Callable[[], Any] | None = None) -> list[float]:
    out = []
    for _ in range(runs):
        if before:
            before()
        t = time.process_time()
        fn()
        out.append(time.process_time() - t)
    return out


def line(name: str, secs: list[float], n: int, base: float | None) -> str:
    us = [s / n * 1e6 for s in secs]
    med = statistics.median(us)
    extra = f"  {med / base:6.2f}× baseline" if base else ""
    return f"{name:<34} {med:8.2f} µs/lead [{min(us):.2f}–{max(us):.2f}]  {n / statistics.median(secs):>9,.0f} leads/s{extra}"


def floor(leads: list[Lead]) -> int:
    seen: set[str] = set()
    dups = 0
    for lead in leads:
        if lead.email:
            k = lead.email.strip().lower()
            if k in seen:
                dups += 1
            seen.add(k)
    return dups


def make_crm(tmp: Path, name: str, plugins: list[str]) -> Any:
    from corecrm.app import Crm
    from corecrm.config import Config

    cfg = Config.from_dict({"plugins": {"enabled": plugins}}, path=tmp / f"{name}.toml")
    crm = Crm(cfg, database=f"sqlite:///{tmp / (name + '.db')}")
    crm.ensure_schema()
    return crm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--leads", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dup-rate", type=float, default=0.05)
    a = ap.parse_args()

    from corecrm_plugins.dedup import crm_plugin_settings
    from corecrm_plugins.dedup.engine import Matcher, match_records
    from corecrm_plugins.dedup.rules import config_from_settings

    leads, truth = make_leads(a.leads, a.dup_rate)
    settings = {s.key: s.default for s in crm_plugin_settings()}
    matcher = Matcher(config_from_settings(settings))
    n = a.leads
    print(f"dedup: {n:,} leads, {len(truth):,} generated duplicate pairs, {a.runs} runs")

    base = cpu(lambda: floor(leads), a.runs)
    base_us = statistics.median(base) / n * 1e6
    print(line("floor: set of normalised e-mails", base, n, None) + f"  (finds {floor(leads):,})")

    result: dict[str, Any] = {}
    eng = cpu(lambda: result.update(r=match_records(matcher, leads)), a.runs)
    found, stats = result["r"]
    predicted = {(i, j) for i, j, _ in found}
    merges = {(i, j) for i, j, o in found if o.action == "merge"}
    tp = len(predicted & truth)
    print(line("engine: keys + rules, in memory", eng, n, base_us))
    print(f"  candidate pairs {len(stats.pairs):,} (of {n * (n - 1) // 2:,}); pair completeness {len(truth & stats.pairs) / len(truth):.4f}; "
          f"precision {tp / max(1, len(predicted)):.4f} (merges alone {len(merges & truth) / max(1, len(merges)):.4f}); recall {tp / len(truth):.4f}; "
          f"merge {sum(o.action == 'merge' for *_, o in found):,}, flag {sum(o.action == 'flag' for *_, o in found):,}; "
          f"oversized blocks skipped {stats.skipped_blocks}")  # fmt: skip

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        timings: dict[str, list[float]] = {"without": [], "with": []}
        walls: dict[str, list[float]] = {"without": [], "with": []}
        for run in range(a.runs):
            for label, plugins in (("without", ["capture_json"]), ("with", ["capture_json", "dedup"])):
                crm = make_crm(tmp, f"{label}{run}", plugins)
                batch = copy.deepcopy(leads)
                t, w = time.process_time(), time.perf_counter()
                res = crm.intake(batch)
                timings[label].append(time.process_time() - t)
                walls[label].append(time.perf_counter() - w)
                if label == "with":
                    stored = len(res.created)
                    merged = len(res.merged)
                crm.close()
        wo = statistics.median(timings["without"]) / n * 1e6
        print(line("intake without dedup (pipeline floor)", timings["without"], n, None) + f"  wall {statistics.median(walls['without']):.2f} s")
        print(line("intake with dedup", timings["with"], n, wo) + f"  wall {statistics.median(walls['with']):.2f} s")
        print(f"  dedup adds {(statistics.median(timings['with']) - statistics.median(timings['without'])) / n * 1e6:.2f} µs/lead; "
              f"stored {stored:,}, merged {merged:,} (generated duplicate pairs {len(truth):,})")

        from corecrm_plugins.dedup.scan import scan

        crm = make_crm(tmp, "without0", ["capture_json", "dedup"])
        t, w = time.process_time(), time.perf_counter()
        report = scan(crm, crm.ws(None), crm.plugins.settings("dedup"))
        c, w = time.process_time() - t, time.perf_counter() - w
        print(f"{'scan over stored leads':<34} {c / n * 1e6:8.2f} µs/lead (cpu {c:.2f} s, wall {w:.2f} s): "
              f"{report['keys']:,} keys, {report['candidate_pairs']:,} candidate pairs, {report['merge']:,} to merge, {report['flag']:,} to flag")
        crm.close()


if __name__ == "__main__":
    main()
