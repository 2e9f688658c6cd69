"""Loading and validating ``corecrm.toml``.

Where the file is found: ``--config``, then ``CORECRM_CONFIG``, then
``corecrm.toml`` in the working directory. Without one, built-in defaults
apply (a SQLite database ``corecrm.db`` in the working directory).

Every error names the file and the key path, e.g.
``corecrm.toml: plugins.scoring_basic.rules[2].points: expected a number, got 'ten'``.
Plugin settings are validated later, once plugins have declared them
(:mod:`corecrm.settings`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Mapping

import attrs

from corecrm.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_NAME = "corecrm.toml"
DEFAULT_DB_NAME = "corecrm.db"

_TOP_KEYS = {"crm", "plugins", "pipelines", "workspaces"}
_CRM_KEYS = {"database", "default_workspace", "own_addresses", "timezone"}


@attrs.define(slots=True)
class PipelineStage:
    name: str
    probability: float
    playbook: tuple[str, ...] = ()
    closed: str | None = None  #: "won" or "lost" for closing stages


@attrs.define(slots=True)
class DealPipeline:
    name: str
    stages: tuple[PipelineStage, ...]

    def stage(self, name: str) -> PipelineStage | None:
        for s in self.stages:
            if s.name == name:
                return s
        return None

    @property
    def first_open_stage(self) -> PipelineStage:
        return next(s for s in self.stages if s.closed is None)


DEFAULT_PIPELINES: dict[str, Any] = {
    "sales": {
        "stages": [
            {"name": "new", "probability": 0.1, "playbook": ["call"]},
            {"name": "qualified", "probability": 0.3, "playbook": ["meeting"]},
            {"name": "proposal", "probability": 0.6, "playbook": ["email"]},
            {"name": "negotiation", "probability": 0.8},
            {"name": "won", "probability": 1.0, "closed": "won"},
            {"name": "lost", "probability": 0.0, "closed": "lost"},
        ]
    }
}


@attrs.define(slots=True)
class Config:
    """The parsed configuration. ``data`` is the raw TOML document."""

    data: dict[str, Any]
    path: Path | None = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> Config:
        """Find and parse the configuration; raise :class:`ConfigError` naming the file."""
        found = find_config(path)
        if found is None:
            return cls(data={}, path=None).validated()
        try:
            raw = found.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror}", path=str(found)) from None
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise ConfigError("not UTF-8 text", path=str(found)) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"invalid TOML: {exc}", path=str(found)) from None
        return cls(data=data, path=found).validated()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: Path | None = None) -> Config:
        return cls(data=dict(data), path=path).validated()

    @property
    def where(self) -> str:
        return str(self.path) if self.path else "<defaults>"

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, path=self.where, key=key)

    def validated(self) -> Config:
        """Check the core's own keys; plugin sections are checked by the plugin manager."""
        d = self.data
        for key in d:
            if key not in _TOP_KEYS:
                raise self.error(key, f"unknown section (valid: {', '.join(sorted(_TOP_KEYS))})")
        crm = _table(self, d, "crm")
        for key in crm:
            if key not in _CRM_KEYS:
                raise self.error(f"crm.{key}", f"unknown key (valid: {', '.join(sorted(_CRM_KEYS))})")
        _typed(self, crm, "crm.database", str)
        _typed(self, crm, "crm.default_workspace", str)
        own = crm.get("own_addresses", [])
        if not isinstance(own, list) or not all(isinstance(a, str) for a in own):
            raise self.error("crm.own_addresses", "expected a list of e-mail addresses")
        plugins = _table(self, d, "plugins")
        for key in ("enabled", "disabled"):
            val = plugins.get(key)
            if val is not None and (not isinstance(val, list) or not all(isinstance(v, str) for v in val)):
                raise self.error(f"plugins.{key}", "expected a list of plugin names")
        for key, val in plugins.items():
            if key not in ("enabled", "disabled") and not isinstance(val, dict):
                raise self.error(f"plugins.{key}", "expected a table of plugin settings")
        workspaces = _table(self, d, "workspaces")
        for ws, body in workspaces.items():
            if not isinstance(body, dict):
                raise self.error(f"workspaces.{ws}", "expected a table")
            for key in body:
                if key != "plugins":
                    raise self.error(f"workspaces.{ws}.{key}", "unknown key (valid: plugins)")
            wp = _table(self, body, "plugins", prefix=f"workspaces.{ws}.")
            for key, val in wp.items():
                if key == "disabled":
                    if not isinstance(val, list) or not all(isinstance(v, str) for v in val):
                        raise self.error(f"workspaces.{ws}.plugins.disabled", "expected a list of plugin names")
                elif not isinstance(val, dict):
                    raise self.error(f"workspaces.{ws}.plugins.{key}", "expected a table of plugin settings")
        self.pipelines()  # validates
        return self

    # ------------------------------------------------------------------ accessors
    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    @property
    def database_url(self) -> str:
        url = self.data.get("crm", {}).get("database")
        if not url:
            return f"sqlite:///{self.base_dir / DEFAULT_DB_NAME}"
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and url != "sqlite:///:memory:":
            rel = url[len("sqlite:///"):]
            if not os.path.isabs(rel):
                return f"sqlite:///{self.base_dir / rel}"
        return os.path.expandvars(url)

    @property
    def default_workspace(self) -> str:
        return self.data.get("crm", {}).get("default_workspace", "default")

    @property
    def own_addresses(self) -> list[str]:
        return [a.lower() for a in self.data.get("crm", {}).get("own_addresses", [])]

    @property
    def enabled(self) -> list[str] | None:
        """Explicit allowlist of plugins, or None (every installed plugin not disabled)."""
        return self.data.get("plugins", {}).get("enabled")

    @property
    def disabled(self) -> list[str]:
        return list(self.data.get("plugins", {}).get("disabled", []))

    def is_enabled(self, name: str) -> bool:
        if name in self.disabled:
            return False
        enabled = self.enabled
        return enabled is None or name in enabled

    def raw_plugin_settings(self, name: str, workspace: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """``([plugins.<name>], [workspaces.<ws>.plugins.<name>])`` as raw tables."""
        base = self.data.get("plugins", {}).get(name, {})
        over: dict[str, Any] = {}
        if workspace:
            over = self.data.get("workspaces", {}).get(workspace, {}).get("plugins", {}).get(name, {})
        return dict(base), dict(over)

    def workspaces(self) -> list[str]:
        return sorted(self.data.get("workspaces", {}))

    def disabled_in_workspace(self, workspace: str) -> frozenset[str]:
        ws = self.data.get("workspaces", {}).get(workspace, {})
        return frozenset(ws.get("plugins", {}).get("disabled", []))

    def pipelines(self) -> dict[str, DealPipeline]:
        raw = self.data.get("pipelines") or DEFAULT_PIPELINES
        if not isinstance(raw, dict):
            raise self.error("pipelines", "expected a table of pipelines")
        out: dict[str, DealPipeline] = {}
        for name, body in raw.items():
            key = f"pipelines.{name}"
            if not isinstance(body, dict) or not isinstance(body.get("stages"), list) or not body["stages"]:
                raise self.error(f"{key}.stages", "expected a non-empty list of stages")
            stages = []
            seen: set[str] = set()
            for i, st in enumerate(body["stages"]):
                skey = f"{key}.stages[{i}]"
                if not isinstance(st, dict):
                    raise self.error(skey, "expected a table with name and probability")
                unknown = set(st) - {"name", "probability", "playbook", "closed"}
                if unknown:
                    raise self.error(f"{skey}.{sorted(unknown)[0]}", "unknown key (valid: closed, name, playbook, probability)")
                sname = st.get("name")
                if not isinstance(sname, str) or not sname:
                    raise self.error(f"{skey}.name", "expected a stage name")
                if sname in seen:
                    raise self.error(f"{skey}.name", f"duplicate stage {sname!r}")
                seen.add(sname)
                prob = st.get("probability")
                if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0 <= prob <= 1:
                    raise self.error(f"{skey}.probability", f"expected a number between 0 and 1, got {prob!r}")
                closed = st.get("closed")
                if closed not in (None, "won", "lost"):
                    raise self.error(f"{skey}.closed", f"expected 'won' or 'lost', got {closed!r}")
                playbook = st.get("playbook", [])
                if not isinstance(playbook, list) or not all(isinstance(p, str) for p in playbook):
                    raise self.error(f"{skey}.playbook", "expected a list of activity types")
                stages.append(PipelineStage(sname, float(prob), tuple(playbook), closed))
            if not any(s.closed is None for s in stages):
                raise self.error(f"{key}.stages", "needs at least one open stage")
            out[name] = DealPipeline(name, tuple(stages))
        return out


def find_config(path: str | os.PathLike[str] | None = None) -> Path | None:
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError("no such file", path=str(p))
        return p.resolve()
    env = os.environ.get("CORECRM_CONFIG")
    if env:
        p = Path(env)
        if not p.exists():
            raise ConfigError("no such file (from CORECRM_CONFIG)", path=str(p))
        return p.resolve()
    p = Path.cwd() / CONFIG_NAME
    return p.resolve() if p.exists() else None


def _table(cfg: Config, d: Mapping[str, Any], key: str, prefix: str = "") -> dict[str, Any]:
    val = d.get(key, {})
    if not isinstance(val, dict):
        raise cfg.error(prefix + key, "expected a table")
    return val


def _typed(cfg: Config, d: Mapping[str, Any], key: str, typ: type) -> None:
    name = key.rsplit(".", 1)[-1]
    if name in d and not isinstance(d[name], typ):
        raise cfg.error(key, f"expected {typ.__name__}, got {type(d[name]).__name__}")
