"""Errors the core raises. Each names the place it is about (file, key, row, lead)."""

from __future__ import annotations


class CrmError(Exception):
    """Base class: the CLI prints ``error: <message>`` on one line and exits 1."""


class ConfigError(CrmError):
    """Invalid configuration; the message names the file and the key path."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        self.path = path
        self.key = key
        where = ": ".join(p for p in (path, key) if p)
        super().__init__(f"{where}: {message}" if where else message)


class TransitionError(CrmError):
    """An invalid lifecycle or deal-stage move."""


class NotFound(CrmError):
    """A lead, deal or customer that does not exist in this workspace."""


class CaptureError(CrmError):
    """A raw payload no capture format accepts, or one that could not be parsed."""


class PluginError(CrmError):
    """A plugin failed to load, or returned something that breaks its hook's contract."""

    def __init__(self, message: str, *, plugin: str | None = None) -> None:
        self.plugin = plugin
        super().__init__(f"plugin {plugin}: {message}" if plugin else message)
