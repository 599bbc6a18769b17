"""CallKaro: the one HTTP choke point for placing calls, and its webhook format."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

from calls.models import CallStatus

from .base import (
    CallEvent,
    PlaceCallRequest,
    PlacedCall,
    ProviderPermanentError,
    ProviderTransientError,
    WebhookPayloadError,
)

MAX_PROVIDER_CALL_ID = 128  # Call.provider_call_id's length
MAX_DURATION_SECONDS = 2**31 - 1  # Call.duration_seconds is a PositiveIntegerField
SIGNATURE_HEADERS = ("X-Callkaro-Signature", "X-Webhook-Signature")
# Provider statuses as they arrive -> ours. "no-answer" is an alias some providers send.
WEBHOOK_STATUSES = {
    "ringing": CallStatus.RINGING,
    "in_progress": CallStatus.IN_PROGRESS,
    "completed": CallStatus.COMPLETED,
    "failed": CallStatus.FAILED,
    "no_answer": CallStatus.NO_ANSWER,
    "no-answer": CallStatus.NO_ANSWER,
    "busy": CallStatus.BUSY,
}


def sign_body(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class CallKaroWebhooks:
    """CallKaro's webhook format; the simulator speaks it too."""

    def __init__(self, *, webhook_secret: str) -> None:
        self.webhook_secret = webhook_secret

    def verify_webhook_signature(self, *, body: bytes, headers: Mapping[str, str]) -> bool:
        if not self.webhook_secret:
            return False
        received = next((headers.get(h) for h in SIGNATURE_HEADERS if headers.get(h)), "")
        received = received.strip()
        if received.lower().startswith("sha256="):
            received = received[len("sha256=") :]
        expected = sign_body(body, self.webhook_secret).encode()
        # Bytes, not str: compare_digest refuses non-ASCII strings, and a header is input.
        return hmac.compare_digest(expected, received.lower().encode("utf-8", "replace"))

    def parse_webhook(self, payload: Any) -> CallEvent:
        if not isinstance(payload, dict):
            raise WebhookPayloadError("body must be a JSON object")
        provider_call_id = payload.get("call_id")
        raw_status = payload.get("status")
        if isinstance(provider_call_id, bool) or not isinstance(provider_call_id, (str, int)):
            provider_call_id = None
        if not provider_call_id:
            raise WebhookPayloadError("call_id is required")
        if len(str(provider_call_id)) > MAX_PROVIDER_CALL_ID:
            raise WebhookPayloadError(f"call_id is longer than {MAX_PROVIDER_CALL_ID} characters")
        if not raw_status or not isinstance(raw_status, str):
            raise WebhookPayloadError("status is required")
        if raw_status not in WEBHOOK_STATUSES:
            raise WebhookPayloadError(
                f"unknown status {raw_status[:40]!r}; expected one of {', '.join(WEBHOOK_STATUSES)}"
            )
        duration_seconds = _as_int(payload.get("duration"))
        if duration_seconds is not None and duration_seconds > MAX_DURATION_SECONDS:
            raise WebhookPayloadError("duration is out of range")
        metadata = payload.get("metadata") if isinstance(payload.get("metadata"), dict) else {}
        return CallEvent(
            provider_call_id=str(provider_call_id),
            status=WEBHOOK_STATUSES[raw_status],
            our_call_id=_as_int(metadata.get("call_id")),
            transcript=_as_text(payload.get("transcript")),
            recording_url=_as_text(payload.get("recording_url"))[:1000],
            duration_seconds=duration_seconds,
            error_message=_as_text(payload.get("error_message")),
            occurred_at=_as_datetime(payload.get("timestamp")),
            raw=payload,
        )


class CallKaroProvider(CallKaroWebhooks):
    name = "callkaro"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        webhook_secret: str,
        connect_timeout: float,
        read_timeout: float,
        pool_size: int = 32,
    ) -> None:
        super().__init__(webhook_secret=webhook_secret)
        self.url = f"{base_url.rstrip('/')}/call/outbound"
        self.timeout = (connect_timeout, read_timeout)
        # One Session per process: keep-alive connections to the provider are reused.
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update({"X-API-KEY": api_key, "Content-Type": "application/json"})

    @classmethod
    def from_settings(cls) -> CallKaroProvider:
        from calls.queues import placement_threads_per_process

        return cls(
            base_url=settings.CALLKARO_BASE_URL,
            api_key=settings.CALLKARO_API_KEY,
            webhook_secret=settings.CALLKARO_WEBHOOK_SECRET,
            connect_timeout=settings.CALLKARO_CONNECT_TIMEOUT,
            read_timeout=settings.CALLKARO_READ_TIMEOUT,
            pool_size=placement_threads_per_process(),
        )

    def place_call(self, request: PlaceCallRequest) -> PlacedCall:
        body = {
            "to_number": request.to_number,
            "agent_id": request.agent_id,
            "metadata": request.metadata(),
        }
        try:
            response = self.session.post(self.url, json=body, timeout=self.timeout)
        except requests.Timeout as exc:
            raise ProviderTransientError(f"CallKaro timed out: {type(exc).__name__}") from exc
        except requests.RequestException as exc:
            raise ProviderTransientError(f"CallKaro unreachable: {type(exc).__name__}") from exc

        try:
            data = response.json()
        except ValueError:
            data = None
        message = data.get("message") if isinstance(data, dict) else None
        if response.status_code == 429 or response.status_code >= 500:
            raise ProviderTransientError(f"CallKaro HTTP {response.status_code}: {message or 'no message'}")
        if response.status_code >= 400:
            raise ProviderPermanentError(f"CallKaro HTTP {response.status_code}: {message or 'no message'}")
        provider_call_id = data.get("call_id") if isinstance(data, dict) else None
        if not 200 <= response.status_code < 300 or not provider_call_id:
            # A 200 we cannot read may still have dialled; a retry is the lesser evil and
            # leaves a trace on the call (its error and payloads).
            raise ProviderTransientError(
                f"CallKaro HTTP {response.status_code} without a call_id in the answer"
            )
        return PlacedCall(provider_call_id=str(provider_call_id), raw=data)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _as_int(value: Any) -> int | None:
    """A non-negative integer that fits a database bigint, else None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if 0 <= number < 2**63 else None


def _as_datetime(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None
