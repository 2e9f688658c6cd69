"""The plugin's own table: what each campaign cost, per period.

A cost row covers ``[period_start, period_end]`` (both days included). Reports
that ask for the cost of a campaign over another period pro-rate each row by
the days the two periods share, so a monthly invoice and a weekly report
agree.
"""

from __future__ import annotations

from sqlalchemy import Column, Date, DateTime, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

campaign_costs = Table(
    "analytics_campaign_costs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("workspace", String(64), nullable=False),
    Column("campaign", Text, nullable=False),
    Column("source", Text),
    Column("period_start", Date, nullable=False),
    Column("period_end", Date, nullable=False),
    Column("amount", Float, nullable=False),
    Column("note", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_analytics_campaign_costs_ws_campaign", "workspace", "campaign"),
)


