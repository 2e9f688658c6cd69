"""The plugin's one error type: every refusal names what is wrong and where."""

from __future__ import annotations

from corecrm.errors import CrmError


class ClvError(CrmError):
    """Data the models cannot use, or a fit that failed; printed on one line by the CLI."""


class ConvergenceError(ClvError):
    """The optimiser stopped without reaching a maximum of the likelihood."""
