"""Retention (calls/retention.py): content erased after RETENTION_DAYS_CONTENT, call rows
deleted after RETENTION_DAYS_CALLS once their day is in the dashboard's rollups; exactly what
is older than the limits, nothing else, and a second run changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command

from calls import jobs, retention
from calls.cron import RETENTION_CRON_NAME, build_cron_scheduler
from calls.models import Call, CallResult, CallStatus
from dashboard.models import DailyStat, RollupDay

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
TODAY = NOW.date()  # TIME_ZONE is UTC in the tests' settings as in the image
CONTENT = {
    "transcript": "Agent: How are you? User: my knee hurts",
    "recording_url": "https://recordings.example/abc.mp3",
    "provider_payloads": [{"event": "call.completed", "summary": "knee pain"}],
}


@pytest.fixture(autouse=True)
def limits(settings):
    settings.RETENTION_DAYS_CONTENT = 90
    settings.RETENTION_DAYS_CALLS = 400
    settings.RETENTION_BATCH_SIZE = 2  # several pages even for a handful of rows


def call_created(make_call, *, user=None, created_at: datetime, local_date=None, **fields) -> Call:
    fields = {"status": CallStatus.COMPLETED, "to_number": "+919876500001", **CONTENT, **fields}
    call = make_call(user=user, local_date=local_date or created_at.date(), **fields)
    Call.objects.filter(pk=call.pk).update(created_at=created_at)
    return call


def content_of(call: Call) -> tuple:
    call.refresh_from_db()
    return call.transcript, call.recording_url, call.provider_payloads


def test_it_erases_exactly_the_content_older_than_the_limit_and_keeps_the_rows(make_user, make_call):
    user = make_user()
    limit = NOW - timedelta(days=90)
    older = [call_created(make_call, created_at=limit - timedelta(seconds=s)) for s in (1, 60, 3600)]
    at_limit = call_created(make_call, created_at=limit)
    younger = call_created(make_call, user=user, created_at=limit + timedelta(hours=1))

    for call in (older[0], younger):
        CallResult.objects.create(
            call=call,
            summary="Knee pain, resting.",
            turns=[{"role": "user", "text": "my knee hurts"}],
            transcript="User: my knee hurts",
            data={"pain": "knee"},
            sentiment="negative",
            sentiment_score=-1,
        )

    report = retention.data_prune(now=NOW)

    assert report.content == {"calls": 3, "results": 1}
    words = ("summary", "turns", "transcript", "data", "callback_note", "sentiment", "sentiment_score")
    assert CallResult.objects.filter(call=older[0]).values_list(*words).get() == (
        "",
        [],
        "",
        {},
        "",
        "negative",
        -1,
    )
    assert CallResult.objects.get(call=younger).summary == "Knee pain, resting."
    for call in older:
        assert content_of(call) == ("", "", [])
        assert (call.status, call.to_number) == (CallStatus.COMPLETED, "+919876500001")
    for call in (at_limit, younger):
        assert content_of(call) == (
            CONTENT["transcript"],
            CONTENT["recording_url"],
            CONTENT["provider_payloads"],
        )
    assert Call.objects.count() == 5


def test_it_deletes_the_calls_of_days_older_than_the_limit_after_rolling_them_up(make_user, make_call):
    user = make_user()
    before_day = TODAY - timedelta(days=400)
    old_day = before_day - timedelta(days=1)
    first = call_created(
        make_call,
        user=user,
        created_at=NOW - timedelta(days=401),
        local_date=old_day,
        status=CallStatus.NO_ANSWER,
    )
    retry = call_created(
        make_call,
        user=user,
        created_at=NOW - timedelta(days=401),
        local_date=old_day,
        attempt=2,
        retry_of=first,
        status=CallStatus.COMPLETED,
    )
    kept = call_created(make_call, user=user, created_at=NOW - timedelta(days=400), local_date=before_day)
    # A day already rolled up and final is not computed again: its figures are what the
    # dashboard showed, whatever is left of its calls.
    done_day = old_day - timedelta(days=1)
    call_created(make_call, user=user, created_at=NOW - timedelta(days=402), local_date=done_day)
    RollupDay.objects.create(day=done_day, computed_at=NOW - timedelta(days=400), final=True, calls=7)
    DailyStat.objects.create(day=done_day, metric="calls", key="", value=7)

    report = retention.data_prune(now=NOW)

    assert (report.calls_deleted, report.days_rolled_up) == (3, 1)
    assert list(Call.objects.values_list("pk", flat=True)) == [kept.pk]
    assert not Call.objects.filter(pk__in=[first.pk, retry.pk]).exists()
    assert RollupDay.objects.get(day=old_day).final
    figures = {
        (m, k): v for m, k, v in DailyStat.objects.filter(day=old_day).values_list("metric", "key", "value")
    }
    assert figures[("calls", "")] == 2
    assert figures[("status", "completed")] == 1 and figures[("status", "no_answer")] == 1
    assert DailyStat.objects.get(day=done_day, metric="calls").value == 7
    assert not RollupDay.objects.filter(day=before_day).exists()


def test_a_second_run_changes_nothing(make_user, make_call):
    user = make_user()
    call_created(make_call, user=user, created_at=NOW - timedelta(days=91))
    call_created(make_call, user=user, created_at=NOW - timedelta(days=500))
    kept = call_created(make_call, user=user, created_at=NOW - timedelta(days=1))
    first = retention.data_prune(now=NOW)
    rows = list(Call.objects.order_by("pk").values())
    stats = list(DailyStat.objects.order_by("pk").values())

    second = retention.data_prune(now=NOW)

    # The 500-day-old call's content goes first (content before rows), then the row.
    assert (first.content, first.calls_deleted) == ({"calls": 2, "results": 0}, 1)
    assert (second.content, second.calls_deleted, second.days_rolled_up) == ({"calls": 0, "results": 0}, 0, 0)
    assert list(Call.objects.order_by("pk").values()) == rows
    assert list(DailyStat.objects.order_by("pk").values()) == stats
    assert content_of(kept)[0] == CONTENT["transcript"]


def test_a_dry_run_counts_and_changes_nothing(make_user, make_call, capsys):
    user = make_user()
    old = call_created(make_call, user=user, created_at=NOW - timedelta(days=91))
    call_created(make_call, user=user, created_at=NOW - timedelta(days=500))

    report = retention.data_prune(now=NOW, dry_run=True)

    assert (report.content, report.calls_deleted, report.days_rolled_up) == ({"calls": 2, "results": 0}, 1, 1)
    assert Call.objects.count() == 2 and content_of(old)[0] == CONTENT["transcript"]
    assert not RollupDay.objects.exists()
    assert "would erase content of calls 2" in report.line() and "would delete 1 calls" in report.line()


def test_the_command_prints_one_line_and_refuses_a_bad_batch_size(make_call, capsys):
    call_command("prune_data", "--dry-run")
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("prune_data (dry run): would erase content of calls 0")
    with pytest.raises(CommandError, match="--batch-size must be 1 to 100000, not 0"):
        call_command("prune_data", "--batch-size", "0")


def test_the_nightly_job_prunes_and_says_what_it_removed(make_user, make_call):
    call_created(make_call, created_at=datetime.now(UTC) - timedelta(days=91))
    # The job without its connection handling (which would close the test's transaction).
    assert "erased content of calls 1" in jobs.prune_data.__wrapped__()


def test_the_schedule_runs_the_prune_nightly_on_the_calls_queue(settings, redis_conn):
    crons = {cron_job.name: cron_job for cron_job in build_cron_scheduler().get_jobs()}
    prune = crons[RETENTION_CRON_NAME]
    assert (prune.cron, prune.queue_name, prune.func_name) == (
        "30 2 * * *",
        settings.CALLS_QUEUE,
        "calls.jobs.prune_data",
    )
    settings.RETENTION_CRON = ""
    assert RETENTION_CRON_NAME not in {c.name for c in build_cron_scheduler().get_jobs()}


def test_the_prune_reads_the_content_index_not_the_table(make_call):
    from django.db import connection

    call_created(make_call, created_at=NOW - timedelta(days=91))
    query = Call.objects.filter(retention.CALL_HAS_CONTENT, created_at__lt=NOW).order_by("created_at", "id")
    if connection.vendor == "postgresql":
        # A handful of rows: tell the planner a table scan is dear, as it is on a big table.
        with connection.cursor() as cursor:
            cursor.execute("SET enable_seqscan = off")
            plan = query.explain()
            cursor.execute("RESET enable_seqscan")
    else:  # SQLite (the zero-setup first run) has the same partial index
        plan = query.explain()
    assert "call_content_created_idx" in plan
