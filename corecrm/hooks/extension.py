"""Extension hooks: plugin settings and CLI commands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping

from corecrm.hooks import hookspec

if TYPE_CHECKING:
    import sqlalchemy

    from corecrm.records import CliCommand, Setting


class ExtensionSpecs:
    """Namespace for the hooks that extend the configuration and the command line."""

    @hookspec
    def crm_plugin_settings(self) -> Iterable[Setting]:
        """Declare the keys this plugin accepts under ``[plugins.<name>]``.

        :returns: :class:`~corecrm.records.Setting` records (key, type,
            default, description, optional deep ``validate``).

        Combination: collected per plugin: each plugin's settings are validated
        against its own declaration. The core fills defaults, rejects wrong
        types naming the key path, warns on unknown keys (an error with
        ``CORECRM_STRICT_PLUGINS=1``) and resolves ``{env = "NAME"}`` secrets.

        .. versionadded:: 0.1
        """

    @hookspec
    def crm_cli_commands(self) -> Iterable[CliCommand]:
        """Add click commands to ``corecrm``.

        :returns: :class:`~corecrm.records.CliCommand` records; ``group`` names
            an existing group (``leads``, ``report``…) or a new one.

        Combination: all collected; a command name used twice in one group is a
        conflict and fails start-up. A disabled plugin's commands do not exist.

        .. versionadded:: 0.1
        """

    @hookspec
    def crm_db_schema(self) -> Iterable[sqlalchemy.MetaData]:
        """Declare the plugin's own tables.

        :returns: ``MetaData`` objects holding the plugin's tables (each with a
            ``workspace`` column). ``corecrm init`` and ``corecrm db upgrade``
            create the missing ones; changes to existing plugin tables must be
            additive (new nullable columns are added by the plugin's own code).

        Combination: all collected.

        .. versionadded:: 0.1
        """

    @hookspec
    def crm_config_warnings(self, settings: Mapping[str, Any], workspace: str) -> Iterable[str] | None:
        """Report questionable but valid settings for ``corecrm config check``.

        Errors belong in ``Setting.validate`` (they stop the CRM from starting);
        this hook is for warnings such as a routing rule shadowed by an earlier
        one. Called once per workspace with the plugin's effective settings.

        :returns: warning messages naming the key path, or ``None``.

        Combination: all collected and printed; they never fail the check.

        .. versionadded:: 0.1
        """
