"""Acquisition hooks: turning raw payloads into leads.

The core stores every raw capture (with a content hash) before any of these
run, so a parser that raises loses nothing: the capture is quarantined with
the error and the plugin's name, and ``corecrm retry`` parses it again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping

from corecrm.hooks import hookspec

if TYPE_CHECKING:
    from corecrm.records import CaptureFormat, CaptureSource, ImportFormat


class AcquisitionSpecs:
    """Namespace for the hooks that capture leads."""

    @hookspec
    def crm_capture_formats(self, settings: Mapping[str, Any]) -> Iterable[CaptureFormat]:
        """Register parsers for raw payloads.

        :param settings: this plugin's settings for the current workspace.
        :returns: an iterable of :class:`~corecrm.records.CaptureFormat`.

        Combination: all collected. For each capture the core asks every
        format's ``sniff`` for a confidence (0–100) and uses the highest; a tie
        goes to the alphabetically first format name, never to load order.
        Two formats with the same name are a conflict and fail start-up.

        .. versionadded:: 0.1
        """

    @hookspec
    def crm_capture_sources(self, settings: Mapping[str, Any]) -> Iterable[CaptureSource]:
        """Declare pollable sources (IMAP mailboxes, vendor feeds).

        :param settings: this plugin's settings for the current workspace.
        :returns: an iterable of :class:`~corecrm.records.CaptureSource`.

        Combination: all collected; names must be unique across plugins.

        .. versionadded:: 0.1
        """

    @hookspec
    def crm_import_formats(self, settings: Mapping[str, Any]) -> Iterable[ImportFormat]:
        """Register tabular import formats (CSV, Excel) for ``corecrm import``.

        :param settings: this plugin's settings for the current workspace.
        :returns: an iterable of :class:`~corecrm.records.ImportFormat`.

        Combination: all collected; the format is chosen by file extension.

        .. versionadded:: 0.1
        """
