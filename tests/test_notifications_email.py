"""E-mail (issue 19): through Django's backends as EMAIL_URL configures them, to the locmem
outbox and to an SMTP server on 127.0.0.1; addresses masked in logs and the admin."""

from __future__ import annotations

import email
import logging
from datetime import UTC, date, datetime

import environ
import pytest
import time_machine

from notifications import services
from notifications.email import email_send
from notifications.email_backends import LoggedEmailBackend
from notifications.errors import SendFailed
from notifications.masking import mask_email, redact_emails
from notifications.models import MessageTemplate, Notification, NotificationStatus
from tests.notification_fakes import FakeSmtp, free_port

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 28, 8, 30, tzinfo=UTC)  # 14:00 in Asia/Kolkata
DAY = date(2026, 11, 28)


@pytest.fixture(autouse=True)
def afternoon():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def smtp_server(settings):
    """An SMTP server on 127.0.0.1, configured the way a deployment is: through EMAIL_URL."""
    server = FakeSmtp().start()
    for name, value in environ.Env.email_url_config(f"smtp://127.0.0.1:{server.port}").items():
        setattr(settings, name, value)
    yield server
    server.stop()


def missed(user) -> int:
    [notification_id] = services.notify_missed_day(user_id=user.pk, local_date=DAY)
    return notification_id


def test_a_missed_day_is_mailed_from_the_template_to_the_outbox(make_user, mailoutbox, settings):
    settings.DEFAULT_FROM_EMAIL = "relevel <calls@example.org>"
    MessageTemplate.objects.filter(channel="email").update(
        subject="{{ name }}: {{ local_date|date:'j M' }}", body="Dear {{ first_name }} ({{ external_id }})"
    )
    user = make_user(name="Asha Rao", external_id="crm-42", notify_email=True, email="asha.rao@example.com")
    notification_id = missed(user)

    assert services.notification_send(notification_id=notification_id) == "sent"

    [mail] = mailoutbox
    assert mail.to == ["asha.rao@example.com"] and mail.from_email == "relevel <calls@example.org>"
    assert mail.subject == "Asha Rao: 28 Nov" and mail.body == "Dear Asha (crm-42)"
    notification = Notification.objects.get(pk=notification_id)
    assert notification.recipient == "a***@example.com"
    assert notification.provider_message_id == mail.extra_headers["Message-ID"]


def test_email_reaches_an_smtp_server_named_by_email_url(make_user, smtp_server, caplog):
    user = make_user(name="Bilal", notify_email=True, email="bilal@example.net")
    caplog.set_level(logging.INFO)
    assert services.notification_send(notification_id=missed(user)) == "sent"

    [envelope] = smtp_server.messages
    assert envelope.rcpt_tos == ["bilal@example.net"]
    message = email.message_from_bytes(envelope.content)
    assert message["Subject"] == "We missed you on Saturday 28 November"
    assert message["Message-ID"] == Notification.objects.get().provider_message_id
    assert "Hi Bilal," in message.get_payload()
    # (The fake server's own log, mail.log, is the other side of the wire.)
    ours = "\n".join(record.getMessage() for record in caplog.records if not record.name.startswith("mail."))
    assert "bilal@example.net" not in ours and "b***@example.net" in ours


def test_a_refused_recipient_fails_with_the_address_masked(make_user, smtp_server):
    smtp_server.refuse.add("gone@example.net")
    user = make_user(notify_email=True, email="gone@example.net")
    notification_id = missed(user)
    assert services.notification_send(notification_id=notification_id) == "failed"
    notification = Notification.objects.get(pk=notification_id)
    assert notification.status == NotificationStatus.FAILED
    assert "SMTPRecipientsRefused" in notification.error and "550" in notification.error
    assert "gone@example.net" not in notification.error and "g***@example.net" in notification.error


def test_a_mail_server_that_refuses_connections_is_tried_again(settings):
    for name, value in environ.Env.email_url_config(f"smtp://127.0.0.1:{free_port()}").items():
        setattr(settings, name, value)
    with pytest.raises(SendFailed) as refused:
        email_send(to="a@example.com", subject="s", body="b")
    assert refused.value.transient


def test_an_anymail_backend_is_selected_by_email_backend_and_its_message_id_kept(make_user, settings):
    from anymail.backends.test import EmailBackend  # noqa: F401 - the backend the setting names

    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    user = make_user(notify_email=True, email="cara@example.com")
    notification_id = missed(user)
    assert services.notification_send(notification_id=notification_id) == "sent"
    notification = Notification.objects.get(pk=notification_id)
    from django.core import mail

    [sent] = mail.outbox
    assert str(sent.anymail_status.message_id) == notification.provider_message_id


def test_the_development_backend_logs_each_message_with_the_address_masked(caplog):
    from django.core.mail import EmailMessage

    caplog.set_level(logging.INFO, logger="relevel.notifications.email")
    message = EmailMessage(subject="We missed you", body="Hi Asha", to=["asha.rao@example.com"])
    assert LoggedEmailBackend().send_messages([message]) == 1
    assert "to a***@example.com, subject 'We missed you':\nHi Asha" in caplog.text
    assert "asha.rao@example.com" not in caplog.text


def test_development_settings_log_mail_instead_of_sending_it():
    import subprocess
    import sys

    code = (
        "import django, os; os.environ.pop('EMAIL_URL', None); os.environ['DEBUG'] = '1';"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'relevel.settings'; django.setup();"
        "from django.conf import settings; print(settings.EMAIL_BACKEND)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "notifications.email_backends.LoggedEmailBackend"


def test_email_url_in_the_environment_configures_the_smtp_backend():
    import subprocess
    import sys

    code = (
        "import django, os; os.environ['EMAIL_URL'] = 'smtp+tls://relevel:pw@127.0.0.1:2525';"
        "os.environ['DEBUG'] = '1'; os.environ['DJANGO_SETTINGS_MODULE'] = 'relevel.settings';"
        "django.setup();"
        "from django.conf import settings as s;"
        "print(s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_HOST_USER, s.EMAIL_USE_TLS)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [
        "django.core.mail.backends.smtp.EmailBackend",
        "127.0.0.1",
        "2525",
        "relevel",
        "True",
    ]


def test_an_email_without_an_address_is_skipped_with_the_reason(make_user):
    user = make_user(notify_email=True, email="")
    notification = Notification.objects.get(pk=missed(user))
    assert notification.status == NotificationStatus.SKIPPED
    assert notification.error == "The user has no e-mail address."


def test_masking_keeps_the_first_letter_and_the_domain():
    assert mask_email("jane.doe@example.com") == "j***@example.com"
    assert mask_email("") == "-"
    assert (
        redact_emails("<jane@example.com>: refused; cc bo@x.org")
        == "<j***@example.com>: refused; cc b***@x.org"
    )
