"""What relevel hears on a call and does about it, in the job after the webhook: the
result, an opt-out, a call-back (docs/conversation.md)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from calls import placement, scheduling, sweeps
from calls.analysis import call_analyse, calls_analyse, noted_calls_dispatch
from calls.intents import callback_heard, callback_time, opt_out_heard
from calls.models import Call, CallResult, CallStatus
from calls.queues import ANALYSE_CALLS_JOB, ANALYSIS_PENDING_KEY, ANALYSIS_SWEPT_KEY, calls_queue
from tests.provider_fakes import configure_retell, fixture, post_retell, post_vapi
from tests.test_webhook import event, post

IST = ZoneInfo("Asia/Kolkata")


# --- The matchers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "said",
    [
        "stop calling me",
        "Please, stop calling me.",
        "Don't call me again!",
        "don’t call me again",
        "Take me off your list",
        "I don't want these calls",
        "Honestly I do not want these calls anymore.",
        "no more calls please",
    ],
)
def test_the_opt_out_matcher_hears_the_phrasings_people_use(said):
    assert opt_out_heard(user_turns=[said]) is True


@pytest.mark.parametrize(
    "said",
    [
        "don't stop calling me",
        "stop, call me later",
        "Please don't stop calling me, I like it.",
        "I don't want these calls to stop",
        "I stopped walking, call me tomorrow",
        "",
    ],
)
def test_the_opt_out_matcher_ignores_the_near_misses(said):
    assert opt_out_heard(user_turns=[said]) is False


def test_more_opt_out_phrases_come_from_the_setting():
    assert opt_out_heard(user_turns=["Leave me alone."]) is False
    assert opt_out_heard(user_turns=["Leave me alone."], extra_phrases=["leave me alone"]) is True


NOW = datetime(2026, 11, 28, 15, 10, tzinfo=IST)


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("call me back at 8", datetime(2026, 11, 28, 20, 0, tzinfo=IST)),
        ("Could you call me back at 8:30 pm?", datetime(2026, 11, 28, 20, 30, tzinfo=IST)),
        ("call me in an hour", datetime(2026, 11, 28, 16, 10, tzinfo=IST)),
        ("call me back in 20 minutes", datetime(2026, 11, 28, 15, 30, tzinfo=IST)),
        ("try again tonight", datetime(2026, 11, 28, 20, 0, tzinfo=IST)),
    ],
)
def test_the_call_back_matcher_hears_when(said, expected):
    asked, words = callback_heard(user_turns=["Hello.", said])

    assert asked is True
    assert callback_time(words=words, now_local=NOW) == expected


def test_a_call_back_without_a_time_is_heard_but_has_none():
    asked, words = callback_heard(user_turns=["Busy now, call me back."])

    assert asked is True and callback_time(words=words, now_local=NOW) is None
    assert callback_heard(user_turns=["Thanks, bye."]) == (False, "")


# --- The job after the webhook ----------------------------------------------------------------


def analysis_jobs() -> list:
    queue = calls_queue()
    return [job for job in queue.get_jobs() if job.func_name == ANALYSE_CALLS_JOB]


@pytest.mark.django_db
@pytest.mark.usefixtures("on_the_calls_day")
def test_a_final_status_notes_the_call_after_commit_and_the_cron_hands_it_to_a_worker(
    make_call, client, django_capture_on_commit_callbacks, redis_conn
):
    call = make_call(status=CallStatus.DIALING, provider_call_id="ck-1")
    other = make_call(status=CallStatus.DIALING, provider_call_id="ck-2")
    with django_capture_on_commit_callbacks(execute=True):
        post(client, event(call, "ringing"))
    assert redis_conn.lrange(ANALYSIS_PENDING_KEY, 0, -1) == []

    with django_capture_on_commit_callbacks(execute=True):
        post(client, event(call, "completed", transcript="Agent: Hi. User: All good."))
        post(client, event(other, "no_answer"))
    assert redis_conn.lrange(ANALYSIS_PENDING_KEY, 0, -1) == [str(call.pk).encode(), str(other.pk).encode()]

    assert noted_calls_dispatch() == "2 calls to analyse in 1 jobs"
    assert [job.args for job in analysis_jobs()] == [([call.pk, other.pk],)]
    assert redis_conn.lrange(ANALYSIS_PENDING_KEY, 0, -1) == []


@pytest.mark.django_db
@pytest.mark.usefixtures("on_the_calls_day")
def test_a_job_reads_its_calls_and_their_users_in_one_query_and_analyses_each(make_call, client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    calls = [make_call(status=CallStatus.DIALING, provider_call_id=f"ck-{n}") for n in range(3)]
    for call in calls:
        post(client, event(call, "completed", transcript="Agent: Hi. User: All good, thanks."))
    missing = max(call.pk for call in calls) + 1000

    with CaptureQueriesContext(connection) as queries:
        counts = calls_analyse(call_ids=[*(call.pk for call in calls), missing])

    assert counts == {"analysed": 4, "failed": 0}  # (the missing one: nothing to do, not a failure)
    assert set(CallResult.objects.values_list("call_id", flat=True)) == {call.pk for call in calls}
    reads = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('SELECT "calls_call"."id"')]
    joined = [sql for sql in reads if 'INNER JOIN "users_user"' in sql]
    # One read of the three with their users, and one more for the missing id alone.
    assert len(joined) == 2 and f'"calls_call"."id" = {missing} ' in joined[1]
    assert all(str(call.pk) in joined[0] for call in calls)


@pytest.mark.django_db
@pytest.mark.usefixtures("on_the_calls_day")
def test_retell_analysis_is_stored_with_the_providers_sentiment(settings, make_call, client):
    configure_retell(settings)
    doc = fixture("retell", "webhook_call_ended.json")
    call = make_call(status=CallStatus.RINGING, provider="retell", provider_call_id=doc["call"]["call_id"])
    post_retell(client, doc)
    post_retell(client, fixture("retell", "webhook_call_analyzed_with_cost.json"))

    call_analyse(call_id=call.pk)

    result = CallResult.objects.get(call=call)
    assert (result.sentiment, result.sentiment_source, str(result.cost_amount)) == (
        "positive",
        "provider",
        "0.0375",
    )
    assert result.data == {"goal_done": True, "minutes": 20}
    # "Call me back at 8" at 20:31 IST means 08:00 tomorrow: not this call's day.
    assert result.callback_note.startswith("Not scheduled: 2026-11-29 08:00")
    assert not Call.objects.filter(callback=True).exists()


def completed_with(make_call, client, transcript: str) -> Call:
    call = make_call(status=CallStatus.DIALING, provider_call_id=f"ck-{abs(hash(transcript))}")
    post(client, event(call, "completed", transcript=transcript))
    return call


@pytest.mark.django_db
@pytest.mark.usefixtures("on_the_calls_day")
def test_a_call_back_in_an_hour_is_one_extra_attempt_today_and_only_one(make_call, client, make_user):
    call = completed_with(make_call, client, "Agent: Hi! User: I'm driving, call me back in an hour.")

    call_analyse(call_id=call.pk)
    call_analyse(call_id=call.pk)  # a second payload's re-run acts no more

    callback = Call.objects.get(callback=True)
    assert (callback.user_id, callback.attempt, callback.status) == (call.user_id, 2, CallStatus.QUEUED)
    assert callback.scheduled_for.astimezone(IST).strftime("%H:%M") == "21:31"
    assert (
        CallResult.objects.get(call=call).callback_note == f"Call-back {callback.pk} scheduled for 21:31 IST."
    )


@pytest.mark.django_db
@pytest.mark.usefixtures("on_the_calls_day")
def test_a_call_back_outside_the_calling_hours_is_refused_with_the_reason(make_call, client):
    from calls.policy_changes import policy_update

    policy_update(changes={"calling_hours": {"start": "09:00", "end": "21:00"}}, user_id=None, actor="test")
    call = completed_with(make_call, client, "User: call me back in an hour please")

    call_analyse(call_id=call.pk)

    assert not Call.objects.filter(callback=True).exists()
    assert CallResult.objects.get(call=call).callback_note == (
        "Not scheduled: 21:31 IST is outside the calling hours (09:00-21:00 local time)."
    )


@pytest.mark.django_db
@pytest.mark.usefixtures("on_the_calls_day")
def test_a_call_back_is_not_dialed_while_another_call_to_the_user_is_live(make_call, client):
    call = completed_with(make_call, client, "User: call me back in 20 minutes")
    call_analyse(call_id=call.pk)
    callback = Call.objects.get(callback=True)
    Call.objects.filter(pk=callback.pk).update(scheduled_for=call.scheduled_for)
    make_call(user=call.user, manual=True, status=CallStatus.IN_PROGRESS)

    placement.take_calls_for_dialing([callback.pk])

    callback.refresh_from_db()
    assert (callback.status, callback.error) == (
        CallStatus.CANCELED,
        "Call-back not placed: another call to the user was live.",
    )


@pytest.mark.django_db
@pytest.mark.usefixtures("on_the_calls_day")
def test_in_one_job_an_opt_out_heard_first_stops_the_same_persons_call_back_asked_later(make_call, client):
    stop = completed_with(make_call, client, "Agent: How was today? User: Please stop calling me.")
    later = make_call(user=stop.user, attempt=2, status=CallStatus.DIALING, provider_call_id="ck-later")
    post(client, event(later, "completed", transcript="Agent: Hi! User: Call me back in an hour."))

    assert calls_analyse(call_ids=[stop.pk, later.pk]) == {"analysed": 2, "failed": 0}

    stop.user.refresh_from_db()
    assert stop.user.call_enabled is False
    # The second call's analysis saw the person as they now are, not as the job first read them.
    assert not Call.objects.filter(callback=True).exists()


@pytest.mark.django_db
@pytest.mark.usefixtures("on_the_calls_day")
def test_stop_calling_me_opts_the_user_out_and_cancels_what_waits(make_call, client):
    call = completed_with(make_call, client, "Agent: How was today? User: Please stop calling me.")
    waiting = make_call(user=call.user, attempt=2, status=CallStatus.QUEUED)

    call_analyse(call_id=call.pk)

    call.user.refresh_from_db()
    waiting.refresh_from_db()
    assert CallResult.objects.get(call=call).opt_out_heard is True
    # users.consent records it: its time, source and the call it was heard on.
    user = call.user
    assert (user.call_enabled, user.opt_out_source, user.opt_out_call_id) == (False, "call", call.pk)
    assert user.opted_out_at is not None
    assert (waiting.status, waiting.error) == (CallStatus.CANCELED, "The user opted out (on a call).")


@pytest.mark.django_db
@pytest.mark.usefixtures("on_the_calls_day")
def test_the_agents_structured_opt_out_field_counts_too(settings, make_call, client):
    settings.VAPI_WEBHOOK_SECRET = "vapi-secret"
    payload = fixture("vapi", "webhook_end_of_call_report_analysis.json")
    payload["message"]["analysis"]["structuredData"]["opt_out"] = True
    call = make_call(
        status=CallStatus.RINGING, provider="vapi", provider_call_id=payload["message"]["call"]["id"]
    )
    post_vapi(client, payload, secret="vapi-secret")

    call_analyse(call_id=call.pk)

    call.user.refresh_from_db()
    assert call.user.call_enabled is False


@pytest.mark.django_db
@pytest.mark.usefixtures("on_the_calls_day")
def test_words_on_a_voicemail_are_not_the_users(make_call, client):
    call = make_call(status=CallStatus.DIALING, provider_call_id="ck-vm")
    payload = fixture("callkaro", "webhook_call_ended_voicemail.json")
    payload["data"].update(callSid="ck-vm", transcription="User: Stop calling me.")
    post(client, payload)

    call_analyse(call_id=call.pk)

    call.refresh_from_db()
    call.user.refresh_from_db()
    assert call.status == CallStatus.VOICEMAIL
    assert CallResult.objects.get(call=call).answered_by == "voicemail"
    assert call.user.call_enabled is True


@pytest.mark.django_db
@pytest.mark.usefixtures("on_the_calls_day")
def test_retells_in_voicemail_after_a_completed_call_ended_makes_it_a_retried_voicemail(
    settings, make_call, client, django_capture_on_commit_callbacks
):
    configure_retell(settings)
    ended = fixture("retell", "webhook_call_ended.json")
    call = make_call(status=CallStatus.RINGING, provider="retell", provider_call_id=ended["call"]["call_id"])
    post_retell(client, ended)
    analyzed = fixture("retell", "webhook_call_analyzed.json")
    analyzed["call"]["call_analysis"]["in_voicemail"] = True
    post_retell(client, analyzed)

    with django_capture_on_commit_callbacks(execute=True):
        call_analyse(call_id=call.pk)
        call_analyse(call_id=call.pk)

    call.refresh_from_db()
    assert call.status == CallStatus.VOICEMAIL
    assert CallResult.objects.get(call=call).answered_by == "voicemail"
    [retry] = Call.objects.filter(retry_of=call)
    assert (retry.attempt, retry.status) == (2, CallStatus.QUEUED)


# --- The sweep for calls whose note was lost ----------------------------------------------------


def run_analysis_jobs() -> None:
    # What each job runs (calls.jobs.analyse_calls), in this test's transaction.
    for job in analysis_jobs():
        assert calls_analyse(call_ids=job.args[0]) == {"analysed": len(job.args[0]), "failed": 0}


@pytest.mark.django_db
@pytest.mark.usefixtures("on_the_calls_day")
def test_a_call_whose_note_redis_lost_is_noted_again_by_the_tick_and_analysed_once(
    make_call, make_user, client, django_capture_on_commit_callbacks, redis_conn, caplog
):
    call = make_call(status=CallStatus.DIALING, provider_call_id="ck-lost")
    never_dialed = make_call(user=make_user(), status=CallStatus.MISSED)
    with django_capture_on_commit_callbacks(execute=True):
        post(client, event(call, "completed", transcript="Agent: Did you walk? User: I did, thanks."))
    assert redis_conn.lrange(ANALYSIS_PENDING_KEY, 0, -1) == [str(call.pk).encode()]
    redis_conn.flushdb()  # Redis restarts empty: the note is lost, the call has no result

    ended = Call.objects.get(pk=call.pk).completed_at
    # Within a few minutes its note may just be waiting: the sweep leaves it alone.
    assert sweeps.calls_note_unanalysed(now=ended + timedelta(minutes=4)) == 0
    with caplog.at_level(logging.WARNING, logger="relevel.calls"):
        tick = scheduling.calls_schedule_due(now=ended + timedelta(minutes=6))
    assert tick.unanalysed == 1 and "unanalysed-noted=1" in tick.line()
    assert "1 ended calls had no result after 5 minutes" in caplog.text
    assert redis_conn.lrange(ANALYSIS_PENDING_KEY, 0, -1) == [str(call.pk).encode()]  # not the missed call

    assert noted_calls_dispatch() == "1 calls to analyse in 1 jobs"
    run_analysis_jobs()
    result = CallResult.objects.get()
    assert result.call_id == call.pk and "I did, thanks." in result.transcript
    assert not CallResult.objects.filter(call=never_dialed).exists()
    # Analysed: later ticks find nothing to note, so the job never makes it twice.
    redis_conn.delete(ANALYSIS_SWEPT_KEY)
    assert sweeps.calls_note_unanalysed(now=ended + timedelta(minutes=30)) == 0
    assert redis_conn.llen(ANALYSIS_PENDING_KEY) == 0
    assert CallResult.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.usefixtures("on_the_calls_day")
def test_the_unanalysed_sweep_is_keyset_paged_bounded_per_tick_and_goes_on_where_it_stopped(
    make_call, make_user, client, redis_conn, monkeypatch
):
    calls = []
    for n in range(7):
        call = make_call(user=make_user(), status=CallStatus.DIALING, provider_call_id=f"ck-sweep-{n}")
        post(client, event(call, "no_answer"))
        calls.append(call.pk)
    redis_conn.flushdb()
    monkeypatch.setattr(sweeps, "UNANALYSED_PAGES_PER_TICK", 2)
    later = Call.objects.get(pk=calls[-1]).completed_at + timedelta(minutes=6)

    assert sweeps.calls_note_unanalysed(now=later, page_size=2) == 4  # two pages of two
    assert sweeps.calls_note_unanalysed(now=later + timedelta(minutes=1), page_size=2) == 3  # the rest
    # Nothing noted twice while the notes wait for the analysis job.
    assert sweeps.calls_note_unanalysed(now=later + timedelta(minutes=2), page_size=2) == 0
    noted = [int(value) for value in redis_conn.lrange(ANALYSIS_PENDING_KEY, 0, -1)]
    assert noted == sorted(calls)

    assert noted_calls_dispatch() == "7 calls to analyse in 1 jobs"
    run_analysis_jobs()
    assert sorted(CallResult.objects.values_list("call_id", flat=True)) == sorted(calls)
