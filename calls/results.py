"""One result per call, in one shape whatever the provider (docs/conversation.md, "The result").

Each provider module parses its own end-of-call payloads (``parse_result``: Vapi's
end-of-call report, Retell's call_analyzed, CallKaro's call_ended); this module picks the
parser, fills in what no provider said (the sentiment of the user's own turns, with VADER),
stores the result and reads it back as JSON. A payload with none of the fields yields a
result with empty fields, never an error. Runs in the analysis job (calls.analysis), never
in the webhook.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from typing import Any

from django.utils import timezone
from django.utils.module_loading import import_string

from .models import Call, CallResult, CallStatus
from .providers.base import ResultFields

PARSERS = {
    "callkaro": "calls.providers.callkaro.parse_result",
    # The simulator speaks CallKaro's webhook.
    "simulator": "calls.providers.callkaro.parse_result",
    "vapi": "calls.providers.vapi.parse_result",
    "retell": "calls.providers.retell.parse_result",
}
# VADER's own thresholds on its compound score (its README, "About the Scoring").
VADER_POSITIVE, VADER_NEGATIVE = 0.05, -0.05


@cache
def _vader():
    # Imported on first use: the lexicon loads in ~0.1 s, which web processes never need.
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment_compute(*, user_text: str) -> tuple[str, float] | None:
    """VADER's label and compound score (-1..1) for what the user said; None if nothing."""
    if not user_text.strip():
        return None
    score = _vader().polarity_scores(user_text)["compound"]
    label = "positive" if score >= VADER_POSITIVE else "negative" if score <= VADER_NEGATIVE else "neutral"
    return label, round(score, 4)


def user_text_of(turns: list[dict[str, str]]) -> str:
    return " ".join(turn["text"] for turn in turns if turn.get("role") == "user")


@dataclasses.dataclass(frozen=True)
class NormalisedResult:
    fields: ResultFields
    sentiment_source: str  # "provider", "computed" or "" (no sentiment at all)


def result_normalise(*, provider: str, payloads: list[Any], status: str = "") -> NormalisedResult:
    """The result of a call from its provider's payloads (oldest first)."""
    path = PARSERS.get(provider)
    fields = import_string(path)(payloads if isinstance(payloads, list) else []) if path else ResultFields()
    changes: dict[str, Any] = {}
    if fields.answered_by == "unknown" and status in (CallStatus.VOICEMAIL, CallStatus.COMPLETED):
        # The status the webhook recorded says who answered when the payload's fields did not.
        changes["answered_by"] = "voicemail" if status == CallStatus.VOICEMAIL else "human"
    source = "provider" if fields.sentiment else ""
    if not fields.sentiment:
        computed = sentiment_compute(user_text=user_text_of(fields.turns))
        if computed is not None:
            changes["sentiment"], changes["sentiment_score"] = computed
            source = "computed"
    if changes:
        fields = dataclasses.replace(fields, **changes)
    return NormalisedResult(fields=fields, sentiment_source=source)


def result_store(*, call: Call, result: NormalisedResult) -> CallResult:
    """Create or replace the call's result (a later payload, Retell's call_analyzed, say,
    completes an earlier one). The analysis' own fields are left as they are in the row;
    the instance returned does not hold them (nor the row's created_at): read the row for
    those (call_analyse does, under its lock)."""
    from .budget import cost_record

    fields = result.fields
    before = CallResult.objects.filter(call=call).values_list("cost_amount", "cost_currency").first()
    values = {
        "summary": fields.summary,
        "data": fields.data,
        "sentiment": fields.sentiment,
        "sentiment_score": fields.sentiment_score,
        "sentiment_source": result.sentiment_source,
        "answered_by": fields.answered_by,
        "user_talk_seconds": fields.user_talk_seconds,
        "cost_amount": fields.cost_amount,
        "cost_currency": fields.cost_currency,
        "turns": fields.turns,
        "transcript": "\n".join(f"{turn['role']}: {turn['text']}" for turn in fields.turns),
    }
    # One INSERT ... ON CONFLICT DO UPDATE of these fields (update_or_create read the row
    # under lock, then wrote it: two statements and a fifth of the analysis' CPU).
    stored = CallResult(call=call, **values)
    CallResult.objects.bulk_create(
        [stored], update_conflicts=True, unique_fields=["call"], update_fields=[*values, "updated_at"]
    )
    # The month's total moves by what this result adds (a re-run adds nothing twice).
    old_amount, old_currency = before or (None, "")
    now = timezone.now()
    if old_amount is not None and old_currency != fields.cost_currency:
        cost_record(amount=-old_amount, currency=old_currency, now=now)
        old_amount = None
    if fields.cost_amount is not None or old_amount is not None:
        cost_record(
            amount=(fields.cost_amount or 0) - (old_amount or 0),
            currency=fields.cost_currency or old_currency,
            now=now,
        )
    return stored


def result_as_json(result: CallResult) -> dict[str, Any]:
    """The result in the shape the API, the events and the docs show."""
    return {
        "summary": result.summary,
        "data": result.data,
        "sentiment": (
            {"label": result.sentiment, "score": result.sentiment_score, "source": result.sentiment_source}
            if result.sentiment
            else None
        ),
        "answered_by": result.answered_by,
        "user_talk_seconds": result.user_talk_seconds,
        "cost": (
            {"amount": format(result.cost_amount.normalize(), "f"), "currency": result.cost_currency}
            if result.cost_amount is not None
            else None
        ),
        "turns": result.turns,
        "opt_out_heard": result.opt_out_heard,
        "callback": (
            {
                "requested_for": (
                    result.callback_requested_for.isoformat() if result.callback_requested_for else None
                ),
                "note": result.callback_note,
            }
            if result.callback_requested_for or result.callback_note
            else None
        ),
    }


def call_result_json(*, call_id: int) -> dict[str, Any] | None:
    """A call's normalised result as a JSON-able dict, or None before it is computed (for
    ``call.ended`` events and the API)."""
    result = CallResult.objects.filter(call_id=call_id).first()
    return result_as_json(result) if result is not None else None
