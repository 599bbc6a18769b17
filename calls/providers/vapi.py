"""Vapi, from its published API reference (VapiAI/docs, fern/apis/api/openapi.json):

* Placing: ``POST {VAPI_BASE_URL}/call`` with ``Authorization: Bearer VAPI_API_KEY`` and
  ``{assistantId, phoneNumberId, customer: {number}}``; ``201`` with the call's ``id``.
  https://docs.vapi.ai/calls/outbound-calling, https://docs.vapi.ai/api-reference/calls/create
  A call has no free ``metadata`` field (unknown properties are a 400), so our ids ride in
  ``assistantOverrides.metadata`` and in the call's ``name`` (40 characters at most), both
  of which Vapi echoes back in the ``call`` object of its server messages.
* Capacity: ``subscriptionLimits.concurrencyBlocked: true`` in the answer, a 400 that says
  so, or the endedReason ``call.start.error-subscription-concurrency-limit-reached``.
  https://docs.vapi.ai/calls/call-concurrency
* Webhook (server messages): ``{"message": {"type": "status-update" | "end-of-call-report",
  "call": {...}, ...}}``; the outcome is ``endedReason``.
  https://docs.vapi.ai/server-url/events, https://docs.vapi.ai/calls/call-ended-reason
* End-of-call data (``end-of-call-report``): ``analysis.summary``, ``analysis.structuredData``
  and ``analysis.successEvaluation`` (https://docs.vapi.ai/call-analysis, [OAS] ``Analysis``),
  ``cost`` in USD and ``costBreakdown.total`` ([OAS] ``ServerMessageEndOfCallReport``,
  ``CostBreakdown``), ``artifact.messages`` (role ``user`` / ``assistant`` / ``bot``), and the
  endedReason ``voicemail`` when voicemail detection hung up on a machine.
  Per-call variables: ``assistantOverrides.variableValues`` fill ``{{name}}`` in the prompt,
  ``assistantOverrides.voicemailMessage`` is said to a machine
  (https://docs.vapi.ai/assistants/dynamic-variables).
* Authentication: the legacy ``X-Vapi-Secret`` header, or a Bearer credential
  (``Authorization: Bearer <secret>``), against VAPI_WEBHOOK_SECRET.
  https://docs.vapi.ai/server-url/server-authentication
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
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
    as_iso_datetime,
    as_provider_call_id,
    as_text,
    our_call_id,
    turns_from_text,
)
from .http import ProviderHTTP

CONCURRENCY_ENDED_REASON = "call.start.error-subscription-concurrency-limit-reached"
# endedReason -> our status; anything else (Vapi lists ~600 error reasons) is a failure
# worth a retry. Groups as https://docs.vapi.ai/calls/call-ended-reason describes them.
ENDED_REASONS: dict[str, str] = {
    **dict.fromkeys(
        (
            "customer-did-not-answer",
            "call.in-progress.error-providerfault-outbound-sip-408-request-timeout",
            "call.in-progress.error-providerfault-outbound-sip-480-temporarily-unavailable",
        ),
        CallStatus.NO_ANSWER,
    ),
    "customer-busy": CallStatus.BUSY,
    # Voicemail detection found a machine and ended the call (or left voicemailMessage).
    "voicemail": CallStatus.VOICEMAIL,
    **dict.fromkeys(
        (
            # Ended by the customer or the assistant, by silence or at the maximum duration:
            # the call was answered.
            "customer-ended-call",
            "customer-ended-call-before-warm-transfer",
            "customer-ended-call-after-warm-transfer-attempt",
            "customer-ended-call-during-transfer",
            "assistant-ended-call",
            "assistant-said-end-call-phrase",
            "assistant-ended-call-with-hangup-task",
            "assistant-ended-call-after-message-spoken",
            "assistant-forwarded-call",
            "silence-timed-out",
            "exceeded-max-duration",
            "call.in-progress.twilio-completed-call",
            "call.in-progress.sip-completed-call",
            "vonage-completed",
        ),
        CallStatus.COMPLETED,
    ),
    **dict.fromkeys(("manually-canceled", "call-deleted", "scheduled-call-deleted"), CallStatus.CANCELED),
}
# The number itself is wrong: no retry (as INVALID_PHONE_NUMBER with CallKaro).
PERMANENT_ENDED_REASONS = frozenset({"twilio-reported-customer-misdialed"})
STATUS_UPDATES = {
    "ringing": CallStatus.RINGING,
    "in-progress": CallStatus.IN_PROGRESS,
    "forwarding": CallStatus.IN_PROGRESS,
}
CALL_NAME = re.compile(r"^relevel call (\d{1,18})$")


def _same(received: str, expected: str) -> bool:
    return hmac.compare_digest(expected.encode(), received.encode("utf-8", "replace"))


class VapiProvider:
    name = "vapi"

    def __init__(
        self, *, base_url: str, phone_number_id: str, webhook_secret: str, http: ProviderHTTP
    ) -> None:
        self.url = f"{base_url.rstrip('/')}/call"
        self.phone_number_id = phone_number_id
        self.webhook_secret = webhook_secret
        self.http = http

    @classmethod
    def from_settings(cls) -> VapiProvider:
        return cls(
            base_url=settings.VAPI_BASE_URL,
            phone_number_id=settings.VAPI_PHONE_NUMBER_ID,
            webhook_secret=settings.VAPI_WEBHOOK_SECRET,
            http=ProviderHTTP.from_settings(
                provider="Vapi",
                headers={"Authorization": f"Bearer {settings.VAPI_API_KEY}"},
                connect_timeout=settings.PROVIDER_CONNECT_TIMEOUT,
                read_timeout=settings.PROVIDER_READ_TIMEOUT,
            ),
        )

    # --- Placing ---------------------------------------------------------------------------

    def place_call(self, request: PlaceCallRequest) -> PlacedCall:
        body = {
            "assistantId": request.agent_id,
            "phoneNumberId": self.phone_number_id,
            "name": f"relevel call {request.call_id}",
            "customer": {"number": request.to_number, "name": request.name[:40]},
            "assistantOverrides": _overrides(request),
        }
        answer = self.http.post_json(self.url, body)
        data = answer.data if isinstance(answer.data, dict) else {}
        if answer.status_code == 400 and "concurren" in answer.message.lower():
            raise ProviderCapacityError(f"Vapi HTTP 400: {answer.message}")
        self.http.raise_for_status(answer)
        limits = data.get("subscriptionLimits")
        blocked = isinstance(limits, dict) and limits.get("concurrencyBlocked") is True
        provider_call_id = data.get("id")
        if not isinstance(provider_call_id, str) or not provider_call_id or len(provider_call_id) > 128:
            if blocked:
                raise ProviderCapacityError("Vapi refused the call: concurrency limit reached")
            raise ProviderMaybePlacedError(f"Vapi HTTP {answer.status_code} without a call id in the answer")
        # Blocked but given an id: Vapi's docs say such a call may wait for a free slot and
        # ring later, so it is never sent again; its server messages settle it.
        return PlacedCall(provider_call_id=provider_call_id, raw=data)

    # --- Webhook ---------------------------------------------------------------------------

    def authenticate_webhook(
        self, *, body: bytes, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> WebhookAuth:
        if not self.webhook_secret:
            return WebhookAuth.UNCONFIGURED
        received = (headers.get("X-Vapi-Secret") or "").strip()
        if not received:
            scheme, _, token = (headers.get("Authorization") or "").strip().partition(" ")
            received = token.strip() if scheme.lower() == "bearer" else ""
        if received and _same(received, self.webhook_secret):
            return WebhookAuth.OK
        return WebhookAuth.DENIED

    def parse_webhook(self, payload: Any) -> CallEvent:
        if not isinstance(payload, dict) or not isinstance(payload.get("message"), dict):
            raise WebhookPayloadError("body must be a JSON object with a message object")
        message = payload["message"]
        kind = message.get("type")
        if not isinstance(kind, str):
            raise WebhookPayloadError("message.type must be a string")
        if kind not in ("status-update", "end-of-call-report"):
            raise WebhookIgnored(f"message type {kind[:40]!r} carries no call status")
        call = message.get("call") if isinstance(message.get("call"), dict) else {}
        provider_call_id = as_provider_call_id(call.get("id"), field_name="message.call.id")
        ours = _our_id(call)
        if not provider_call_id and ours is None:
            raise WebhookIgnored("no call id in message.call")
        base = dict(provider_call_id=provider_call_id, our_call_id=ours, raw=payload)
        if kind == "status-update":
            status = message.get("status")
            if status in STATUS_UPDATES:
                return CallEvent(status=STATUS_UPDATES[status], **base)
            if status != "ended":
                raise WebhookIgnored(f"status {str(status)[:40]!r} is not progress")
            return _ended(message, **base)
        return _ended(message, **base)


def _overrides(request: PlaceCallRequest) -> dict[str, Any]:
    overrides: dict[str, Any] = {"metadata": request.metadata()}
    if request.variables:
        overrides["variableValues"] = dict(request.variables)
    if request.voicemail_message:
        overrides["voicemailMessage"] = request.voicemail_message
    return overrides


_AGENT_ROLES = {"assistant", "bot"}


def parse_result(payloads: list[Any]) -> ResultFields:
    """The end-of-call report's analysis, cost and turns; empty fields where it has none
    (or where only status updates arrived)."""
    report: dict = {}
    for payload in payloads:
        message = as_dict(as_dict(payload).get("message"))
        if message.get("type") == "end-of-call-report":
            report = message
    if not report:
        return ResultFields()
    analysis = as_dict(report.get("analysis"))
    data = dict(as_dict(analysis.get("structuredData")))
    if analysis.get("successEvaluation") not in (None, ""):
        data.setdefault("successEvaluation", analysis["successEvaluation"])
    cost = as_decimal(report.get("cost"))
    if cost is None:
        cost = as_decimal(as_dict(report.get("costBreakdown")).get("total"))
    artifact = as_dict(report.get("artifact"))
    turns, talk = [], 0.0
    messages = artifact.get("messages") if isinstance(artifact.get("messages"), list) else []
    for item in map(as_dict, messages):
        role, text = as_text(item.get("role")), as_text(item.get("message")).strip()
        if role not in _AGENT_ROLES | {"user"} or not text:
            continue
        turns.append({"role": "user" if role == "user" else "agent", "text": text})
        start, end = item.get("time"), item.get("endTime")
        if role == "user" and isinstance(start, int | float) and isinstance(end, int | float) and end > start:
            talk += (end - start) / 1000  # epoch milliseconds
    if not turns:
        turns = turns_from_text(as_text(artifact.get("transcript")))
    reason = as_text(report.get("endedReason"))
    answered_by = (
        "voicemail"
        if reason == "voicemail"
        else "human"
        if ENDED_REASONS.get(reason) == CallStatus.COMPLETED
        else "unknown"
    )
    return ResultFields(
        summary=as_text(analysis.get("summary")).strip(),
        data=data,
        answered_by=answered_by,
        user_talk_seconds=round(talk, 1) if talk else None,
        cost_amount=cost,
        cost_currency="USD" if cost is not None else "",
        turns=turns,
    )


def _our_id(call: dict) -> int | None:
    overrides = call.get("assistantOverrides")
    ours = our_call_id(overrides.get("metadata")) if isinstance(overrides, dict) else None
    if ours is None:
        match = CALL_NAME.match(as_text(call.get("name")))
        ours = int(match.group(1)) if match else None
    return ours


def _ended(message: dict, **base: Any) -> CallEvent:
    reason = as_text(message.get("endedReason")).strip()[:MAX_END_REASON]
    status = ENDED_REASONS.get(reason, CallStatus.FAILED)
    artifact = message.get("artifact") if isinstance(message.get("artifact"), dict) else {}
    recording = as_text(artifact.get("recordingUrl"))
    if not recording and isinstance(artifact.get("recording"), dict):
        mono = artifact["recording"].get("mono")
        recording = as_text(mono.get("combinedUrl")) if isinstance(mono, dict) else ""
    started, ended = as_iso_datetime(message.get("startedAt")), as_iso_datetime(message.get("endedAt"))
    duration = None
    if started and ended and ended >= started:
        duration = int((ended - started).total_seconds())
    return CallEvent(
        status=status,
        end_reason=reason or "(none)",
        retry=reason not in PERMANENT_ENDED_REASONS,
        transcript=as_text(artifact.get("transcript")),
        recording_url=recording,
        duration_seconds=duration,
        error_message="" if status == CallStatus.COMPLETED else f"Vapi endedReason {reason or '(none)'}",
        occurred_at=ended,
        final_report=message.get("type") == "end-of-call-report",
        **base,
    )
