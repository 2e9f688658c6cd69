"""The ASGI app: ``POST /capture/{form}``, ``GET /forms/{form}``, ``GET /health``, and with
nurture_sequences the signed links ``/unsubscribe/{token}`` and ``/confirm/{token}`` (``links.py``).

The app talks to the CRM through a small :class:`Backend` (store a raw
capture, process it, the database engine, the clock), so it can be served
for a real :class:`corecrm.app.Crm` or, in unit tests, a stand-in.

Order of checks on a capture, cheapest first: unknown form (404), rate limit
per IP (429), body size (413), API key (401) and rate limit per key (429),
body decoding (415/400), required fields and consent (422), then the
duplicate-submit claim, and only then the raw capture is committed. The
pipeline runs after the response is sent; the client gets the capture id.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import queue
import threading
import time
from typing import Any, Mapping, Protocol
from urllib.parse import urlencode

import attrs
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from corecrm.errors import CaptureError
from corecrm.records import RawCapture
from corecrm_plugins.capture_web import bodies, keys, mapping, render, tables
from corecrm_plugins.capture_web.forms import FormDef
from corecrm_plugins.capture_web.limits import FormTokens, RateLimiter

log = logging.getLogger("corecrm.capture_web.server")


class Backend(Protocol):
    """What the app needs from the CRM."""

    engine: sa.Engine
    default_workspace: str

    def now(self) -> dt.datetime: ...

    def store(self, raws: list[RawCapture], workspace: str) -> list[tuple[int, bool]]:
        """Commit raw captures in one transaction; per capture ``(capture id, newly stored?)`` (False: same content already stored)."""

    def process(self, raws: list[RawCapture], workspace: str) -> None:
        """Run the intake pipeline for stored captures (``raw.id`` is set), as one batch."""


@attrs.define(slots=True)
class ServerSettings:
    forms: dict[str, FormDef]
    max_body_bytes: int = 64 * 1024
    rate_per_ip: int = 60  #: requests per minute per client IP (0: no limit)
    rate_per_key: int = 600  #: requests per minute per API key (0: no limit)
    min_fill_seconds: float = 3.0
    secret: bytes = b""
    trust_forwarded: bool = False  #: take the client IP from X-Forwarded-For (behind a proxy you run)
    process_inline: bool = False  #: run the pipeline before answering (tests, CLI), not after


class HttpError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        self.status, self.message, self.field, self.headers = status, message, field, dict(headers or {})
        super().__init__(message)


def _wants_html(request: Request, content_type: str) -> bool:
    """A browser posting the generated form (no JavaScript) expects a page or a redirect, not JSON."""
    accept = request.headers.get("accept", "")
    return bodies.media_type(content_type) in bodies.FORM_TYPES and "text/html" in accept


def _client_ip(request: Request, trust_forwarded: bool) -> str:
    if trust_forwarded:
        fwd = request.headers.get("x-forwarded-for")
        if fwd:
            return fwd.split(",", 1)[0].strip()
    return request.client.host if request.client else "unknown"


def _api_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return None


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None:
        try:
            if int(length) > limit:
                raise HttpError(413, f"request body is {int(length)} bytes; the limit is {limit}")
        except ValueError:
            raise HttpError(400, "invalid Content-Length") from None
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HttpError(413, f"request body is over the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise HttpError(400, "client disconnected") from None
    return b"".join(chunks)


def create_app(backend: Backend, settings: ServerSettings) -> Starlette:
    """Build the Starlette app for a backend and settings."""
    ip_limiter = RateLimiter(settings.rate_per_ip)
    key_limiter = RateLimiter(settings.rate_per_key)
    tokens = FormTokens(settings.secret)
    processor = BatchProcessor(backend)
    committer = GroupCommitter(backend)

    def cors_headers(request: Request, form: FormDef) -> dict[str, str]:
        origin = request.headers.get("origin")
        if origin and ("*" in form.cors_origins or origin in form.cors_origins):
            return {
                "Access-Control-Allow-Origin": origin,
                "Vary": "Origin",
                "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": "Content-Type, X-Api-Key, Authorization, Idempotency-Key",
                "Access-Control-Max-Age": "600",
            }
        return {}

    def form_or_404(name: str) -> FormDef:
        form = settings.forms.get(name)
        if form is None:
            raise HttpError(404, f"no form named {name!r}")
        return form

    def error_response(request: Request, exc: HttpError, form: FormDef | None, html: bool, values: dict[str, str] | None = None) -> Response:
        headers = dict(exc.headers)
        if form is not None:
            headers.update(cors_headers(request, form))
        if html and form is not None and exc.status == 422:
            page = render.render_form(
                form,
                action=str(request.url_for("capture", form=form.name).path),
                token=tokens.issue(form.name),
                error=(exc.field or "", exc.message),
                values=values,
            )
            return HTMLResponse(page, status_code=422, headers=headers)
        body: dict[str, Any] = {"error": exc.message}
        if exc.field:
            body["field"] = exc.field
        return JSONResponse(body, status_code=exc.status, headers=headers)

    def claim_token(workspace: str, form: str, token: str, now: dt.datetime) -> int | None | bool:
        """Claim a submission token. True: claimed now; an int: the capture it already made; None: claimed, capture pending."""
        t = tables.submissions
        try:
            with backend.engine.begin() as conn:
                conn.execute(sa.insert(t).values(workspace=workspace, form=form, token=token, at=now))
            return True
        except sa.exc.IntegrityError:
            with backend.engine.connect() as conn:
                return conn.execute(
                    sa.select(t.c.capture_id).where(t.c.workspace == workspace, t.c.form == form, t.c.token == token)
                ).scalar()

    def settle_token(workspace: str, form: str, token: str, capture_id: int | None) -> None:
        t = tables.submissions
        with backend.engine.begin() as conn:
            where = sa.and_(t.c.workspace == workspace, t.c.form == form, t.c.token == token)
            if capture_id is None:  # storing failed: release the token so the person can resubmit
                conn.execute(sa.delete(t).where(where))
            else:
                conn.execute(sa.update(t).where(where).values(capture_id=capture_id))

    async def capture(request: Request) -> Response:
        name = request.path_params["form"]
        form = settings.forms.get(name)
        content_type = request.headers.get("content-type", "")
        html = _wants_html(request, content_type)
        values: dict[str, str] = {}
        try:
            form = form_or_404(name)
            ip = _client_ip(request, settings.trust_forwarded)
            wait = ip_limiter.hit(f"{name}|{ip}")
            if wait is not None:
                raise HttpError(429, f"too many requests from {ip}; retry in {int(wait) + 1} s", headers={"Retry-After": str(int(wait) + 1)})
            body = await _read_body(request, settings.max_body_bytes)
            workspace = form.workspace or backend.default_workspace
            key = _api_key(request)
            key_id = None
            if key is not None or form.require_key:
                key_id = await run_in_threadpool(keys.verify, backend.engine, workspace, name, key)
                if key_id is None:
                    raise HttpError(401, "missing API key" if key is None else "invalid or revoked API key", headers={"WWW-Authenticate": 'Bearer realm="capture"'})
                wait = key_limiter.hit(key_id)
                if wait is not None:
                    raise HttpError(429, f"too many requests for key {key_id}; retry in {int(wait) + 1} s", headers={"Retry-After": str(int(wait) + 1)})
            if bodies.is_xml(content_type) and not form.accept_adf:
                raise HttpError(415, f"form {name!r} does not accept ADF/XML")
            try:
                fields, mapped = bodies.decode(body, content_type)
            except CaptureError as exc:
                status = 415 if "Content-Type" in str(exc) else 400
                raise HttpError(status, str(exc)) from None
            values = {k: v for k, v in fields.items() if isinstance(v, str) and not k.startswith("_cw_")}
            now = backend.now()
            bot = None
            if fields.get(render.HONEYPOT):
                bot = "honeypot field filled"
            token = fields.get(render.TOKEN) if isinstance(fields.get(render.TOKEN), str) else None
            if bot is None and token is not None:
                issued = tokens.check(name, token)
                min_fill = form.min_fill_seconds if form.min_fill_seconds is not None else settings.min_fill_seconds
                if issued is None:
                    bot = "forged or foreign form token"
                elif time.time() - issued < min_fill:
                    bot = f"form filled in {time.time() - issued:.1f} s (minimum {min_fill:g} s)"
            consent = None
            if bot is None:
                lead_fields = mapping.map_fields(fields, form.fields, mapped=mapped)
                missing = mapping.missing_required(lead_fields, form.required, form.fields, mapped=mapped)
                if missing is not None:
                    label = form.label(missing) if missing in form.fields else missing
                    raise HttpError(422, f"missing required field: {missing} ({label})", field=missing)
                if form.consent is not None:
                    given = str(fields.get(render.CONSENT) or fields.get("consent") or "").lower() in ("yes", "on", "true", "1")
                    if form.consent.required and not given:
                        raise HttpError(422, "missing required field: consent (the consent box must be ticked)", field="consent")
                    if given:
                        consent = {
                            "channel": form.consent.channel,
                            "purpose": form.consent.purpose,
                            "status": "granted",
                            "at": now.isoformat(),
                            "source": f"web_form:{name}",
                            "text": form.consent.text,
                            "proof": {"ip": ip, "user_agent": request.headers.get("user-agent", "")[:200], "form": name},
                        }
            dedup = token or request.headers.get("idempotency-key")
            if dedup is not None:
                dedup = dedup[:128]
                claimed = await run_in_threadpool(claim_token, workspace, name, dedup, now)
                if claimed is not True:
                    existing = claimed
                    for _ in range(50):  # the first request is still storing: wait for its id
                        if existing is not None:
                            break
                        await asyncio.sleep(0.05)
                        existing = await run_in_threadpool(claim_token, workspace, name, dedup, now)
                        existing = None if existing is True else existing
                    return _accepted(request, form, existing if isinstance(existing, int) else None, html, duplicate=True)
            meta = {
                mapping.META_KEY: {
                    **form.snapshot(),
                    "bot": bot,
                    "consent": consent,
                    "ip": ip,
                    "key_id": key_id,
                    "user_agent": request.headers.get("user-agent", "")[:200],
                    "received_at": now.isoformat(),
                }
            }
            raw = RawCapture(payload=body, origin=f"http:{name}", content_type=content_type or None, meta=meta, format=mapping.FORMAT_NAME)
            try:
                capture_id, is_new = await committer.store(raw, workspace)
            except Exception:
                if dedup is not None:
                    await run_in_threadpool(settle_token, workspace, name, dedup, None)
                raise
            if dedup is not None:
                await run_in_threadpool(settle_token, workspace, name, dedup, capture_id)
            task = None
            if is_new:
                raw.id = capture_id
                if settings.process_inline:
                    await run_in_threadpool(backend.process, [raw], workspace)
                else:
                    task = BackgroundTask(processor.submit, raw, workspace)
            return _accepted(request, form, capture_id, html, duplicate=not is_new, background=task)
        except HttpError as exc:
            if exc.status >= 500 or exc.status in (401, 413, 429):
                log.info("capture %s: %s %s", name, exc.status, exc.message)
            return error_response(request, exc, form, html, values)

    def _accepted(request: Request, form: FormDef, capture_id: int | None, html: bool, *, duplicate: bool, background: BackgroundTask | None = None) -> Response:
        headers = cors_headers(request, form)
        if html:
            if form.redirect:
                sep = "&" if "?" in form.redirect else "?"
                url = form.redirect + sep + urlencode({"capture_id": capture_id if capture_id is not None else ""})
                return RedirectResponse(url, status_code=303, headers=headers, background=background)
            return HTMLResponse(render.thanks(form, capture_id), status_code=200, headers=headers, background=background)
        body = {"capture_id": capture_id, "status": "duplicate" if duplicate else "accepted"}
        return JSONResponse(body, status_code=200 if duplicate else 201, headers=headers, background=background)

    async def preflight(request: Request) -> Response:
        name = request.path_params["form"]
        form = settings.forms.get(name)
        if form is None:
            return JSONResponse({"error": f"no form named {name!r}"}, status_code=404)
        headers = cors_headers(request, form)
        if not headers:
            return JSONResponse({"error": "origin not allowed for this form"}, status_code=403)
        return Response(status_code=204, headers=headers)

    async def show_form(request: Request) -> Response:
        name = request.path_params["form"]
        form = settings.forms.get(name)
        if form is None:
            return HTMLResponse(render.page("Not found", f"<p>No form named {name!r}.</p>"), status_code=404)
        standalone = request.query_params.get("embed") not in ("1", "true", "yes")
        action = str(request.url_for("capture", form=name)) if not standalone else request.url_for("capture", form=name).path
        html = render.render_form(form, action=str(action), token=tokens.issue(name), standalone=standalone)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    async def health(request: Request) -> Response:
        def ping() -> None:
            with backend.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))

        try:
            await run_in_threadpool(ping)
        except Exception as exc:
            return JSONResponse({"status": "error", "database": f"{type(exc).__name__}: {exc}"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok", "forms": sorted(settings.forms), "processing": processor.pending})

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/forms/{form}", show_form, methods=["GET"]),
        Route("/capture/{form}", capture, methods=["POST"], name="capture"),
        Route("/capture/{form}", preflight, methods=["OPTIONS"]),
    ]
    from corecrm_plugins.capture_web import links

    routes += links.routes(backend, settings.rate_per_ip, lambda request: _client_ip(request, settings.trust_forwarded))
    app = Starlette(routes=routes)
    app.state.processor = processor
    return app


class GroupCommitter:
    """Commits the raw bodies of concurrent requests together (group commit).

    A request awaits its capture id; the first request that finds no commit
    running starts one for every body waiting at that moment, in one
    transaction, in a worker thread. Under load, one commit serves many
    requests; alone, a request is committed at once. Each request still gets
    its answer only after its own body is committed.
    """

    def __init__(self, backend: Backend, max_batch: int = 200) -> None:
        self.backend = backend
        self.max_batch = max_batch
        self.waiting: list[tuple[RawCapture, str, asyncio.Future[tuple[int, bool]]]] = []
        self.running = False

    async def store(self, raw: RawCapture, workspace: str) -> tuple[int, bool]:
        fut: asyncio.Future[tuple[int, bool]] = asyncio.get_running_loop().create_future()
        self.waiting.append((raw, workspace, fut))
        if not self.running:
            self.running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        try:
            while self.waiting:
                batch, self.waiting = self.waiting[: self.max_batch], self.waiting[self.max_batch :]
                by_ws: dict[str, list[tuple[RawCapture, asyncio.Future[tuple[int, bool]]]]] = {}
                for raw, ws, fut in batch:
                    by_ws.setdefault(ws, []).append((raw, fut))
                for ws, items in by_ws.items():
                    try:
                        results = await run_in_threadpool(self.backend.store, [r for r, _ in items], ws)
                    except Exception as exc:
                        for _, fut in items:
                            if not fut.done():
                                fut.set_exception(exc)
                        continue
                    for (_, fut), res in zip(items, results):
                        if not fut.done():
                            fut.set_result(res)
        finally:
            self.running = False


class BatchProcessor:
    """Runs the pipeline for stored captures in a worker thread, in batches.

    Each request only commits its raw body and hands the capture over; the
    worker takes whatever has accumulated (up to ``max_batch``) and runs it
    through the intake pipeline as one batch, which is the set-based path the
    core is built for. Under load, batches grow and the per-capture cost falls.
    A batch that raises is retried capture by capture, so one bad capture does
    not hold back the others; a capture that still fails keeps status ``new``
    and is processed at the next ``corecrm serve`` start.
    """

    def __init__(self, backend: Backend, max_batch: int = 500) -> None:
        self.backend = backend
        self.max_batch = max_batch
        self.queue: queue.Queue[tuple[RawCapture, str] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._pending = 0
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        """Captures handed over whose pipeline has not finished (``/health`` shows it)."""
        return self._pending

    def submit(self, raw: RawCapture, workspace: str) -> None:
        with self._lock:
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="capture_web-pipeline", daemon=True)
                self._thread.start()
        self.queue.put((raw, workspace))

    def close(self) -> None:
        if self._thread is not None:
            self.queue.put(None)
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self.queue.put(None)
                    break
                batch.append(nxt)
            by_ws: dict[str, list[RawCapture]] = {}
            for raw, ws in batch:
                by_ws.setdefault(ws, []).append(raw)
            for ws, raws in by_ws.items():
                try:
                    self.backend.process(raws, ws)
                except Exception:
                    log.exception("pipeline failed for a batch of %d captures; retrying them one by one", len(raws))
                    for raw in raws:
                        try:
                            self.backend.process([raw], ws)
                        except Exception:
                            log.exception("pipeline failed for capture %s (stored with status 'new'; the next `corecrm serve` start processes it)", raw.id)
            with self._lock:
                self._pending -= len(batch)


class ServerThread:
    """Run the app under uvicorn in a background thread (tests, benchmarks, ``serve`` with a worker)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        import socket

        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = self.sock.getsockname()[:2]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="off", access_log=False))
        import threading

        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "ServerThread":
        self.thread.start()
        deadline = time.time() + 10
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the capture server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
        processor = getattr(getattr(self.server.config.app, "state", None), "processor", None)
        if processor is not None:
            processor.close()

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

