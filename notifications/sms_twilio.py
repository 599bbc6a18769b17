"""SMS through Twilio, with its official library: the one way relevel talks to Twilio.

Sending goes through twilio.rest.Client with an HTTP client of our own (TwilioHttpClient
with explicit connect and read timeouts, its request logging kept below INFO, and the API's
base URL taken from TWILIO_API_BASE_URL, so that tests and staging point it at a fake on
127.0.0.1). Inbound webhooks are checked with the library's RequestValidator.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from django.conf import settings
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from urllib3.exceptions import NewConnectionError

from .errors import ChannelNotConfigured, RecipientOptedOut, SendFailed

logger = logging.getLogger("relevel.notifications")

# Twilio's error for a number that replied STOP to the sender (their block list):
# https://www.twilio.com/docs/api/errors/21610
TWILIO_OPTED_OUT = 21610

# The library logs each request's URL and headers at INFO; our own line says enough.
_library_logger = logging.getLogger("relevel.notifications.twilio_http")
_library_logger.setLevel(logging.WARNING)


class _HttpClient(TwilioHttpClient):
    """The library's requests-based client, pointed at TWILIO_API_BASE_URL and with a
    (connect, read) timeout: a refused or unanswered connection fails in seconds, and is
    known not to have sent anything."""

    def __init__(self, *, base_url: str, connect_timeout: float, read_timeout: float) -> None:
        super().__init__(logger=_library_logger, timeout=read_timeout)
        # TwilioHttpClient checks a timeout given to it as a number, but hands self.timeout
        # to requests as it is: a tuple gives connect and read their own limits.
        self.timeout = (connect_timeout, read_timeout)  # type: ignore[assignment]
        self.base = urlsplit(base_url)

    def request(self, method: str, url: str, *args: Any, **kwargs: Any):  # type: ignore[override]
        parts = urlsplit(url)
        if self.base.netloc and parts.netloc.endswith("twilio.com"):
            path = self.base.path.rstrip("/") + parts.path
            url = urlunsplit((self.base.scheme, self.base.netloc, path, parts.query, ""))
        return super().request(method, url, *args, **kwargs)


_clients: dict[tuple, Client] = {}
_clients_lock = threading.Lock()


def twilio_missing_settings() -> list[str]:
    """The settings sending needs and lacks (none: SMS can be sent)."""
    missing = [name for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN") if not getattr(settings, name)]
    if not (settings.TWILIO_FROM_NUMBER or settings.TWILIO_MESSAGING_SERVICE_SID):
        missing.append("TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID")
    return missing


def _client() -> Client:
    key = (
        settings.TWILIO_ACCOUNT_SID,
        settings.TWILIO_AUTH_TOKEN,
        settings.TWILIO_API_BASE_URL,
        settings.TWILIO_CONNECT_TIMEOUT,
        settings.TWILIO_READ_TIMEOUT,
    )
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            http_client = _HttpClient(
                base_url=settings.TWILIO_API_BASE_URL,
                connect_timeout=settings.TWILIO_CONNECT_TIMEOUT,
                read_timeout=settings.TWILIO_READ_TIMEOUT,
            )
            # environment={}: the library would read TWILIO_EDGE/TWILIO_REGION from os.environ
            # and rewrite the host; the settings are the only configuration.
            client = Client(key[0], key[1], http_client=http_client, environment={})
            _clients.clear()
            _clients[key] = client
        return client


def sms_send(*, to: str, body: str) -> str:
    """Send ``body`` to the E.164 number ``to``; the Message SID Twilio gave it.

    Raises ChannelNotConfigured, RecipientOptedOut (Twilio 21610) or SendFailed, whose
    ``transient`` says whether trying again is safe (nothing reached Twilio, or it answered
    429 Too Many Requests)."""
    missing = twilio_missing_settings()
    if missing:
        raise ChannelNotConfigured(f"Twilio is not configured: set {', '.join(missing)}")
    sender: dict[str, str] = (
        {"messaging_service_sid": settings.TWILIO_MESSAGING_SERVICE_SID}
        if settings.TWILIO_MESSAGING_SERVICE_SID
        else {"from_": settings.TWILIO_FROM_NUMBER}
    )
    try:
        message = _client().messages.create(to=to, body=body, **sender)
    except TwilioRestException as exc:
        detail = f"Twilio answered {exc.status}, error {exc.code}: {exc.msg}"
        if exc.code == TWILIO_OPTED_OUT:
            raise RecipientOptedOut(detail, code=exc.code) from exc
        raise SendFailed(detail, transient=exc.status == 429, code=exc.code) from exc
    except requests.exceptions.ConnectionError as exc:
        if _nothing_sent(exc):
            raise SendFailed(f"Twilio unreachable: {type(exc).__name__}", transient=True) from exc
        raise SendFailed(
            f"Twilio's connection broke ({type(exc).__name__}); not retried, as the message may have gone"
        ) from exc
    except requests.exceptions.Timeout as exc:
        raise SendFailed(
            f"Twilio did not answer within {settings.TWILIO_READ_TIMEOUT:g} s; not retried, as the "
            "message may have gone"
        ) from exc
    except (TwilioException, requests.exceptions.RequestException, ValueError) as exc:
        raise SendFailed(f"Twilio: {type(exc).__name__}: {exc}") from exc
    return message.sid or ""


def _nothing_sent(exc: requests.exceptions.ConnectionError) -> bool:
    """A connection that was never made (refused, no route, no name, the connect timeout),
    as against one that broke after the request went out."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError)


def twilio_signature_valid(*, url: str, params: Mapping[str, Any], signature: str) -> bool:
    """Whether X-Twilio-Signature ``signature`` signs ``url`` and the POST ``params`` with
    our Auth Token (the library's RequestValidator: HMAC-SHA1 over the full URL followed by
    the sorted parameters). False when no Auth Token is configured."""
    if not settings.TWILIO_AUTH_TOKEN or not signature:
        return False
    return RequestValidator(settings.TWILIO_AUTH_TOKEN).validate(url, params, signature)
