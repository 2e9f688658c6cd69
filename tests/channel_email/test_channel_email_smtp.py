"""The e-mail channel against a real SMTP server (aiosmtpd) on loopback: plain, STARTTLS + AUTH, TLS."""

from __future__ import annotations

import datetime as dt
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "nurture_sequences"))
from nurture_testkit import Inbox, _Handler, free_port, require_server, smtp  # noqa: E402,F401

from corecrm_plugins.channel_email.smtp import EmailChannel, EmailSendError, email_log, metadata  # noqa: E402

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)


def message(to: str = "ann@example.org", **over):
    m = {
        "workspace": "default", "lead_id": 1, "to": to, "to_name": "Ann Example", "subject": "Hello Ann", "text": "Plain text part",
        "html": "<p>HTML part</p>", "idempotency_key": f"nurture-default-1-trial-0-{to}", "headers": {"X-Corecrm-Idempotency-Key": f"k-{to}"},
        "unsubscribe_url": "https://crm.example.com/u/TOKEN123", "unsubscribe_token": "TOKEN123", "unsubscribe_mailto": "unsubscribe@shop.example",
    }  # fmt: skip
    m.update(over)
    return m


def channel(port: int, **over) -> EmailChannel:
    return EmailChannel({"host": "127.0.0.1", "port": port, "from_address": "news@shop.example", "from_name": "Shop", "timeout": 10.0, **over})


def test_plain_smtp_message_has_both_parts_and_unsubscribe_headers(smtp):
    out = channel(smtp.port).send([message()], {})
    assert out[0]["to"] == "ann@example.org" and out[0]["message_id"].startswith("<nurture-default-1-trial-0-ann_example.org@shop.example")
    (msg,) = smtp.parsed()
    assert msg["From"] == "Shop <news@shop.example>" and msg["To"] == "Ann Example <ann@example.org>"
    assert msg["List-Unsubscribe"] == "<https://crm.example.com/u/TOKEN123>, <mailto:unsubscribe@shop.example?subject=unsubscribe%20TOKEN123>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["X-Corecrm-Idempotency-Key"] == "k-ann@example.org"
    assert msg.get_body(("plain",)).get_content().strip() == "Plain text part"
    assert msg.get_body(("html",)).get_content().strip() == "<p>HTML part</p>"
    assert smtp.envelopes[0] == ("news@shop.example", ["ann@example.org"])


@pytest.mark.parametrize(
    "url",
    ["https://x.example/unsubscribe/eyJsIjo3fQ.c2ln-_x", "https://x.example/u?t=eyJsIjo3fQ.c2ln-_x", "https://x.example/u?t=eyJsIjo3fQ.c2ln-_x&src=mail"],
)
def test_mailto_unsubscribe_carries_the_token_whatever_the_url_shape(smtp, url):
    channel(smtp.port).send([message(unsubscribe_url=url, unsubscribe_token="eyJsIjo3fQ.c2ln-_x")], {})
    (msg,) = smtp.parsed()
    assert msg["List-Unsubscribe"] == f"<{url}>, <mailto:unsubscribe@shop.example?subject=unsubscribe%20eyJsIjo3fQ.c2ln-_x>"


def test_mailto_unsubscribe_without_a_token_names_no_part_of_the_url(smtp):
    channel(smtp.port).send([message(unsubscribe_url="https://x.example/u?t=SECRETISH", unsubscribe_token=None)], {})
    (msg,) = smtp.parsed()
    assert msg["List-Unsubscribe"] == "<https://x.example/u?t=SECRETISH>, <mailto:unsubscribe@shop.example?subject=unsubscribe>"


def test_refusals_and_missing_unsubscribe_are_reported_per_message(smtp):
    smtp.refuse["gone@example.org"] = "550 5.1.1 no such user"
    smtp.refuse["later@example.org"] = "452 4.2.2 mailbox full"
    out = channel(smtp.port).send([message("gone@example.org"), message("ok@example.org"), message("later@example.org"),
                                   message("nolink@example.org", unsubscribe_url=None, unsubscribe_mailto=None)], {})  # fmt: skip
    assert isinstance(out[0], EmailSendError) and out[0].permanent and out[0].suppress and "550" in str(out[0])
    assert out[1]["to"] == "ok@example.org"
    assert isinstance(out[2], EmailSendError) and not out[2].permanent and "452" in str(out[2])
    assert isinstance(out[3], EmailSendError) and out[3].permanent and "unsubscribe" in str(out[3])
    assert [e[1] for e in smtp.envelopes] == [["ok@example.org"]]


def test_server_down_is_a_retryable_failure_for_the_whole_batch():
    port = free_port()  # nothing listens here
    out = channel(port, timeout=2.0).send([message("a@example.org"), message("b@example.org")], {})
    assert all(isinstance(o, EmailSendError) and not o.permanent for o in out)


def test_rate_limit_and_frequency_cap(smtp, tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'log.db'}")
    metadata.create_all(engine)
    ch = channel(smtp.port, rate_limit=50.0, frequency_cap=2, frequency_window="1d")
    ctx = {"engine": engine, "workspace": "default", "now": NOW}
    out = ch.send([message("a@example.org", idempotency_key=f"k{i}") for i in range(3)], ctx)
    assert [isinstance(o, dict) for o in out] == [True, True, False]
    assert out[2].retry_after == pytest.approx(86400.0)
    later = {**ctx, "now": NOW + dt.timedelta(hours=25)}
    assert isinstance(ch.send([message("a@example.org", idempotency_key="k3")], later)[0], dict)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(email_log)).scalar() == 3
    assert len(smtp.parsed()) == 3


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 made with the openssl command."""
    if shutil.which("openssl") is None:
        require_server("the openssl command")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _auth(users):
    from aiosmtpd.smtp import AuthResult

    def authenticator(server, session, envelope, mechanism, auth_data):
        login = auth_data.login.decode() if isinstance(auth_data.login, bytes) else auth_data.login
        password = auth_data.password.decode() if isinstance(auth_data.password, bytes) else auth_data.password
        return AuthResult(success=users.get(login) == password)

    return authenticator


def test_starttls_with_authentication(certificate, monkeypatch):
    from aiosmtpd.controller import Controller

    cert, key = certificate
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    inbox, port = Inbox(), free_port()
    ctl = Controller(_Handler(inbox), hostname="127.0.0.1", port=port, tls_context=server_ctx, require_starttls=True,
                     authenticator=_auth({"mailer": "s3cret"}), auth_require_tls=True, auth_required=True)  # fmt: skip
    ctl.start()
    try:
        # The password comes from an environment variable reference, resolved by the core.
        from corecrm.config import Config
        from corecrm.plugins import PluginManager

        monkeypatch.setenv("SMTP_TEST_PASSWORD", "s3cret")
        cfg = Config.from_dict({"plugins": {"channel_email": {"host": "127.0.0.1", "port": port, "security": "starttls", "username": "mailer",
                                                              "password": {"env": "SMTP_TEST_PASSWORD"}, "ca_file": str(cert), "from_address": "news@shop.example"}}})  # fmt: skip
        pm = PluginManager(cfg).load()
        ch = pm.collect_named("crm_message_channels")["email"]
        out = ch.send([message()], {})
        assert isinstance(out[0], dict), out
        assert len(inbox.parsed()) == 1
        # Without STARTTLS the server refuses (require_starttls): never sends in clear.
        out = channel(port, timeout=5.0).send([message("c@example.org")], {})
        assert isinstance(out[0], EmailSendError)
        assert len(inbox.parsed()) == 1
    finally:
        ctl.stop()


def test_implicit_tls_and_certificate_verification(certificate):
    from aiosmtpd.controller import Controller

    cert, key = certificate
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    inbox, port = Inbox(), free_port()
    ctl = Controller(_Handler(inbox), hostname="127.0.0.1", port=port, ssl_context=server_ctx)
    ctl.start()
    try:
        assert isinstance(channel(port, security="tls", ca_file=str(cert)).send([message()], {})[0], dict)
        failed = channel(port, security="tls").send([message("x@example.org")], {})[0]  # self-signed, not trusted
        assert isinstance(failed, EmailSendError) and "CERTIFICATE_VERIFY_FAILED" in str(failed)
        assert len(inbox.parsed()) == 1
    finally:
        ctl.stop()


def test_header_injection_and_non_ascii_names(smtp):
    out = channel(smtp.port).send([
        message("a@example.org", subject="Hi\r\nBcc: victim@example.org"),
        message("b@example.org", to_name="Zoë Ünal", subject="Grüße, Zoë"),
    ], {})  # fmt: skip
    assert isinstance(out[0], EmailSendError) and out[0].permanent and "line break" in str(out[0])
    (msg,) = smtp.parsed()
    assert str(msg["To"]) == "Zoë Ünal <b@example.org>" and str(msg["Subject"]) == "Grüße, Zoë"
    assert [e[1] for e in smtp.envelopes] == [["b@example.org"]]
