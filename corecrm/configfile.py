"""Writing and editing ``corecrm.toml`` (keeping the admin's comments, via tomlkit)."""

from __future__ import annotations

from pathlib import Path

from corecrm.errors import ConfigError


def template_text() -> str:
    """The commented configuration ``corecrm init`` writes."""
    return (Path(__file__).resolve().parent / "templates" / "corecrm.toml").read_text(encoding="utf-8")


def write_config(path: Path) -> None:
    path.write_text(template_text(), encoding="utf-8")


def toggle_plugin(path: Path, name: str, enable: bool) -> bool:
    """Enable or disable a plugin in the file; returns False when nothing had to change.

    With an explicit ``plugins.enabled`` list the name is added to or removed
    from it; the ``plugins.disabled`` list is always kept consistent.
    """
    import tomlkit

    doc = tomlkit.parse(path.read_text(encoding="utf-8")) if path.exists() else tomlkit.document()
    if "plugins" not in doc:
        doc["plugins"] = tomlkit.table()
    plugins = doc["plugins"]
    if not isinstance(plugins, dict):
        raise ConfigError("expected a table", path=str(path), key="plugins")
    before = tomlkit.dumps(doc)
    disabled = plugins.get("disabled")
    if disabled is None:
        disabled = tomlkit.array()
        plugins["disabled"] = disabled
    enabled = plugins.get("enabled")
    if enable:
        while name in disabled:
            disabled.remove(name)
        if enabled is not None and name not in enabled:
            enabled.append(name)
    else:
        if name not in disabled:
            disabled.append(name)
        if enabled is not None:
            while name in enabled:
                enabled.remove(name)
    after = tomlkit.dumps(doc)
    if after == before:
        return False
    path.write_text(after, encoding="utf-8")
    return True
