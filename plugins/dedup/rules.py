"""Match rules and blocking keys: the TOML shapes, their validation and the defaults.

A **blocking key** is a list of parts, each ``function(field)`` or a bare
field; a lead gets the key only when every part is non-empty. Two leads are
compared only when they share at least one key (the union of cheap keys finds
almost every true pair for a tiny fraction of all pairs; a single key loses
about half).

A **rule** is a list of field comparisons; it holds when every comparison
marked ``required`` passes and at least ``require`` comparisons pass in all.
Its score is the mean similarity over the compared fields both leads have.
A pair scoring ``merge_at`` or more is merged, one scoring ``flag_at`` or more
is flagged as a possible duplicate; the best holding rule decides.

The default rules follow the spirit of Salesforce's standard lead matching
rule: (first AND last AND e-mail) OR (first AND last AND phone) OR (first AND
last AND street AND (city OR postal code OR phone)) OR (first AND last AND
company AND title), first names fuzzy at 0.85 and surnames at 0.90,
transposed first/last names allowed, blank fields never matching.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import attrs

from corecrm.errors import ConfigError

#: Comparator → (normaliser name, default minimum similarity).
COMPARATORS: dict[str, tuple[str, float]] = {
    "exact": ("fold", 1.0),
    "email": ("email_key", 1.0),
    "phone": ("phone_key", 1.0),
    "name": ("fold", 0.85),
    "jaro_winkler": ("fold", 0.85),
    "ratio": ("fold", 0.85),
    "token_set": ("fold", 0.85),
    "company": ("company_key", 0.85),
    "postal": ("postal", 1.0),
    "date": ("digits", 1.0),
}
#: Functions a blocking key part may apply to a field.
KEY_FUNCTIONS = (
    "value", "fold", "email_key", "email_domain", "business_domain", "phone_key", "company_key",
    "metaphone", "postal", "initial", "digits", "prefix2", "prefix3", "prefix4",
)
ACTIONS = ("merge", "flag")
_PART = re.compile(r"^(?:(?P<fn>[a-z_0-9]+)\((?P<arg>[a-z_.0-9]+)\)|(?P<bare>[a-z_.0-9]+))$")


@attrs.frozen
class FieldRule:
    field: str
    compare: str
    min: float
    required: bool = False


@attrs.frozen
class Rule:
    name: str
    fields: tuple[FieldRule, ...]
    require: int
    merge_at: float | None
    flag_at: float
    swap_names: bool = True


@attrs.frozen
class BlockKey:
    name: str
    parts: tuple[tuple[str, str], ...]  #: (function, field)


@attrs.frozen
class MatchConfig:
    keys: tuple[BlockKey, ...]
    rules: tuple[Rule, ...]
    max_block_size: int = 25


BUILTIN_KEYS: dict[str, list[str]] = {
    "email": ["email_key(email)"],
    "phone": ["phone_key(phone)"],
    "domain_initial": ["business_domain(email)", "initial(first_name)"],
    "surname_postal": ["metaphone(last_name)", "prefix3(postal_code)"],
    "company_country": ["company_key(company)", "country"],
}
DEFAULT_KEYS: list[Any] = list(BUILTIN_KEYS)

DEFAULT_RULES: list[dict[str, Any]] = [
    {
        "name": "name_email",
        "merge_at": 0.9,
        "fields": [
            {"field": "email", "compare": "email", "required": True},
            {"field": "first_name", "compare": "name", "min": 0.85},
            {"field": "last_name", "compare": "name", "min": 0.9},
        ],
    },
    {
        # Same mailbox, different or missing names: a shared or reused address. Flag only.
        "name": "same_email",
        "fields": [{"field": "email", "compare": "email"}],
    },
    {
        "name": "name_phone",
        "merge_at": 0.95,
        "fields": [
            {"field": "first_name", "compare": "name", "min": 0.85},
            {"field": "last_name", "compare": "name", "min": 0.9},
            {"field": "phone", "compare": "phone"},
        ],
    },
    {
        "name": "name_street",
        "merge_at": 0.95,
        "require": 4,
        "fields": [
            {"field": "first_name", "compare": "name", "min": 0.85, "required": True},
            {"field": "last_name", "compare": "name", "min": 0.9, "required": True},
            {"field": "attributes.street", "compare": "ratio", "min": 0.9, "required": True},
            {"field": "city", "compare": "exact"},
            {"field": "postal_code", "compare": "postal"},
            {"field": "phone", "compare": "phone"},
        ],
    },
    {
        "name": "name_company_title",
        "merge_at": 0.97,
        "fields": [
            {"field": "first_name", "compare": "name", "min": 0.85},
            {"field": "last_name", "compare": "name", "min": 0.9},
            {"field": "company", "compare": "company", "min": 0.9},
            {"field": "title", "compare": "token_set", "min": 0.85},
        ],
    },
    {
        "name": "name_company",
        "fields": [
            {"field": "first_name", "compare": "name", "min": 0.85},
            {"field": "last_name", "compare": "name", "min": 0.9},
            {"field": "company", "compare": "company", "min": 0.9},
        ],
    },
]


def _err(msg: str, key: str) -> ConfigError:
    return ConfigError(msg, key=key)


def _check_field_name(name: Any, key: str) -> str:
    from corecrm.models import Lead

    if not isinstance(name, str) or not name:
        raise _err(f"expected a lead field name, got {name!r}", key)
    if not name.startswith("attributes.") and name not in attrs.fields_dict(Lead):
        raise _err(f"unknown lead field {name!r} (use a lead field or attributes.<key>)", key)
    return name


def parse_key(spec: Any, key: str) -> BlockKey:
    """``"email"`` (built in), or ``{name = "dob", parts = ["attributes.dob"]}``."""
    if isinstance(spec, str):
        if spec not in BUILTIN_KEYS:
            raise _err(f"unknown blocking key {spec!r} (built in: {', '.join(BUILTIN_KEYS)}; or a table with name and parts)", key)
        name, parts = spec, BUILTIN_KEYS[spec]
    elif isinstance(spec, Mapping):
        unknown = set(spec) - {"name", "parts"}
        if unknown:
            raise _err(f"unknown key {sorted(unknown)[0]!r} (a blocking key has name and parts)", key)
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise _err("a blocking key needs a name", f"{key}.name")
        parts = spec.get("parts")
        if not isinstance(parts, list) or not parts:
            raise _err("expected a non-empty list such as [\"metaphone(last_name)\", \"prefix3(postal_code)\"]", f"{key}.parts")
    else:
        raise _err(f"expected a key name or a table, got {spec!r}", key)
    out = []
    for n, part in enumerate(parts):
        pkey = f"{key}.parts[{n}]" if isinstance(spec, Mapping) else key
        m = _PART.match(part) if isinstance(part, str) else None
        if m is None:
            raise _err(f"expected function(field) or field, got {part!r}", pkey)
        fn, field = (m.group("fn"), m.group("arg")) if m.group("fn") else ("value", m.group("bare"))
        if fn not in KEY_FUNCTIONS:
            raise _err(f"unknown key function {fn!r} (known: {', '.join(KEY_FUNCTIONS)})", pkey)
        out.append((fn, _check_field_name(field, pkey)))
    return BlockKey(name, tuple(out))


def parse_rule(spec: Any, key: str) -> Rule:
    if not isinstance(spec, Mapping):
        raise _err(f"expected a table, got {spec!r}", key)
    unknown = set(spec) - {"name", "fields", "require", "merge_at", "flag_at", "swap_names"}
    if unknown:
        raise _err("unknown key (a rule has name, fields, require, merge_at, flag_at, swap_names)", f"{key}.{sorted(unknown)[0]}")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise _err("a rule needs a name", f"{key}.name")
    fields_spec = spec.get("fields")
    if not isinstance(fields_spec, list) or not fields_spec:
        raise _err("expected a non-empty list of {field, compare, min, required}", f"{key}.fields")
    fields = []
    for n, f in enumerate(fields_spec):
        fkey = f"{key}.fields[{n}]"
        if not isinstance(f, Mapping):
            raise _err(f"expected a table, got {f!r}", fkey)
        bad = set(f) - {"field", "compare", "min", "required"}
        if bad:
            raise _err("unknown key (a field comparison has field, compare, min, required)", f"{fkey}.{sorted(bad)[0]}")
        field = _check_field_name(f.get("field"), f"{fkey}.field")
        compare = f.get("compare", "exact")
        if compare not in COMPARATORS:
            raise _err(f"unknown comparator {compare!r} (known: {', '.join(COMPARATORS)})", f"{fkey}.compare")
        minimum = f.get("min", COMPARATORS[compare][1])
        if isinstance(minimum, bool) or not isinstance(minimum, (int, float)) or not 0 <= minimum <= 1:
            raise _err(f"expected a similarity between 0 and 1, got {minimum!r}", f"{fkey}.min")
        required = f.get("required", False)
        if not isinstance(required, bool):
            raise _err(f"expected true or false, got {required!r}", f"{fkey}.required")
        fields.append(FieldRule(field, compare, float(minimum), required))
    require = spec.get("require", len(fields))
    if isinstance(require, bool) or not isinstance(require, int) or not 1 <= require <= len(fields):
        raise _err(f"expected a whole number from 1 to {len(fields)} (the number of fields), got {require!r}", f"{key}.require")
    if sum(f.required for f in fields) > require:
        raise _err("fewer comparisons required in all than are marked required", f"{key}.require")
    merge_at = spec.get("merge_at")
    flag_at = spec.get("flag_at", 0.0)
    for k, v in (("merge_at", merge_at), ("flag_at", flag_at)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1):
            raise _err(f"expected a score between 0 and 1, got {v!r}", f"{key}.{k}")
    swap = spec.get("swap_names", True)
    if not isinstance(swap, bool):
        raise _err(f"expected true or false, got {swap!r}", f"{key}.swap_names")
    return Rule(name, tuple(fields), require, None if merge_at is None else float(merge_at), float(flag_at), swap)


def validate_keys(value: Any, key: str) -> None:
    if not isinstance(value, list) or not value:
        raise _err("expected a non-empty list of blocking keys", key)
    names = set()
    for n, spec in enumerate(value):
        k = parse_key(spec, f"{key}[{n}]")
        if k.name in names:
            raise _err(f"blocking key {k.name!r} given twice", f"{key}[{n}]")
        names.add(k.name)


def validate_rules(value: Any, key: str) -> None:
    if not isinstance(value, list) or not value:
        raise _err("expected a non-empty list of rules ([[plugins.dedup.rules]])", key)
    names = set()
    for n, spec in enumerate(value):
        r = parse_rule(spec, f"{key}[{n}]")
        if r.name in names:
            raise _err(f"rule name {r.name!r} used twice", f"{key}[{n}].name")
        names.add(r.name)


def config_from_settings(settings: Mapping[str, Any], prefix: str = "plugins.dedup") -> MatchConfig:
    keys = settings.get("blocking_keys") or DEFAULT_KEYS
    rules = settings.get("rules") or DEFAULT_RULES
    return MatchConfig(
        keys=tuple(parse_key(k, f"{prefix}.blocking_keys[{n}]") for n, k in enumerate(keys)),
        rules=tuple(parse_rule(r, f"{prefix}.rules[{n}]") for n, r in enumerate(rules)),
        max_block_size=int(settings.get("max_block_size", 25)),
    )
