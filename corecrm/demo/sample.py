"""Realistic, deterministic sample data for the demo (fixed seed).

People, companies, countries and campaigns drawn from small curated lists;
about 4 % of leads come back a second time with a re-cased e-mail (the
de-duplication plugin merges them); a few have typos or a disposable address
(the verification plugin flags them).
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

FIRST = ["Emma", "Liam", "Olivia", "Noah", "Ava", "Lucas", "Mia", "Leon", "Sofia", "Mateo", "Hannah", "Jonas", "Chloé", "Hugo", "Giulia",
         "Marco", "Aiko", "Ravi", "Priya", "Kwame", "Ingrid", "Lars", "Zoë", "Daan", "Fatima", "Omar", "Grace", "Henry", "Isla", "Jack"]  # fmt: skip
LAST = ["Smith", "Jones", "Müller", "Schmidt", "Dubois", "Martin", "Rossi", "Bianchi", "García", "López", "Tanaka", "Sato", "Patel", "Singh",
        "Mensah", "Larsen", "Jansen", "de Vries", "Nowak", "Kowalski", "O'Brien", "Murphy", "Brown", "Wilson", "Taylor", "Evans", "Walker", "Khan"]  # fmt: skip
COMPANIES = [("Northwind Traders", "northwind.example"), ("Contoso Retail", "contoso.example"), ("Fabrikam Shoes", "fabrikam.example"),
             ("Tailspin Outdoor", "tailspin.example"), ("Wide World Importers", "wideworld.example"), ("Adventure Works", "adventure-works.example"),
             ("Litware Labs", "litware.example"), ("Proseware", "proseware.example"), ("Lucerne Publishing", "lucerne.example"),
             ("Coho Vineyard", "coho.example"), ("Fourth Coffee", "fourthcoffee.example"), ("Alpine Ski House", "alpineskihouse.example")]  # fmt: skip
FREEMAIL = ["gmail.com", "yahoo.com", "outlook.com", "gmx.de", "orange.fr"]
PLACES = [("GB", "GB-ENG", "London", "SW1A 1AA"), ("GB", "GB-SCT", "Edinburgh", "EH1 1YZ"), ("DE", "DE-BE", "Berlin", "10115"),
          ("DE", "DE-BY", "Munich", "80331"), ("FR", "FR-IDF", "Paris", "75001"), ("IT", "IT-MI", "Milan", "20121"),
          ("ES", "ES-MD", "Madrid", "28013"), ("NL", "NL-NH", "Amsterdam", "1012 JS"), ("US", "US-NY", "New York", "10001"),
          ("US", "US-CA", "San Francisco", "94103"), ("JP", "JP-13", "Tokyo", "100-0001")]  # fmt: skip
PHONE_PREFIX = {"GB": "+44 20 7946 0", "DE": "+49 30 901820", "FR": "+33 1 70 36 ", "IT": "+39 02 8088 ", "ES": "+34 91 123 ",
                "NL": "+31 20 794 ", "US": "+1 212 555 0", "JP": "+81 3 4578 "}  # fmt: skip
SOURCES = [("web", 0.34, ["spring_sale", "newsletter", None]), ("ads", 0.24, ["search_brand", "social_retarget"]),
           ("referral", 0.12, [None]), ("trade_show", 0.10, ["expo_2026"]), ("partner", 0.12, ["reseller_q1"]),
           ("email", 0.08, ["newsletter"])]  # fmt: skip
INTERESTS = ["shoes", "bags", "outdoor", "fashion", "accessories", "sportswear"]
TITLES = ["Buyer", "Head of Purchasing", "Owner", "CEO", "Store Manager", "Marketing Manager", "Analyst", None]


def _pick_source(rng: random.Random) -> tuple[str, str | None]:
    r = rng.random()
    acc = 0.0
    for name, share, campaigns in SOURCES:
        acc += share
        if r <= acc:
            return name, rng.choice(campaigns)
    return "web", None


def leads(n: int = 1200, seed: int = 7) -> list[dict[str, Any]]:
    """Lead documents in the ``leads show --json`` shape (plus free attributes)."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(n):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        country, region, city, postal = rng.choice(PLACES)
        b2b = rng.random() < 0.6
        company, domain = rng.choice(COMPANIES) if b2b else (None, rng.choice(FREEMAIL))
        local = f"{first}.{last}".lower().replace(" ", "").replace("'", "").replace("ü", "ue").replace("é", "e").replace("ë", "e").replace("í", "i")
        email = f"{local}{i}@{domain}"
        if rng.random() < 0.02:
            email = email.replace("gmail.com", "gmial.com")
        if rng.random() < 0.01:
            email = f"{local}{i}@mailinator.com"
        source, campaign = _pick_source(rng)
        doc: dict[str, Any] = {
            "first_name": first,
            "last_name": last,
            "email": email,
            "phone": PHONE_PREFIX[country] + f"{rng.randrange(100, 999)}" if rng.random() < 0.8 else None,
            "company": company,
            "title": rng.choice(TITLES) if b2b else None,
            "country": country,
            "region": region,
            "city": city,
            "postal_code": postal,
            "source": source,
            "campaign": campaign,
            "interests": rng.sample(INTERESTS, rng.choice([0, 1, 1, 2, 3])),
        }
        if rng.random() < 0.3:
            doc["budget"] = rng.choice([500, 2000, 10000, 50000])
        if rng.random() < 0.15:
            doc["employees"] = rng.choice([5, 40, 250, 1200])
        out.append({k: v for k, v in doc.items() if v is not None})
        if rng.random() < 0.04:  # the same person again, from another form
            dup = dict(out[-1])
            dup["email"] = dup["email"].upper()
            dup.pop("phone", None)
            dup["source"] = "web"
            out.append(dup)
    return out


def transactions(customer_ids: list[int], *, start: dt.date, end: dt.date, seed: int = 11) -> list[dict[str, Any]]:
    """Purchases with a realistic spread: most buy once or twice, a few often."""
    rng = random.Random(seed)
    days = (end - start).days
    rows = []
    for cid in customer_ids:
        rate = rng.choice([0.0, 0.01, 0.02, 0.05, 0.1])
        spend = rng.choice([40, 80, 150, 400])
        day = rng.randrange(0, max(days // 3, 1))
        while day <= days:
            amount = round(rng.lognormvariate(0, 0.4) * spend, 2)
            rows.append({"customer_id": cid, "at": start + dt.timedelta(days=day), "amount": amount, "cost": round(amount * 0.6, 2)})
            if rate == 0:
                break
            day += max(1, int(rng.expovariate(rate)))
    return rows
