"""Test data and fixtures for the clv plugin's tests: the CDNOW sample (see tests/data/clv/SOURCE.md).

Not a conftest.py: a second conftest module would shadow the core's
``from conftest import ...``. Test modules import the fixtures they use.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent.parent / "data" / "clv"


def read_cdnow_sample() -> list[tuple[int, dt.date, float]]:
    """(sample index, date, dollar value) per line of CDNOW_sample.txt."""
    out = []
    with open(DATA / "CDNOW_sample.txt", encoding="ascii") as fh:
        for line in fh:
            _master, idx, ymd, _cds, dollars = line.split()
            out.append((int(idx), dt.date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:])), float(dollars)))
    return out


def read_summary_with_transactions() -> list[dict[str, str]]:
    with open(DATA / "cdnow_customers_summary_with_transactions.csv", newline="", encoding="ascii") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="session")
def cdnow_transactions() -> list[tuple[int, dt.date, float]]:
    return read_cdnow_sample()


@pytest.fixture(scope="session")
def cdnow_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CDNOW sample as the CSV ``corecrm transactions import`` reads."""
    path = tmp_path_factory.mktemp("cdnow") / "cdnow_sample.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["customer_id", "date", "amount"])
        for idx, day, amount in read_cdnow_sample():
            w.writerow([idx, day.isoformat(), f"{amount:.2f}"])
    return path
