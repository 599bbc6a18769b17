"""Benchmark 8: the analysis job (calls.analysis), results per second per worker.

Ended calls are seeded with each provider's documented end-of-call payload in turn (Vapi's
end-of-call report with analysis and cost, Retell's call_analyzed, CallKaro's call_ended,
from tests/fixtures), their transcripts as long as a short real call. Each call is noted as
the webhook notes it (one RPUSH), ANALYSIS_CRON's job hands them out in batch jobs, then
one worker runs them all in burst mode: RQ's SimpleWorker in this process (a job of 200
calls amortises RQ's own cost). Apart, the service alone (no RQ).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from harness import ROOT, Table, flush_redis, say, timed

FIXTURES = ROOT / "tests" / "fixtures"
TURNS = [
    ("assistant", "Hi, this is your daily check-in. Did you manage your walk today?"),
    ("user", "Yes, I walked for about twenty minutes after lunch and it felt really good."),
    ("assistant", "Wonderful. How are you feeling about tomorrow?"),
    ("user", "A bit tired, but I think I can do it again. Maybe call me a little earlier."),
    ("assistant", "Great, talk tomorrow!"),
]


def _payloads(kind: int, n: int) -> list[dict]:
    if kind == 0:
        payload = json.loads((FIXTURES / "vapi" / "webhook_end_of_call_report_analysis.json").read_text())
        payload["message"]["artifact"]["messages"] = [
            {"role": role, "message": text, "time": 1_000 * i, "endTime": 1_000 * i + 800}
            for i, (role, text) in enumerate(TURNS)
        ]
        return [payload]
    if kind == 1:
        ended = json.loads((FIXTURES / "retell" / "webhook_call_ended.json").read_text())
        analyzed = json.loads((FIXTURES / "retell" / "webhook_call_analyzed_with_cost.json").read_text())
        return [ended, analyzed]
    payload = json.loads((FIXTURES / "callkaro" / "webhook_call_ended.json").read_text())
    payload["data"]["transcription"] = " ".join(
        f"{'Agent' if role == 'assistant' else 'User'}: {text}" for role, text in TURNS
    )
    return [payload]


def _seed(calls: int) -> list[int]:
    from calls.models import Call, CallResult, CallStatus
    from users.models import User

    CallResult.objects.all().delete()
    Call.objects.all().delete()
    User.objects.filter(username__startswith="analysis-").delete()
    users = User.objects.bulk_create(
        User(username=f"analysis-{i}", phone=f"+9191{i:08d}", local_tz="UTC", password="!")
        for i in range(calls)
    )
    providers = ("vapi", "retell", "callkaro")
    now = datetime.now(UTC)
    rows = Call.objects.bulk_create(
        Call(
            user=user,
            to_number=user.phone,
            attempt=1,
            local_date=now.date(),
            status=CallStatus.COMPLETED,
            provider=providers[i % 3],
            provider_call_id=f"an-{i}",
            provider_payloads=_payloads(i % 3, i),
            scheduled_for=now,
            completed_at=now,
        )
        for i, user in enumerate(users)
    )
    return [row.pk for row in rows]


def run(*, calls: int) -> Table:
    from rq import SimpleWorker

    from calls import queues
    from calls.analysis import call_analyse
    from calls.models import CallResult

    table = Table("8. Analysis job (calls.analysis: the result, VADER, opt-out and call-back matchers)")
    say(f"analysis: seeding {calls:,} ended calls")
    ids = _seed(calls)
    flush_redis()
    for call_id in ids:
        queues.analysis_note(call_id)
    from calls.analysis import noted_calls_dispatch

    say(f"analysis: {noted_calls_dispatch()}")
    queue = queues.calls_queue()
    worker = SimpleWorker([queue], connection=queue.connection)
    # The lexicon loads once per worker process: not part of the per-job figure.
    from calls.results import sentiment_compute

    sentiment_compute(user_text="warm up")
    say(f"analysis: one worker, {calls:,} jobs in burst mode")
    seconds, _ = timed(lambda: worker.work(burst=True, logging_level="WARNING"))
    done = CallResult.objects.count()
    rq_rate = done / seconds
    table.add(
        "one RQ worker (SimpleWorker, burst)",
        f"{calls:,} jobs",
        f"{rq_rate:,.0f} results/s",
        "",
        "",
        "",
        note=f"{done:,} results stored in {seconds:.1f} s, in jobs of {queues.ANALYSIS_BATCH} calls",
    )
    CallResult.objects.all().delete()
    service_seconds, _ = timed(lambda: [call_analyse(call_id=call_id) for call_id in ids])
    table.add(
        "the service alone (call_analyse, no RQ)",
        f"{calls:,} calls",
        f"{calls / service_seconds:,.0f} results/s",
        f"RQ's share {max(0.0, 1 - service_seconds / seconds):.0%}",
        "",
        "",
    )
    flush_redis()
    return table
