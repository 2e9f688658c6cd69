"""Following signed links from an HTTP front end: the API ``capture_web`` serves them with.

An unsubscribe or confirmation link carries a signed token that names its
workspace. A web server that receives one calls::

    from corecrm_plugins.nurture_sequences import links

    info = links.inspect(crm, token, "unsubscribe")   # verify only (the GET page)
    res = links.follow(crm, token, "unsubscribe")     # act (the POST)

``kind`` is ``"unsubscribe"`` or ``"confirm"``. Both raise
:class:`LinkInvalid` for a token that is malformed, altered, expired, of the
wrong kind or for a workspace where this plugin is not enabled; its message
is for the log, not for the visitor. :func:`follow` runs exactly what
``corecrm nurture unsubscribe`` / ``nurture confirm`` run
(:func:`actions.unsubscribe`, :func:`actions.confirm`): the same ledger
rows and events, and nothing written on a repeated click (``changed`` is
False). A confirmation for a lead who opted out since raises
:class:`actions.ConfirmRefused`.
"""

from __future__ import annotations

from typing import Any

from corecrm.errors import CrmError

from corecrm_plugins.nurture_sequences import actions, tokens
from corecrm_plugins.nurture_sequences.config import PLUGIN

KINDS = ("unsubscribe", "confirm")
ConfirmRefused = actions.ConfirmRefused


class LinkInvalid(CrmError):
    """The link cannot be followed; the message says why (for the log only)."""


def _workspaces(crm: Any) -> set[str]:
    out = {crm.workspace}
    config = getattr(crm, "config", None)
    if config is not None:
        out.add(config.default_workspace)
        out.update(config.workspaces())
    return out


def _runtime(crm: Any, token: str, kind: str) -> Any:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    data = tokens.peek(token)
    ws = data.get("w") if data else None
    if not isinstance(ws, str) or ws not in _workspaces(crm):
        raise LinkInvalid("malformed token or unknown workspace")
    config = getattr(crm, "config", None)
    if config is not None and PLUGIN in config.disabled_in_workspace(ws):
        raise LinkInvalid(f"{PLUGIN} is disabled in workspace {ws!r}")
    return actions.runtime(crm, ws)


def inspect(crm: Any, token: str, kind: str) -> dict[str, Any]:
    """Verify a link without acting on it: ``{workspace, lead_id, channel, purpose, address}``."""
    rt = _runtime(crm, token, kind)
    try:
        return {"workspace": rt.workspace, **actions.check_link(rt, token, kind, now=crm.now())}
    except tokens.TokenError as exc:
        raise LinkInvalid(str(exc)) from None


def follow(crm: Any, token: str, kind: str, *, source: str | None = None) -> dict[str, Any]:
    """Act on a link as the CLI does; ``source`` names where an unsubscribe came from (default ``unsubscribe_link``)."""
    rt = _runtime(crm, token, kind)
    try:
        if kind == "unsubscribe":
            return actions.unsubscribe(rt, token, now=crm.now(), source=source or "unsubscribe_link")
        return actions.confirm(rt, token, now=crm.now())
    except tokens.TokenError as exc:
        raise LinkInvalid(str(exc)) from None
