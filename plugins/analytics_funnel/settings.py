"""The plugin's ``[plugins.analytics_funnel]`` settings, with deep validation."""

from __future__ import annotations

from typing import Any

from corecrm.errors import ConfigError
from corecrm.lifecycle import MAIN_LINE, Stage
from corecrm.records import Setting

#: Event types that count as marketing touchpoints (besides the capture itself).
DEFAULT_TOUCH_TYPES = ["form_submitted", "email_clicked", "link_clicked", "page_visited", "demo_booked", "ad_clicked"]

DEFAULTS: dict[str, Any] = {
    "half_life_days": 7.0,
    "position_weights": [0.4, 0.2, 0.4],
    "touch_types": list(DEFAULT_TOUCH_TYPES),
    "lookback_days": 90,
    "funnel_stages": [s.value for s in MAIN_LINE if s is not Stage.PROSPECT],
    "qualified_stage": Stage.MQL.value,
    "economics_model": "linear",
    "at_risk_p_alive": 0.5,
    "percentiles": [0.5, 0.9, 0.95],
}

MODELS = ("first_touch", "last_touch", "linear", "time_decay", "position_based")


def _positive(value: Any, key: str) -> Any:
    if value <= 0:
        raise ConfigError(f"expected a positive number, got {value!r}", key=key)
    return value


def _weights(value: Any, key: str) -> list[float]:
    if len(value) != 3:
        raise ConfigError(f"expected [first, middle, last], got {len(value)} numbers", key=key)
    for i, w in enumerate(value):
        if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
            raise ConfigError(f"expected a non-negative number, got {w!r}", key=f"{key}[{i}]")
    if abs(sum(value) - 1.0) > 1e-9:
        raise ConfigError(f"the three weights must sum to 1, got {sum(value)!r}", key=key)
    return [float(w) for w in value]


def _strings(value: Any, key: str) -> list[str]:
    for i, v in enumerate(value):
        if not isinstance(v, str) or not v.strip():
            raise ConfigError(f"expected a non-empty string, got {v!r}", key=f"{key}[{i}]")
    return list(value)


def _stages(value: Any, key: str) -> list[str]:
    order = [s.value for s in MAIN_LINE]
    _strings(value, key)
    last = -1
    for i, v in enumerate(value):
        if v not in order:
            raise ConfigError(f"not a main-line stage: {v!r} (valid: {', '.join(order)})", key=f"{key}[{i}]")
        if order.index(v) <= last:
            raise ConfigError(f"stages must follow the lifecycle order ({' → '.join(order)})", key=f"{key}[{i}]")
        last = order.index(v)
    if not value:
        raise ConfigError("expected at least one stage", key=key)
    return list(value)


def _percentiles(value: Any, key: str) -> list[float]:
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise ConfigError(f"expected a number between 0 and 1, got {v!r}", key=f"{key}[{i}]")
    return [float(v) for v in value]


def declared() -> list[Setting]:
    return [
        Setting("half_life_days", "float", DEFAULTS["half_life_days"], "time-decay attribution: a touch this many days before the sale counts half", validate=_positive),
        Setting("position_weights", "list", DEFAULTS["position_weights"], "position-based attribution: share of the first, the middle touches together, the last", validate=_weights),
        Setting("touch_types", "list", DEFAULTS["touch_types"], "event types that are marketing touchpoints (detail.campaign / detail.source)", validate=_strings),
        Setting("lookback_days", "int", DEFAULTS["lookback_days"], "attribution: touches older than this before the sale are ignored (the capture always counts)", validate=_positive),
        Setting("funnel_stages", "list", DEFAULTS["funnel_stages"], "lifecycle stages the funnel shows, in order", validate=_stages),
        Setting("qualified_stage", "str", DEFAULTS["qualified_stage"], "stage from which a lead counts as qualified (campaign economics)", choices=[s.value for s in MAIN_LINE]),
        Setting("economics_model", "str", DEFAULTS["economics_model"], "attribution model campaign economics uses for revenue", choices=list(MODELS)),
        Setting("at_risk_p_alive", "float", DEFAULTS["at_risk_p_alive"], "retention: a customer whose P(alive) from a customer-value plugin is below this is at risk"),
        Setting("percentiles", "list", DEFAULTS["percentiles"], "speed to lead: percentiles to show", validate=_percentiles),
    ]
