"""The nurture e-mails' signed links, served over HTTP: unsubscribe and double opt-in confirmation.

Mounted by :func:`server.create_app` when the ``nurture_sequences`` plugin
is loaded; it is reached through a documented optional import::

    corecrm_plugins.nurture_sequences.links.inspect(crm, token, kind)
    corecrm_plugins.nurture_sequences.links.follow(crm, token, kind, source=...)

If that module is absent (the plugin is not installed, or another version),
the routes are simply not there (404) and nothing else changes.

* ``GET /unsubscribe/{token}``: a page with a button; it changes nothing, so
  a mail filter or link scanner that fetches every link unsubscribes nobody.
* ``POST /unsubscribe/{token}``: records the opt-out. A body of
  ``List-Unsubscribe=One-Click`` (RFC 8058, sent by mail providers for the
  ``List-Unsubscribe-Post`` header) gets a short plain-text answer; a
  browser gets a page.
* ``GET /confirm/{token}`` and ``POST /confirm/{token}``: the same for a
  double opt-in confirmation.

A malformed, altered or expired token gets a 400 page that says only that
the link is not valid (why is logged). Following a link twice writes
nothing the second time. Each route counts against ``rate_per_ip``.
"""

from __future__ import annotations

import logging
from html import escape
from typing import Any, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from corecrm_plugins.capture_web import render
from corecrm_plugins.capture_web.limits import RateLimiter

log = logging.getLogger("corecrm.capture_web.links")

LINKS_PLUGIN = "nurture_sequences"
#: Headers on every answer: the token is in the URL, so no caching, no indexing, no Referer.
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex, nofollow"}
ONE_CLICK = b"List-Unsubscribe=One-Click"
MAX_BODY = 4096

INVALID = ("This link is not valid",
           "<p>The link may be incomplete, altered, or it may have expired. If you copied it from an e-mail, "
           "make sure you copied all of it.</p>")  # fmt: skip


def links_api() -> Any | None:
    """The nurture plugin's links module, or ``None`` when it is not there."""
    try:
        from corecrm_plugins.nurture_sequences import links  # type: ignore[import-not-found]
    except ImportError:
        return None
    return links if hasattr(links, "inspect") and hasattr(links, "follow") else None


def _mask(address: str | None) -> str:
    """``a***@example.com``: enough for the person to recognise, not a readable address for anyone else."""
    if not address or "@" not in address:
        return ""
    local, domain = address.split("@", 1)
    return f"{local[:1]}***@{domain}"


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(render.page(title, f'<div class="cw-form" role="status"><h1>{escape(title)}</h1>{body}</div>'),
                        status_code=status, headers=HEADERS)  # fmt: skip


def _button_page(title: str, text: str, button: str) -> HTMLResponse:
    form = f'<form method="post" action=""><button type="submit">{escape(button)}</button></form>'
    return _page(title, f"<p>{text}</p>{form}")


def routes(backend: Any, rate_per_ip: int, client_ip: Callable[[Request], str]) -> list[Route]:
    """The link routes for a backend wrapping a real CRM with nurture_sequences loaded; else none."""
    crm = getattr(backend, "crm", None)
    plugins = getattr(crm, "plugins", None)
    if plugins is None or not plugins.is_loaded(LINKS_PLUGIN):
        return []
    api = links_api()
    if api is None:
        log.info("%s is loaded but has no links module; unsubscribe and confirmation links are not served", LINKS_PLUGIN)
        return []
    limiter = RateLimiter(rate_per_ip)

    def limited(request: Request) -> Response | None:
        ip = client_ip(request)
        wait = limiter.hit(f"links|{ip}")
        if wait is None:
            return None
        r = _page("Too many requests", f"<p>Please try again in {int(wait) + 1} seconds.</p>", 429)
        r.headers["Retry-After"] = str(int(wait) + 1)
        return r

    async def call(fn: Callable[..., Any], *args: Any, **kw: Any) -> tuple[Any, Response | None]:
        """Run a nurture call in a thread; map its errors to pages (no detail leaks)."""
        try:
            return await run_in_threadpool(fn, *args, **kw), None
        except api.LinkInvalid as exc:
            log.info("invalid %s link: %s", args[-1] if args else "", exc)
            return None, _page(*INVALID, status=400)
        except api.ConfirmRefused as exc:
            log.info("confirmation refused: %s", exc)
            return None, _page("Nothing changed", "<p>You unsubscribed after this confirmation was requested, so it no longer applies.</p>", 409)
        except Exception:
            log.exception("following a signed link failed")
            return None, _page("Temporarily unavailable", "<p>Something went wrong on our side. Please try again later.</p>", 503)

    async def unsubscribe_page(request: Request) -> Response:
        stop = limited(request)
        if stop is not None:
            return stop
        token = request.path_params["token"]
        info, err = await call(api.inspect, crm, token, "unsubscribe")
        if err is not None:
            return err
        who = _mask(info.get("address"))
        text = f"Stop {escape(info['purpose'])} e-mails" + (f" to {escape(who)}" if who else "") + "?"
        return _button_page("Unsubscribe", text, "Unsubscribe")

    async def unsubscribe_post(request: Request) -> Response:
        stop = limited(request)
        if stop is not None:
            return stop
        token = request.path_params["token"]
        body = b""
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_BODY:
                    break
        except ClientDisconnect:
            pass
        one_click = ONE_CLICK in body or (b"List-Unsubscribe" in body and b"One-Click" in body)
        res, err = await call(api.follow, crm, token, "unsubscribe", source="list_unsubscribe" if one_click else "unsubscribe_link")
        if one_click:
            if err is not None:
                return PlainTextResponse("invalid link\n" if err.status_code == 400 else "error\n", status_code=err.status_code, headers=HEADERS)
            return PlainTextResponse("unsubscribed\n", headers=HEADERS)
        if err is not None:
            return err
        who = _mask(res.get("address"))
        return _page("You are unsubscribed", f"<p>You will get no more {escape(res['purpose'])} e-mails" + (f" at {escape(who)}" if who else "") + ".</p>")

    async def confirm_page(request: Request) -> Response:
        stop = limited(request)
        if stop is not None:
            return stop
        token = request.path_params["token"]
        info, err = await call(api.inspect, crm, token, "confirm")
        if err is not None:
            return err
        who = _mask(info.get("address"))
        text = f"Confirm that you want our {escape(info['purpose'])} e-mails" + (f" at {escape(who)}" if who else "") + "."
        return _button_page("Confirm your subscription", text, "Confirm")

    async def confirm_post(request: Request) -> Response:
        stop = limited(request)
        if stop is not None:
            return stop
        _res, err = await call(api.follow, crm, request.path_params["token"], "confirm")
        if err is not None:
            return err
        return _page("Thank you", "<p>Your subscription is confirmed.</p>")

    return [
        Route("/unsubscribe/{token}", unsubscribe_page, methods=["GET"], name="unsubscribe"),
        Route("/unsubscribe/{token}", unsubscribe_post, methods=["POST"]),
        Route("/confirm/{token}", confirm_page, methods=["GET"], name="confirm"),
        Route("/confirm/{token}", confirm_post, methods=["POST"]),
    ]
