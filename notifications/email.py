"""E-mail through Django's e-mail backends: the one way relevel sends mail.

The backend comes from EMAIL_URL (django-environ: smtp://, smtp+tls://, consolemail://...)
or, for a provider's HTTP API, EMAIL_BACKEND set to one of django-anymail's backends with
its ANYMAIL_* settings (docs/notifications.md)."""

from __future__ import annotations

import smtplib
import socket
from email.utils import make_msgid

from django.conf import settings
from django.core.mail import EmailMessage, get_connection

from .errors import ChannelNotConfigured, SendFailed
from .masking import redact_emails

# A connection never made: trying again later cannot send the message twice.
_NOT_CONNECTED = (ConnectionRefusedError, smtplib.SMTPConnectError, socket.gaierror)


def email_send(*, to: str, subject: str, body: str) -> str:
    """Send one plain-text e-mail; its Message-ID (the provider's id with anymail).

    Raises ChannelNotConfigured or SendFailed (``transient`` when no connection was made;
    an anymail 429 too)."""
    if not settings.DEFAULT_FROM_EMAIL:
        raise ChannelNotConfigured("E-mail is not configured: set DEFAULT_FROM_EMAIL")
    message_id = make_msgid(domain=settings.NOTIFY_EMAIL_MESSAGE_ID_DOMAIN)
    message = EmailMessage(
        subject=subject,
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to],
        headers={"Message-ID": message_id},
        connection=get_connection(fail_silently=False),
    )
    try:
        message.send(fail_silently=False)
    except _NOT_CONNECTED as exc:
        raise SendFailed(f"mail server unreachable: {type(exc).__name__}", transient=True) from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise SendFailed(redact_emails(f"{type(exc).__name__}: {exc}")[:500]) from exc
    except Exception as exc:
        # anymail's errors (AnymailError) carry the provider's HTTP status.
        status = getattr(exc, "status_code", None)
        raise SendFailed(
            redact_emails(f"{type(exc).__name__}: {exc}")[:500], transient=status == 429
        ) from exc
    # anymail's backends give the provider's own id for the message (its API assigns one).
    provider_id = getattr(getattr(message, "anymail_status", None), "message_id", None)
    return message_id if provider_id is None else str(provider_id)
