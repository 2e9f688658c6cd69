"""Validation of plugin settings against what each plugin declares.

A plugin declares its keys with ``crm_plugin_settings``; the core checks the
``[plugins.<name>]`` table and every ``[workspaces.<ws>.plugins.<name>]``
override against that declaration, fills defaults, and names the key path
in every error. A secret is written as ``{ env = "VAR" }`` so it never sits
in the TOML file; it is resolved when the plugin asks for its settings.
"""

from __future__ import annotations

import copy
import os
import warnings
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from corecrm.errors import ConfigError
from corecrm.records import Setting

_PY_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
}


class UnknownSettingWarning(UserWarning):
    """A key under ``[plugins.<name>]`` that the plugin does not declare."""


def is_env_ref(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"env"} and isinstance(value["env"], str)


def resolve_env(value: Any, key: str, where: str) -> Any:
    """Replace ``{env = "VAR"}`` by the variable's value, recursively."""
    if is_env_ref(value):
        var = value["env"]
        if var not in os.environ:
            raise ConfigError(f"environment variable {var} is not set", path=where, key=key)
        return os.environ[var]
    if isinstance(value, dict):
        return {k: resolve_env(v, f"{key}.{k}", where) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env(v, f"{key}[{i}]", where) for i, v in enumerate(value)]
    return value


def check_value(decl: Setting, value: Any, key: str, where: str) -> Any:
    """Check one value's type (and choices, and deep validation); return it, converted where lossless."""
    if is_env_ref(value):
        return value  # resolved lazily, when the plugin reads its settings
    if decl.type != "any":
        types = _PY_TYPES[decl.type]
        if isinstance(value, bool) and decl.type in ("int", "float"):
            raise ConfigError(f"expected {decl.type}, got bool", path=where, key=key)
        if not isinstance(value, types):
            raise ConfigError(f"expected {decl.type}, got {type(value).__name__} {value!r}", path=where, key=key)
        if decl.type == "float":
            value = float(value)
    if decl.choices is not None and value not in decl.choices:
        choices = ", ".join(repr(c) for c in decl.choices)
        raise ConfigError(f"expected one of {choices}, got {value!r}", path=where, key=key)
    if decl.validate is not None:
        try:
            result = decl.validate(value, key)
        except ConfigError as exc:
            if exc.path is not None:
                raise
            # A plugin's validator knows the key path, not the file: add it.
            text = str(exc)
            if exc.key and text.startswith(f"{exc.key}: "):
                text = text[len(exc.key) + 2 :]
            raise ConfigError(text, path=where, key=exc.key or key) from None
        if result is not None:
            value = result
    return value


def validate_table(
    plugin: str,
    declared: Sequence[Setting],
    table: Mapping[str, Any],
    *,
    prefix: str,
    where: str,
    strict: bool,
    fill_defaults: bool,
) -> dict[str, Any]:
    """Validate a raw settings table; return it with defaults filled in (when asked)."""
    decls = {d.key: d for d in declared}
    out: dict[str, Any] = {}
    for key, value in table.items():
        full = f"{prefix}.{key}"
        decl = decls.get(key)
        if decl is None:
            msg = f"unknown setting for plugin {plugin} (known: {', '.join(sorted(decls)) or 'none'})"
            if strict:
                raise ConfigError(msg, path=where, key=full)
            warnings.warn(f"{where}: {full}: {msg}", UnknownSettingWarning, stacklevel=2)
            continue
        out[key] = check_value(decl, value, full, where)
    if fill_defaults:
        for key, decl in decls.items():
            if key not in out:
                if decl.required:
                    raise ConfigError(f"required setting of plugin {plugin} is missing", path=where, key=f"{prefix}.{key}")
                out[key] = copy.deepcopy(decl.default)
    return out


def freeze(settings: dict[str, Any]) -> Mapping[str, Any]:
    """Settings are handed to plugins read-only."""
    return MappingProxyType(settings)


def thaw(value: Any) -> Any:
    """Plain dicts and lists from read-only settings (:func:`freeze`), for plugins that parse or hash them."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value
