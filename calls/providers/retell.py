"""Retell AI, from its API reference and its official Python SDK (retell-sdk):

* Placing: ``POST {RETELL_BASE_URL}/v2/create-phone-call`` with ``Authorization: Bearer
  RETELL_API_KEY`` and ``{from_number, to_number, override_agent_id, metadata}``; the answer
  is the call object with ``call_id`` (``call_status: "registered"``).
  https://docs.retellai.com/api-references/create-phone-call
  We also send ``idempotency_key`` (one per call): Retell then never creates a second call
  for the same request within an hour, a second guard against a re-dial.
* Webhook: ``{"event": "call_started" | "call_ended" | "call_analyzed", "call": {...}}``;
  the outcome is ``call.disconnection_reason``.
  https://docs.retellai.com/features/webhook-overview,
  https://docs.retellai.com/reliability/debug-call-disconnect
* End-of-call data (``call_analyzed``): ``call.call_analysis`` (``call_summary``,
  ``user_sentiment`` Positive/Neutral/Negative/Unknown, ``in_voicemail``,
  ``custom_analysis_data``), ``call.call_cost.combined_cost`` in cents (USD), and
  ``call.transcript_object`` (role ``agent`` / ``user``, words with start/end seconds).
  https://docs.retellai.com/features/post-call-analysis; the SDK's ``CallAnalysis``/``CallCost``.
  Per-call variables: ``retell_llm_dynamic_variables`` (string values) fill ``{{name}}``.
  https://docs.retellai.com/build/dynamic-variables
* Authentication: ``X-Retell-Signature`` (``v=<ms>,d=<hmac>``), checked by the SDK's own
  ``retell.lib.webhook_auth.verify`` with the API key that has the webhook badge.
  https://docs.retellai.com/features/secure-webhook
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.conf import settings

from calls.models import CallStatus

from .base import (
    MAX_END_REASON,
    CallEvent,
    PlaceCallRequest,
    PlacedCall,
    ProviderCapacityError,
    ProviderMaybePlacedError,
    ResultFields,
    WebhookAuth,
    WebhookIgnored,
    WebhookPayloadError,
    as_decimal,
    as_dict,
    as_duration,
    as_int,
    as_provider_call_id,
    as_text,
    our_call_id,
    turns_from_text,
)
from .http import ProviderHTTP

# disconnection_reason -> our status; any other value (errors, telephony failures, billing,
# and whatever Retell adds) is a failure worth a retry.
DISCONNECTION_REASONS: dict[str, str] = {
    "dial_no_answer": CallStatus.NO_ANSWER,
    "voicemail_reached": CallStatus.VOICEMAIL,
    "machine_detected": CallStatus.VOICEMAIL,  # the legacy name of voicemail_reached
    "ivr_reached": CallStatus.NO_ANSWER,
    "dial_busy": CallStatus.BUSY,
    "user_declined": CallStatus.BUSY,
    **dict.fromkeys(
        (
            # Answered, then ended by either side, by inactivity or at the maximum duration.
            "user_hangup",
            "agent_hangup",
            "user_requested_dnc",
            "user_requested_callback",
            "call_transfer",
            "transfer_bridged",
            "transfer_cancelled",
            "inactivity",
            "max_duration_reached",
            "call_take_over",
        ),
        CallStatus.COMPLETED,
    ),
    "manual_stopped": CallStatus.CANCELED,
}
# The number itself is wrong: no retry.
PERMANENT_REASONS = frozenset({"invalid_destination"})
CONCURRENCY_REASONS = frozenset({"concurrency_limit_reached", "no_concurrency_fallback"})


class RetellProvider:
    name = "retell"

    def __init__(self, *, base_url: str, webhook_api_key: str, from_number: str, http: ProviderHTTP) -> None:
        self.url = f"{base_url.rstrip('/')}/v2/create-phone-call"
        self.from_number = from_number
        self.webhook_api_key = webhook_api_key
        self.http = http

    @classmethod
    def from_settings(cls) -> RetellProvider:
        return cls(
            base_url=settings.RETELL_BASE_URL,
            webhook_api_key=settings.RETELL_WEBHOOK_API_KEY,
            from_number=settings.RETELL_FROM_NUMBER,
            http=ProviderHTTP.from_settings(
                provider="Retell",
                headers={"Authorization": f"Bearer {settings.RETELL_API_KEY}"},
                connect_timeout=settings.PROVIDER_CONNECT_TIMEOUT,
                read_timeout=settings.PROVIDER_READ_TIMEOUT,
            ),
        )

    def place_call(self, request: PlaceCallRequest) -> PlacedCall:
        body = {
            "from_number": self.from_number,
            "to_number": request.to_number,
            "override_agent_id": request.agent_id,
            "metadata": request.metadata(),
            "idempotency_key": f"relevel-call-{request.call_id}",
        }
        variables = dict(request.variables)
        if request.voicemail_message:
            # Retell's voicemail text is the agent's own setting; a prompt or that text
            # can use {{voicemail_message}}.
            variables["voicemail_message"] = request.voicemail_message
        if variables:
            body["retell_llm_dynamic_variables"] = {key: str(value) for key, value in variables.items()}
        answer = self.http.post_json(self.url, body)
        if answer.status_code == 429 and "concurren" in answer.message.lower():
            raise ProviderCapacityError(f"Retell HTTP 429: {answer.message}")
        self.http.raise_for_status(answer)
        data = answer.data if isinstance(answer.data, dict) else {}
        provider_call_id = data.get("call_id")
        if not isinstance(provider_call_id, str) or not provider_call_id or len(provider_call_id) > 128:
            raise ProviderMaybePlacedError(
                f"Retell HTTP {answer.status_code} without a call_id in the answer"
            )
        return PlacedCall(provider_call_id=provider_call_id, raw=data)

    def authenticate_webhook(
        self, *, body: bytes, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> WebhookAuth:
        if not self.webhook_api_key:
            return WebhookAuth.UNCONFIGURED
        from retell.lib.webhook_auth import verify

        signature = headers.get("X-Retell-Signature")
        # The SDK raises TypeError on a missing header or a body that is not text.
        if not signature:
            return WebhookAuth.DENIED
        try:
            valid = verify(body.decode("utf-8"), self.webhook_api_key, signature)
        except (TypeError, ValueError):
            valid = False
        return WebhookAuth.OK if valid else WebhookAuth.DENIED

    def parse_webhook(self, payload: Any) -> CallEvent:
        if not isinstance(payload, dict):
            raise WebhookPayloadError("body must be a JSON object")
        event = payload.get("event")
        if not isinstance(event, str):
            raise WebhookPayloadError("event must be a string")
        if event not in ("call_started", "call_ended", "call_analyzed"):
            raise WebhookIgnored(f"event {event[:40]!r} carries no call status")
        call = payload.get("call")
        if not isinstance(call, dict):
            raise WebhookPayloadError("call must be a JSON object")
        provider_call_id = as_provider_call_id(call.get("call_id"), field_name="call.call_id")
        ours = our_call_id(call.get("metadata"))
        if not provider_call_id and ours is None:
            raise WebhookIgnored("no call.call_id")
        base = dict(provider_call_id=provider_call_id, our_call_id=ours, raw=payload)
        if event == "call_started":
            # Sent only for calls that connected (https://docs.retellai.com/features/webhook).
            return CallEvent(status=CallStatus.IN_PROGRESS, **base)
        reason = as_text(call.get("disconnection_reason")).strip()[:MAX_END_REASON]
        status = DISCONNECTION_REASONS.get(reason, CallStatus.FAILED)
        duration_ms = as_int(call.get("duration_ms"))
        return CallEvent(
            status=status,
            end_reason=reason or "(none)",
            retry=reason not in PERMANENT_REASONS,
            transcript=as_text(call.get("transcript")),
            recording_url=as_text(call.get("recording_url")),
            duration_seconds=as_duration(duration_ms // 1000) if duration_ms is not None else None,
            error_message="" if status == CallStatus.COMPLETED else f"Retell disconnection_reason {reason}",
            final_report=True,
            **base,
        )


_SENTIMENTS = {"Positive": ("positive", 1.0), "Neutral": ("neutral", 0.0), "Negative": ("negative", -1.0)}


def parse_result(payloads: list[Any]) -> ResultFields:
    """The call object of the latest call_ended / call_analyzed payload: its analysis (once
    call_analyzed came), cost and turns; empty fields where it has none."""
    latest: dict[str, dict] = {}
    for payload in map(as_dict, payloads):
        if payload.get("event") in ("call_ended", "call_analyzed") and isinstance(payload.get("call"), dict):
            latest[payload["event"]] = payload["call"]
    call = latest.get("call_analyzed") or latest.get("call_ended") or {}
    if not call:
        return ResultFields()
    analysis = as_dict(call.get("call_analysis"))
    sentiment, score = _SENTIMENTS.get(as_text(analysis.get("user_sentiment")), ("", None))
    cents = as_decimal(as_dict(call.get("call_cost")).get("combined_cost"))
    turns, talk = [], 0.0
    utterances = call.get("transcript_object") if isinstance(call.get("transcript_object"), list) else []
    for item in map(as_dict, utterances):
        role, text = as_text(item.get("role")), as_text(item.get("content")).strip()
        if role not in ("agent", "user") or not text:
            continue
        turns.append({"role": role, "text": text})
        words = [as_dict(word) for word in item.get("words") or [] if isinstance(word, dict)]
        start, end = (words[0].get("start"), words[-1].get("end")) if words else (None, None)
        if role == "user" and isinstance(start, int | float) and isinstance(end, int | float) and end > start:
            talk += end - start
    if not turns:
        turns = turns_from_text(as_text(call.get("transcript")))
    reason = as_text(call.get("disconnection_reason"))
    if analysis.get("in_voicemail") is True or DISCONNECTION_REASONS.get(reason) == CallStatus.VOICEMAIL:
        answered_by = "voicemail"
    elif DISCONNECTION_REASONS.get(reason) == CallStatus.COMPLETED:
        answered_by = "human"
    else:
        answered_by = "unknown"
    return ResultFields(
        summary=as_text(analysis.get("call_summary")).strip(),
        data=dict(as_dict(analysis.get("custom_analysis_data"))),
        sentiment=sentiment,
        sentiment_score=score,
        answered_by=answered_by,
        user_talk_seconds=round(talk, 1) if talk else None,
        cost_amount=(cents / 100).quantize(Decimal("0.0001")) if cents is not None else None,
        cost_currency="USD" if cents is not None else "",
        turns=turns,
    )
