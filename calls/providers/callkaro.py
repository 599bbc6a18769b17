"""CallKaro, as its published API documents itself (docs.callkaro.ai):

* Placing: ``POST {CALLKARO_BASE_URL}/call/outbound`` with ``X-API-KEY``; the body is
  ``{to_number, agent_id, metadata}`` and nothing else: relevel owns scheduling and
  retries, so none of CallKaro's ``schedule_at``/``number_of_retries``/trigger-window
  options is ever sent. Success is ``200 {"status": "done", "message": "Call queued
  successfully", "call_sid": "…"}`` (older accounts: ``"status": "success"``, ``call_id``).
  https://docs.callkaro.ai/api-reference/outbound-call
* Webhook: one event, ``{"event": "call_ended", "data": {callSid, hangup_reason,
  call_metadata, call_duration, transcription, recordingUrl, …}}``, sent to the account-level
  and the agent-level URL alike when both are set (so duplicates by design), and unsigned.
  https://docs.callkaro.ai/webhook/call-ended, https://docs.callkaro.ai/webhook/introduction
* Outcome: ``hangup_reason``, mapped by HANGUP_REASONS below.
  https://docs.callkaro.ai/calls/hangup-reasons

Authentication, since CallKaro signs nothing: a secret token in the webhook URL pasted into
CallKaro's dashboard (``?token=CALLKARO_WEBHOOK_TOKEN``), or relevel's own HMAC signature
(``X-Callkaro-Signature``, what the original design and our simulator send).

``/api/webhooks/call`` also accepts the original design's flat format
(``{"call_id", "status", "metadata", …}``), exactly as before.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from django.conf import settings

from calls.models import TERMINAL_STATUSES, CallStatus

from .base import (
    MAX_END_REASON,
    CallEvent,
    PlaceCallRequest,
    PlacedCall,
    ProviderMaybePlacedError,
    ResultFields,
    WebhookAuth,
    WebhookIgnored,
    WebhookPayloadError,
    as_dict,
    as_duration,
    as_iso_datetime,
    as_provider_call_id,
    as_text,
    our_call_id,
    turns_from_text,
)
from .http import ProviderHTTP

SIGNATURE_HEADERS = ("X-Callkaro-Signature", "X-Webhook-Signature")

# hangup_reason -> (our status, whether a retry may follow).
HANGUP_REASONS: dict[str, tuple[str, bool]] = {
    # Picked up, then ended by the user, by the agent, or at the agent's maximum duration.
    "CLIENT_INITIATED": (CallStatus.COMPLETED, False),
    "PARTICIPANT_REMOVED": (CallStatus.COMPLETED, False),
    "SESSION_TIMEOUT": (CallStatus.COMPLETED, False),
    # Rang and nobody answered; or a machine did.
    "USER_UNAVAILABLE": (CallStatus.NO_ANSWER, True),
    "VOICEMAIL_DETECTED": (CallStatus.VOICEMAIL, True),
    "USER_REJECTED": (CallStatus.BUSY, True),
    "USER_UNRESPONSIVE": (CallStatus.FAILED, True),  # "Call not rang": network or carrier
    "PRE_CALL_FN_FAILED": (CallStatus.FAILED, True),
    "UNKNOWN": (CallStatus.FAILED, True),
    # The number itself is wrong: no better in 30 minutes (like a 4xx at placement).
    "INVALID_PHONE_NUMBER": (CallStatus.FAILED, False),
    # CallKaro's own scheduling dropped it (relevel never asks it to schedule; seen only if
    # someone uses those features on the same agent).
    "OUTSIDE_TRIGGER_WINDOW": (CallStatus.CANCELED, False),
    "DELETED_SCH_CALL_ALL": (CallStatus.CANCELED, False),
    "DELETED_SCH_CALL_ONE": (CallStatus.CANCELED, False),
}
# Any value CallKaro adds later: a failure worth retrying, never a silent success.
UNKNOWN_HANGUP_REASON = (CallStatus.FAILED, True)

# The original design's flat format (/api/webhooks/call): status -> ours.
FLAT_STATUSES = {
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


def _same_secret(received: str, expected: str) -> bool:
    # Bytes, not str: compare_digest refuses non-ASCII strings, and a header is input.
    return hmac.compare_digest(expected.encode(), received.encode("utf-8", "replace"))


class CallKaroWebhooks:
    """CallKaro's webhook authentication and format; the simulator speaks it too."""

    name = "callkaro"

    def __init__(self, *, webhook_secret: str, webhook_token: str) -> None:
        self.webhook_secret = webhook_secret
        self.webhook_token = webhook_token

    def authenticate_webhook(
        self, *, body: bytes, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> WebhookAuth:
        if not (self.webhook_secret or self.webhook_token):
            return WebhookAuth.UNCONFIGURED
        token = query.get("token") or ""
        if self.webhook_token and token and _same_secret(token, self.webhook_token):
            return WebhookAuth.OK
        if self.webhook_secret and self._valid_signature(body, headers):
            return WebhookAuth.OK
        return WebhookAuth.DENIED

    def _valid_signature(self, body: bytes, headers: Mapping[str, str]) -> bool:
        received = next((headers.get(h) for h in SIGNATURE_HEADERS if headers.get(h)), "")
        received = received.strip().lower()
        received = received.removeprefix("sha256=")
        return bool(received) and _same_secret(received, sign_body(body, self.webhook_secret))

    def parse_webhook(self, payload: Any) -> CallEvent:
        if not isinstance(payload, dict):
            raise WebhookPayloadError("body must be a JSON object")
        if "event" in payload:
            return self._parse_envelope(payload)
        return _parse_flat(payload)

    def _parse_envelope(self, payload: dict) -> CallEvent:
        event = payload.get("event")
        if not isinstance(event, str):
            raise WebhookPayloadError("event must be a string")
        if event != "call_ended":
            raise WebhookIgnored(f"event {event[:40]!r} is not call_ended")
        data = payload.get("data")
        if not isinstance(data, dict):
            raise WebhookPayloadError("data must be a JSON object")
        provider_call_id = as_provider_call_id(data.get("callSid"), field_name="data.callSid")
        ours = our_call_id(data.get("call_metadata"))
        if not provider_call_id and ours is None:
            raise WebhookIgnored("neither data.callSid nor data.call_metadata.call_id")
        reason = data.get("hangup_reason")
        reason = reason.strip()[:MAX_END_REASON] if isinstance(reason, str) else ""
        status, retry = HANGUP_REASONS.get(reason, UNKNOWN_HANGUP_REASON)
        return CallEvent(
            provider_call_id=provider_call_id,
            status=status,
            our_call_id=ours,
            end_reason=reason or "(none)",
            retry=retry,
            transcript=as_text(data.get("transcription")),
            recording_url=as_text(data.get("recordingUrl")),
            duration_seconds=as_duration(data.get("call_duration")),
            error_message="" if status == CallStatus.COMPLETED else _reason_message(reason),
            raw=payload,
            final_report=True,
        )


def _reason_message(reason: str) -> str:
    return f"CallKaro hangup_reason {reason}" if reason else "CallKaro sent no hangup_reason"


def _parse_flat(payload: dict) -> CallEvent:
    """The original design's format, kept working exactly as before on /api/webhooks/call."""
    provider_call_id = payload.get("call_id")
    if isinstance(provider_call_id, bool) or not isinstance(provider_call_id, (str, int)):
        provider_call_id = None
    if not provider_call_id:
        raise WebhookPayloadError("call_id is required")
    provider_call_id = as_provider_call_id(provider_call_id, field_name="call_id")
    raw_status = payload.get("status")
    if not raw_status or not isinstance(raw_status, str):
        raise WebhookPayloadError("status is required")
    if raw_status not in FLAT_STATUSES:
        raise WebhookPayloadError(
            f"unknown status {raw_status[:40]!r}; expected one of {', '.join(FLAT_STATUSES)}"
        )
    return CallEvent(
        provider_call_id=provider_call_id,
        status=FLAT_STATUSES[raw_status],
        our_call_id=our_call_id(payload.get("metadata")),
        transcript=as_text(payload.get("transcript")),
        recording_url=as_text(payload.get("recording_url")),
        duration_seconds=as_duration(payload.get("duration")),
        error_message=as_text(payload.get("error_message")),
        occurred_at=as_iso_datetime(payload.get("timestamp")),
        raw=payload,
        final_report=FLAT_STATUSES[raw_status] in TERMINAL_STATUSES,
    )


def parse_result(payloads: list[Any]) -> ResultFields:
    """CallKaro's call_ended: ``post_call`` (the agent's post-call variables) as the data,
    ``disposition_reason`` (its short disposition) as the summary, turns from the plain
    ``transcription``; CallKaro reports no cost and no sentiment. The original design's flat
    format gives a transcript only."""
    data: dict = {}
    for payload in map(as_dict, payloads):
        if payload.get("event") == "call_ended" and isinstance(payload.get("data"), dict):
            data = payload["data"]
        elif not data and payload.get("status") in FLAT_STATUSES and "event" not in payload:
            data = {"transcription": payload.get("transcript"), "flat_status": payload.get("status")}
    if not data:
        return ResultFields()
    reason = as_text(data.get("hangup_reason"))
    status = HANGUP_REASONS.get(reason, UNKNOWN_HANGUP_REASON)[0] if reason else None
    if status == CallStatus.VOICEMAIL:
        answered_by = "voicemail"
    elif status == CallStatus.COMPLETED or data.get("flat_status") == "completed":
        answered_by = "human"
    else:
        answered_by = "unknown"
    return ResultFields(
        summary=as_text(data.get("disposition_reason")).strip(),
        data=dict(as_dict(data.get("post_call"))),
        answered_by=answered_by,
        turns=turns_from_text(as_text(data.get("transcription"))),
    )


class CallKaroProvider(CallKaroWebhooks):
    name = "callkaro"

    def __init__(self, *, base_url: str, webhook_secret: str, webhook_token: str, http: ProviderHTTP) -> None:
        super().__init__(webhook_secret=webhook_secret, webhook_token=webhook_token)
        self.url = f"{base_url.rstrip('/')}/call/outbound"
        self.http = http

    @property
    def session(self):
        return self.http.session

    @classmethod
    def from_settings(cls) -> CallKaroProvider:
        return cls(
            base_url=settings.CALLKARO_BASE_URL,
            webhook_secret=settings.CALLKARO_WEBHOOK_SECRET,
            webhook_token=settings.CALLKARO_WEBHOOK_TOKEN,
            http=ProviderHTTP.from_settings(
                provider="CallKaro",
                headers={"X-API-KEY": settings.CALLKARO_API_KEY},
                connect_timeout=settings.CALLKARO_CONNECT_TIMEOUT,
                read_timeout=settings.CALLKARO_READ_TIMEOUT,
            ),
        )

    def place_call(self, request: PlaceCallRequest) -> PlacedCall:
        # Our variables ride in the metadata, which CallKaro's prompts read as
        # {{metadata.<name>}} (https://docs.callkaro.ai/api-reference/outbound-call).
        metadata: dict[str, Any] = {**request.variables, **request.metadata()}
        if request.voicemail_message:
            metadata["voicemail_message"] = request.voicemail_message
        body = {
            "to_number": request.to_number,
            "agent_id": request.agent_id,
            "metadata": metadata,
        }
        answer = self.http.post_json(self.url, body)
        self.http.raise_for_status(answer)
        data = answer.data if isinstance(answer.data, dict) else {}
        provider_call_id = data.get("call_sid") or data.get("call_id")
        if isinstance(provider_call_id, bool) or not isinstance(provider_call_id, (str, int)):
            provider_call_id = None
        if not provider_call_id or len(str(provider_call_id)) > 128:
            # A 2xx we cannot read may still have dialled: wait for the webhook instead.
            raise ProviderMaybePlacedError(
                f"CallKaro HTTP {answer.status_code} without a call_sid in the answer"
            )
        return PlacedCall(provider_call_id=str(provider_call_id), raw=data)
