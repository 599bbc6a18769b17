"""One result per call, in one shape: each provider's documented end-of-call examples
(tests/fixtures/<provider>/SOURCES.md) through its own parser and the normaliser."""

from __future__ import annotations

from decimal import Decimal

import pytest

from calls.models import CallStatus
from calls.results import result_as_json, result_normalise, result_store, sentiment_compute
from tests.provider_fakes import fixture


def normalised(provider: str, *names: str, status: str = ""):
    payloads = [fixture(provider if provider != "simulator" else "callkaro", name) for name in names]
    return result_normalise(provider=provider, payloads=payloads, status=status)


def test_vapi_end_of_call_report_gives_summary_structured_data_cost_and_turns():
    result = normalised("vapi", "webhook_end_of_call_report_analysis.json")
    fields = result.fields

    assert fields.summary == "The user said they went for a 20-minute walk and felt good."
    assert fields.data == {"goal_done": True, "minutes": 20, "opt_out": False, "successEvaluation": "true"}
    assert (fields.cost_amount, fields.cost_currency) == (Decimal("0.1234"), "USD")
    assert fields.answered_by == "human"
    assert [turn["role"] for turn in fields.turns] == ["agent", "user", "agent"]
    assert fields.user_talk_seconds == 3.5
    # Vapi gives no sentiment: VADER's, over the user's own turn, and said so.
    assert (fields.sentiment, result.sentiment_source) == ("positive", "computed")
    assert fields.sentiment_score > 0.05


def test_vapi_cost_falls_back_to_the_cost_breakdown_total():
    payload = fixture("vapi", "webhook_end_of_call_report_analysis.json")
    del payload["message"]["cost"]
    payload["message"]["costBreakdown"]["total"] = 0.5

    fields = result_normalise(provider="vapi", payloads=[payload]).fields

    assert fields.cost_amount == Decimal("0.5")


def test_vapi_voicemail_ended_reason_is_answered_by_voicemail():
    fields = normalised("vapi", "webhook_end_of_call_report_voicemail.json").fields

    assert fields.answered_by == "voicemail"
    assert (fields.summary, fields.turns, fields.sentiment) == ("", [], "")


def test_vapi_documented_example_with_roles_and_no_analysis_still_gives_turns():
    fields = normalised("vapi", "webhook_end_of_call_report_doc.json").fields

    assert fields.turns == [
        {"role": "agent", "text": "How can I help?"},
        {"role": "user", "text": "What's the weather?"},
    ]
    assert fields.summary == "" and fields.cost_amount is None


def test_retell_call_analyzed_gives_its_sentiment_custom_data_and_cost_in_dollars():
    result = normalised("retell", "webhook_call_ended.json", "webhook_call_analyzed_with_cost.json")
    fields = result.fields

    assert fields.summary.startswith("The user walked for 20 minutes")
    assert fields.data == {"goal_done": True, "minutes": 20}
    assert (fields.sentiment, fields.sentiment_score, result.sentiment_source) == (
        "positive",
        1.0,
        "provider",
    )
    # combined_cost is in cents.
    assert (fields.cost_amount, fields.cost_currency) == (Decimal("0.0375"), "USD")
    assert fields.answered_by == "human"
    assert fields.turns[1] == {"role": "user", "text": "Good, twenty minutes. Call me back at 8 please."}
    assert fields.user_talk_seconds == 3.6


def test_retell_call_ended_alone_gives_no_analysis_yet():
    fields = normalised("retell", "webhook_call_ended.json").fields

    assert fields.summary == "" and fields.data == {} and fields.cost_amount is None
    assert fields.answered_by == "human"


def test_retell_in_voicemail_is_answered_by_voicemail():
    fields = normalised("retell", "webhook_call_analyzed_voicemail.json").fields

    assert fields.answered_by == "voicemail"
    # "Unknown" is no sentiment.
    assert fields.sentiment == ""


def test_callkaro_post_call_values_are_the_data_and_the_disposition_the_summary():
    result = normalised("callkaro", "webhook_call_ended.json")
    fields = result.fields

    assert fields.data == {"lead_status": "interested"}
    assert fields.summary == "Customer requested callback"
    assert fields.answered_by == "human"
    assert fields.cost_amount is None and fields.cost_currency == ""
    # "Full call transcript..." has no speaker labels: one turn, nobody's in particular.
    assert fields.turns == [{"role": "unknown", "text": "Full call transcript..."}]
    assert result.sentiment_source == ""


def test_callkaro_voicemail_detected_is_answered_by_voicemail():
    fields = normalised("callkaro", "webhook_call_ended_voicemail.json").fields

    assert fields.answered_by == "voicemail" and fields.turns == []


def test_the_simulators_labelled_transcript_becomes_turns_with_a_computed_sentiment():
    payload = fixture("callkaro", "webhook_call_ended.json")
    payload["data"]["transcription"] = "Agent: Hi, this is your daily check-in. User: Going well, thanks!"

    result = result_normalise(provider="simulator", payloads=[payload])

    assert result.fields.turns == [
        {"role": "agent", "text": "Hi, this is your daily check-in."},
        {"role": "user", "text": "Going well, thanks!"},
    ]
    assert (result.fields.sentiment, result.sentiment_source) == ("positive", "computed")


@pytest.mark.parametrize("provider", ["vapi", "retell", "callkaro", "simulator", "nobody"])
@pytest.mark.parametrize(
    "payloads",
    [[], [{}], ["text"], [{"message": {"type": "end-of-call-report"}}], [{"event": "call_ended", "call": {}}],
     [{"event": "call_ended", "data": {}}], [{"message": {"type": "end-of-call-report", "analysis": "x",
     "artifact": {"messages": [1, {"role": "user"}]}, "cost": "NaN"}}],
     [{"event": "call_analyzed", "call": {"call_analysis": [], "call_cost": {"combined_cost": True},
     "transcript_object": [{"role": "user", "content": "hi", "words": "x"}]}}]],
)  # fmt: skip
def test_a_provider_answer_with_none_of_the_fields_gives_an_empty_result_never_an_error(provider, payloads):
    fields = result_normalise(provider=provider, payloads=payloads).fields

    assert fields.summary == "" and fields.cost_amount is None and fields.answered_by in ("unknown", "human")


def test_the_recorded_status_says_who_answered_when_the_payload_does_not():
    assert result_normalise(provider="vapi", payloads=[], status=CallStatus.VOICEMAIL).fields.answered_by == (
        "voicemail"
    )
    assert (
        result_normalise(provider="vapi", payloads=[], status=CallStatus.COMPLETED).fields.answered_by
        == "human"
    )
    assert result_normalise(provider="vapi", payloads=[], status=CallStatus.NO_ANSWER).fields.answered_by == (
        "unknown"
    )


def test_sentiment_of_nothing_is_none_and_of_a_complaint_is_negative():
    assert sentiment_compute(user_text="  ") is None
    label, score = sentiment_compute(user_text="This is terrible, I hate it.")
    assert label == "negative" and score < -0.05


@pytest.mark.django_db
def test_a_stored_result_reads_back_as_json(make_call):
    call = make_call(status=CallStatus.COMPLETED, provider="retell")
    result = normalised("retell", "webhook_call_analyzed_with_cost.json")

    stored = result_store(call=call, result=result)

    assert result_as_json(stored) == {
        "summary": "The user walked for 20 minutes and asked to be called back at 8.",
        "data": {"goal_done": True, "minutes": 20},
        "sentiment": {"label": "positive", "score": 1.0, "source": "provider"},
        "answered_by": "human",
        "user_talk_seconds": 3.6,
        "cost": {"amount": "0.0375", "currency": "USD"},
        "turns": result.fields.turns,
        "opt_out_heard": False,
        "callback": None,
    }
