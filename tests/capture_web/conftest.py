"""Fixtures for capture_web: a CRM with the plugin configured, served for real on loopback."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

import cw_helpers

FORMS: dict[str, Any] = {
    "contact": {
        "title": "Talk to sales",
        "fields": {"first_name": "first_name", "last_name": "last_name", "email": "email", "company": "company", "message": "note"},
        "required": ["email", "last_name"],
        "source": "website",
        "campaign": "spring-launch",
        "consent": {"text": "Send me product news by email", "channel": "email", "purpose": "marketing"},
        "min_fill_seconds": 0,
    },
    "vendor": {
        "fields": {"fname": "first_name", "lname": "last_name", "mail": "email", "tel": "phone", "zip": "postal_code"},
        "required": ["lname"],
        "source": "leadvendor",
        "require_key": True,
    },
}


def web_config(forms: dict[str, Any] | None = None, targets: dict[str, Any] | None = None, **settings: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"forms": forms if forms is not None else FORMS, "secret": "test-form-secret", **settings}
    if targets:
        body["targets"] = targets
    return {"plugins": {"enabled": ["capture_json", "capture_web"], "capture_web": body}}


@pytest.fixture
def web_crm(make_crm: Callable[..., Any]) -> Callable[..., Any]:
    """``web_crm(forms=..., targets=..., plugins=..., database=..., **settings)``."""

    def factory(*, forms: dict[str, Any] | None = None, targets: dict[str, Any] | None = None, plugins: dict[str, Any] | None = None, database: str | None = None, **settings: Any) -> Any:
        return make_crm(web_config(forms, targets, **settings), plugins=plugins, database=database)

    return factory


@pytest.fixture
def serve() -> Iterator[Callable[[Any], Any]]:
    """``serve(crm)`` -> a running :class:`ServerThread` (stopped after the test)."""
    from corecrm_plugins.capture_web.cli import build_app
    from corecrm_plugins.capture_web.server import ServerThread

    started: list[Any] = []

    def factory(crm: Any) -> Any:
        srv = ServerThread(build_app(crm, recover=False)).start()
        started.append(srv)
        cw_helpers.SERVERS.append(srv)
        return srv

    yield factory
    for srv in started:
        cw_helpers.SERVERS.remove(srv)
        srv.stop()
