"""The main job: `corecrm demo` builds a CRM from sample data and every bundled plugin takes part."""

from __future__ import annotations

import json
import subprocess
import sys


def test_demo_runs_end_to_end_with_every_bundled_plugin(tmp_path):
    out = subprocess.run([sys.executable, "-m", "corecrm.cli", "demo", "--dir", str(tmp_path / "demo"), "--json"], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    rep = json.loads(out.stdout)
    facts = rep["facts"]
    assert {"capture_json", "scoring_basic", "routing_geo", "clv", "dedup", "verify_contact", "analytics_funnel"} <= set(facts["plugins"])
    assert facts["leads"] > 1000 and facts["customers"] > 50 and facts["transactions"] > facts["customers"]
    assert all(step["ok"] for step in facts["steps"]), facts["steps"]
    # funnel by source: every source reached customers, and counts shrink down the funnel
    rows = rep["funnel_by_source"]["rows"]
    assert {r[0] for r in rows} >= {"web", "ads", "referral"}
    for r in rows:
        counts = r[1:-1]
        assert counts == sorted(counts, reverse=True)
        if r[0] in ("web", "ads", "referral", "partner", "trade_show"):
            assert counts[-1] > 0, r
    # assignments per rep come from the routing plugin
    assert sum(a["leads"] for a in rep["assignments"] if a["owner"]) > 500
    # top leads explain their score, and the contributions add up
    top = rep["top_leads"][0]
    assert top["why"] and sum(c["points"] for c in top["why"]) == top["score"]
    assert {c["plugin"] for c in top["why"]} == {"scoring_basic"}
    # customer value: predicted by the clv plugin after the demo's `clv fit` / `clv predict`
    assert all(cv["predicted_by"] == "clv" and cv["predicted"] > 0 for cv in rep["customer_value"])
    assert {"funnel", "attribution", "rfm", "scoring", "routing"} <= set(rep["reports"])
    assert not [name for name, r in rep["reports"].items() if "error" in r]
    # the CRM it built stays usable
    lead_id = top["id"]
    expl = subprocess.run([sys.executable, "-m", "corecrm.cli", "--config", str(tmp_path / "demo" / "corecrm.toml"), "explain", str(lead_id)], capture_output=True, text=True, timeout=300)
    assert expl.returncode == 0 and "why this score" in expl.stdout and "assigned" in expl.stdout
