"""Bundled plugin ``clv``: customer lifetime value, RFM segments and the 80/20 view.

Modules, one job each: :mod:`.summary` (per-customer BTYD summary),
:mod:`.models` (BG/NBD, Pareto/NBD, Gamma-Gamma likelihoods and fits),
:mod:`.value` (predictions and CLV), :mod:`.rfm` (quintiles, segments, Pareto).
"""
