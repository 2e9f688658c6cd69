"""RFM segment rules: the default map and the deep check of ``[[plugins.clv.segments]]``.

Kept free of numpy so that declaring the plugin's settings stays cheap.
"""

from __future__ import annotations

from typing import Any

from corecrm.errors import ConfigError

#: The default segment map (the widely used RF grid, with M for champions).
#: Each rule names a segment and an inclusive [low, high] score range per
#: dimension it constrains; the first matching rule wins; others are "other".
DEFAULT_SEGMENTS: list[dict[str, Any]] = [
    {"name": "champions", "r": [4, 5], "f": [4, 5], "m": [4, 5]},
    {"name": "loyal", "r": [3, 5], "f": [4, 5]},
    {"name": "cant_lose", "r": [1, 1], "f": [5, 5]},
    {"name": "at_risk", "r": [1, 2], "f": [3, 5]},
    {"name": "potential_loyalist", "r": [4, 5], "f": [2, 3]},
    {"name": "new_customers", "r": [5, 5], "f": [1, 1]},
    {"name": "promising", "r": [4, 4], "f": [1, 1]},
    {"name": "need_attention", "r": [3, 3], "f": [3, 3]},
    {"name": "about_to_sleep", "r": [3, 3], "f": [1, 2]},
    {"name": "lost", "r": [1, 1], "f": [1, 1]},
    {"name": "hibernating", "r": [1, 2], "f": [1, 2]},
]
OTHER = "other"


def validate_segments(value: Any, key: str) -> list[dict[str, Any]]:
    """Deep check of ``plugins.clv.segments``; errors name ``segments[i].r`` etc."""
    if not isinstance(value, list):
        raise ConfigError(f"expected a list of segment rules, got {type(value).__name__}", key=key)
    out = []
    seen: set[str] = set()
    for i, rule in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(rule, dict):
            raise ConfigError("expected a table with name and r/f/m ranges", key=where)
        unknown = set(rule) - {"name", "r", "f", "m"}
        if unknown:
            raise ConfigError("unknown key (valid: name, r, f, m)", key=f"{where}.{sorted(unknown)[0]}")
        name = rule.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("expected a segment name", key=f"{where}.name")
        if name in seen:
            raise ConfigError(f"duplicate segment {name!r}", key=f"{where}.name")
        seen.add(name)
        clean: dict[str, Any] = {"name": name}
        for dim in ("r", "f", "m"):
            if dim not in rule:
                continue
            rng = rule[dim]
            if isinstance(rng, int) and not isinstance(rng, bool):
                rng = [rng, rng]
            if (
                not isinstance(rng, list)
                or len(rng) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in rng)
                or not 1 <= rng[0] <= rng[1] <= 5
            ):
                raise ConfigError(f"expected a score 1..5 or a range [low, high] within 1..5, got {rule[dim]!r}", key=f"{where}.{dim}")
            clean[dim] = list(rng)
        if len(clean) == 1:
            raise ConfigError("a segment needs at least one of r, f, m", key=where)
        out.append(clean)
    return out
