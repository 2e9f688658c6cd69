"""The plugin manager: discovery, blocking, settings and a typed call loop.

One :class:`PluginManager` per CRM instance; there is no module-global one.

* Discovery: entry points in the ``corecrm.plugins`` group. The entry-point
  name is the plugin's one canonical name and its ``[plugins.<name>]`` key.
  Bundled plugins are entry points of the ``corecrm`` distribution itself and
  go through exactly the same path as third-party ones.
* Blocking happens *before* import: a plugin disabled in TOML, or left out
  of ``CORECRM_LOAD_PLUGINS``, is never imported.
* A plugin that fails to import is reported by name and skipped, unless
  ``CORECRM_STRICT_PLUGINS=1``. Misspelt hook names fail at start-up
  (pluggy's ``check_pending``).
* Calls: the core calls each implementation itself (:meth:`PluginManager.each`)
  instead of ``pm.hook.X(...)``, so that every result is stamped with the
  plugin that produced it, each plugin receives its *own* settings for the
  workspace, observers are isolated, and a raising decision hook can be
  attributed and narrowed down to the leads that trigger it.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import os
from types import ModuleType
from typing import Any, Iterator, Mapping

import attrs
import pluggy

from corecrm.config import Config
from corecrm.errors import ConfigError, PluginError
from corecrm.hooks import PROJECT_NAME, all_spec_classes
from corecrm.settings import freeze, resolve_env, validate_table

log = logging.getLogger("corecrm.plugins")

ENTRY_POINT_GROUP = "corecrm.plugins"
BUNDLED_DISTRIBUTION = "corecrm"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@attrs.define(slots=True)
class PluginInfo:
    """What ``corecrm plugins list`` shows about one plugin."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    enabled: bool = True
    loaded: bool = False
    bundled: bool = False
    error: str | None = None
    hooks: list[str] = attrs.field(factory=list)
    why_disabled: str | None = None

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


class HookCallError(Exception):
    """A decision hook implementation raised; carries the plugin's name."""

    def __init__(self, plugin: str, hook: str, error: BaseException) -> None:
        self.plugin = plugin
        self.hook = hook
        self.error = error
        super().__init__(f"{plugin}.{hook}: {type(error).__name__}: {error}")


class _TrackedPluginManager(pluggy.PluginManager):
    """pluggy's manager, counting registrations so call orders can be cached safely."""

    generation = 0

    def register(self, plugin: object, name: str | None = None) -> str | None:
        self.generation += 1
        return super().register(plugin, name)

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        self.generation += 1
        return super().unregister(plugin, name)


class PluginManager:
    """Loads plugins for one CRM instance and calls their hooks."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.pm = _TrackedPluginManager(PROJECT_NAME)
        for spec in all_spec_classes():
            self.pm.add_hookspecs(spec)
        self.infos: dict[str, PluginInfo] = {}
        self._declared: dict[str, list[Any]] = {}
        self._settings_cache: dict[tuple[str, str], Mapping[str, Any]] = {}
        #: (hook, workspace) -> call order; dropped whenever a plugin is (un)registered.
        self._impls_cache: dict[tuple[str, str | None], list[tuple[str, pluggy.HookImpl]]] = {}
        self._impls_generation = -1
        self.strict = _env_flag("CORECRM_STRICT_PLUGINS")

    # ------------------------------------------------------------------ loading
    def load(self, *, entry_points: bool = True, extra: Mapping[str, object] | None = None) -> PluginManager:
        """Discover, block, import and register plugins; then validate their settings.

        ``extra`` registers in-process plugins (tests, embedding applications)
        by name before the checks, exactly as if they had been discovered.
        """
        if entry_points:
            self._load_entry_points()
        for name, plugin in (extra or {}).items():
            info = PluginInfo(name=name, module=getattr(plugin, "__module__", type(plugin).__name__))
            self.infos[name] = info
            if not self.config.is_enabled(name) and self.config.enabled is None:
                info.enabled, info.why_disabled = False, f"disabled in {self.config.where}"
                continue
            self._register(plugin, name, info)
        self._check_enabled_names()
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            name = self.pm.get_name(exc.plugin) if exc.plugin is not None else None
            raise PluginError(f"implements an unknown hook: {exc}", plugin=name) from None
        self._collect_settings()
        return self

    def _allowlist(self) -> set[str] | None:
        raw = os.environ.get("CORECRM_LOAD_PLUGINS")
        if raw is None:
            return None
        return {n.strip() for n in raw.split(",") if n.strip()}

    def _load_entry_points(self) -> None:
        allow = self._allowlist()
        seen: dict[str, md.EntryPoint] = {}
        eps = sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
        # Registered in reverse name order: pluggy calls LIFO, so plugins are
        # then called in alphabetical order unless they ask for tryfirst/trylast.
        for ep in reversed(eps):
            dist = ep.dist.name if ep.dist is not None else None
            if ep.name in seen:
                other = seen[ep.name].dist.name if seen[ep.name].dist else "?"
                raise PluginError(f"two distributions provide it ({other}, {dist})", plugin=ep.name)
            seen[ep.name] = ep
            info = PluginInfo(
                name=ep.name,
                module=ep.value,
                distribution=dist,
                version=ep.dist.version if ep.dist is not None else None,
                bundled=dist == BUNDLED_DISTRIBUTION,
            )
            self.infos[ep.name] = info
            if allow is not None and ep.name not in allow:
                info.enabled, info.why_disabled = False, "not in CORECRM_LOAD_PLUGINS"
            elif not self.config.is_enabled(ep.name):
                info.enabled, info.why_disabled = False, f"disabled in {self.config.where}"
            if not info.enabled:
                self.pm.set_blocked(ep.name)  # never imported
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not take the CRM down
                if self.strict:
                    raise PluginError(f"failed to import: {type(exc).__name__}: {exc}", plugin=ep.name) from exc
                info.error = f"{type(exc).__name__}: {exc}"
                log.warning("plugin %s failed to import and is skipped: %s", ep.name, info.error)
                continue
            self._register(plugin, ep.name, info)

    def register(self, plugin: ModuleType | object, name: str, *, bundled: bool = False) -> None:
        """Register an in-process plugin (tests, embedding applications)."""
        info = PluginInfo(name=name, module=getattr(plugin, "__name__", type(plugin).__name__), bundled=bundled)
        self.infos[name] = info
        self._register(plugin, name, info)
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"implements an unknown hook: {exc}", plugin=name) from None
        self._collect_settings([name])

    def _register(self, plugin: object, name: str, info: PluginInfo) -> None:
        try:
            self.pm.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise PluginError(str(exc), plugin=name) from None
        info.loaded = True
        info.hooks = sorted(c.name for c in self.pm.get_hookcallers(plugin) or [])

    def _check_enabled_names(self) -> None:
        known = set(self.infos)
        for key in ("enabled", "disabled"):
            names = self.config.enabled if key == "enabled" else self.config.disabled
            for i, name in enumerate(names or []):
                if name not in known:
                    raise ConfigError(
                        f"unknown plugin {name!r} (installed: {', '.join(sorted(known)) or 'none'})",
                        path=self.config.where,
                        key=f"plugins.{key}[{i}]",
                    )
        for ws in self.config.workspaces():
            for i, name in enumerate(sorted(self.config.disabled_in_workspace(ws))):
                if name not in known:
                    raise ConfigError(f"unknown plugin {name!r}", path=self.config.where, key=f"workspaces.{ws}.plugins.disabled")
        for section in self.config.data.get("plugins", {}):
            if section not in ("enabled", "disabled") and section not in known:
                msg = f"settings for a plugin that is not installed: {section}"
                if self.strict:
                    raise ConfigError(msg, path=self.config.where, key=f"plugins.{section}")
                log.warning("%s: plugins.%s: %s", self.config.where, section, msg)

    # ------------------------------------------------------------------ settings
    def _collect_settings(self, names: list[str] | None = None) -> None:
        for name in names or self.loaded_names():
            plugin = self.pm.get_plugin(name)
            impl = getattr(plugin, "crm_plugin_settings", None)
            declared = list(impl() or []) if impl is not None else []
            for d in declared:
                d.plugin = name
            self._declared[name] = declared
            base, _ = self.config.raw_plugin_settings(name)
            validate_table(name, declared, base, prefix=f"plugins.{name}", where=self.config.where, strict=self.strict, fill_defaults=True)
            for ws in self.config.workspaces():
                _, over = self.config.raw_plugin_settings(name, ws)
                validate_table(
                    name, declared, over, prefix=f"workspaces.{ws}.plugins.{name}", where=self.config.where, strict=self.strict, fill_defaults=False
                )
        self._settings_cache.clear()

    def declared_settings(self, name: str) -> list[Any]:
        return list(self._declared.get(name, []))

    def settings(self, name: str, workspace: str | None = None) -> Mapping[str, Any]:
        """A plugin's effective settings for a workspace: defaults < [plugins.X] < [workspaces.W.plugins.X]."""
        ws = workspace or self.config.default_workspace
        key = (name, ws)
        cached = self._settings_cache.get(key)
        if cached is not None:
            return cached
        declared = self._declared.get(name, [])
        base, over = self.config.raw_plugin_settings(name, ws)
        merged = validate_table(name, declared, base, prefix=f"plugins.{name}", where=self.config.where, strict=False, fill_defaults=True)
        merged.update(validate_table(name, declared, over, prefix=f"workspaces.{ws}.plugins.{name}", where=self.config.where, strict=False, fill_defaults=False))
        resolved = resolve_env(merged, f"plugins.{name}", self.config.where)
        frozen = freeze(resolved)
        self._settings_cache[key] = frozen
        return frozen

    # ------------------------------------------------------------------ introspection
    def loaded_names(self) -> list[str]:
        return sorted(n for n, i in self.infos.items() if i.loaded)

    def is_loaded(self, name: str) -> bool:
        info = self.infos.get(name)
        return bool(info and info.loaded)

    def list(self) -> list[PluginInfo]:
        return [self.infos[n] for n in sorted(self.infos)]

    # ------------------------------------------------------------------ calling
    def impls(self, hook: str, workspace: str | None = None) -> list[tuple[str, pluggy.HookImpl]]:
        """``(plugin name, impl)`` in call order, without plugins disabled for the workspace.

        Cached per hook and workspace (the pipeline asks for every step of every
        batch, and a single web-form lead is a batch): registering or
        unregistering a plugin drops the cache.
        """
        if self._impls_generation != self.pm.generation:
            self._impls_cache.clear()
            self._impls_generation = self.pm.generation
        key = (hook, workspace)
        cached = self._impls_cache.get(key)
        if cached is not None:
            return cached
        caller = getattr(self.pm.hook, hook)
        off = self.config.disabled_in_workspace(workspace) if workspace else frozenset()
        out = []
        for impl in reversed(caller.get_hookimpls()):
            if impl.wrapper or impl.hookwrapper:
                continue  # wrappers are not applied by the per-plugin call loop (documented)
            if impl.plugin_name in off:
                continue
            out.append((impl.plugin_name, impl))
        self._impls_cache[key] = out
        return out

    def call_impl(self, name: str, impl: pluggy.HookImpl, kwargs: Mapping[str, Any], workspace: str | None) -> Any:
        """Call one implementation with the arguments it asked for (pluggy's opt-in arguments)."""
        args = []
        for arg in impl.argnames:
            if arg == "settings":
                args.append(self.settings(name, workspace))
            elif arg == "workspace" and "workspace" not in kwargs:
                args.append(workspace or self.config.default_workspace)
            else:
                args.append(kwargs[arg])
        return impl.function(*args)

    def each(self, hook: str, *, workspace: str | None = None, observer: bool = False, **kwargs: Any) -> Iterator[tuple[str, Any]]:
        """Yield ``(plugin name, result)`` for every implementation, stamping records with the plugin.

        Decision hooks (``observer=False``) raise :class:`HookCallError` naming
        the plugin; observer hooks log the failure and go on with the others.
        """
        for name, impl in self.impls(hook, workspace):
            try:
                result = self.call_impl(name, impl, kwargs, workspace)
                if result is not None and not isinstance(result, (list, tuple, dict, str, bytes)):
                    result = list(result) if hasattr(result, "__iter__") else result
            except Exception as exc:
                if observer:
                    log.error("plugin %s failed in %s (ignored, other observers still run): %s: %s", name, hook, type(exc).__name__, exc)
                    continue
                raise HookCallError(name, hook, exc) from exc
            if result is None:
                continue
            if isinstance(result, list):
                for rec in result:
                    if hasattr(rec, "plugin") and not getattr(rec, "plugin", None):
                        rec.plugin = name
            yield name, result

    def collect(self, hook: str, *, workspace: str | None = None, **kwargs: Any) -> list[Any]:
        """Flatten every record a registration hook returned, stamped with its plugin."""
        out: list[Any] = []
        for _name, result in self.each(hook, workspace=workspace, **kwargs):
            out.extend(result)
        return out

    def collect_named(self, hook: str, *, workspace: str | None = None, what: str = "name", **kwargs: Any) -> dict[str, Any]:
        """Like :meth:`collect` for records with a unique ``name``; a duplicate is a conflict."""
        out: dict[str, Any] = {}
        for rec in self.collect(hook, workspace=workspace, **kwargs):
            prev = out.get(rec.name)
            if prev is not None:
                raise PluginError(f"conflicting {what} {rec.name!r} provided by plugins {prev.plugin} and {rec.plugin}")
            out[rec.name] = rec
        return dict(sorted(out.items()))

    def notify(self, hook: str, *, workspace: str | None = None, **kwargs: Any) -> None:
        """Call an observer hook: every implementation runs, failures are logged with the plugin name."""
        for _ in self.each(hook, workspace=workspace, observer=True, **kwargs):
            pass
