"""The one place events leave relevel: a signed POST to an endpoint (Standard Webhooks).

Signed with the reference library (standardwebhooks), so that a receiver verifies with it
in three lines (docs/events.md). Short timeouts: a receiver that hangs costs one delivery
worker EVENTS_CONNECT_TIMEOUT + EVENTS_READ_TIMEOUT, and nobody else anything.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import requests
from django.conf import settings
from standardwebhooks.webhooks import Webhook

RESPONSE_EXCERPT_CHARS = 500
_local = threading.local()


@dataclass(frozen=True)
class Answer:
    status_code: int | None  # None: no HTTP answer at all
    latency_ms: int
    excerpt: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def signed_headers(*, secret: str, webhook_id: str, body: str, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers for ``body`` sent at ``at``."""
    at = at.astimezone(UTC)  # the library reads the time as UTC whatever its zone
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id=webhook_id, timestamp=at, data=body),
        "content-type": "application/json",
        "user-agent": "relevel-events/1",
    }


def _session() -> requests.Session:
    # One per thread (a requests.Session is not meant to be shared), kept: connections are
    # reused across deliveries to the same receiver.
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


def webhook_post(*, url: str, secret: str, webhook_id: str, body: str, at: datetime) -> Answer:
    """POST ``body`` to ``url``, signed; what came back. Never raises for the network."""
    headers = signed_headers(secret=secret, webhook_id=webhook_id, body=body, at=at)
    started = time.monotonic()
    try:
        response = _session().post(
            url,
            data=body.encode(),
            headers=headers,
            timeout=(settings.EVENTS_CONNECT_TIMEOUT, settings.EVENTS_READ_TIMEOUT),
            # A redirect is a failure (Standard Webhooks): the URL should be updated instead.
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        return Answer(
            status_code=None,
            latency_ms=int((time.monotonic() - started) * 1000),
            error=f"{type(exc).__name__}: {str(exc)[:200]}",
        )
    latency_ms = int((time.monotonic() - started) * 1000)
    return Answer(
        status_code=response.status_code,
        latency_ms=latency_ms,
        excerpt=response.text[:RESPONSE_EXCERPT_CHARS],
    )
