"""Benchmark: events to the product's app (docs/events.md).

- Delivery: events delivered per second by one events worker (a real `rqworker
  relevel-events` process) to a receiver on 127.0.0.1, one commit per event as the webhook
  makes them: with one job per event (the path before events.pump) and with the coalesced
  batch jobs; timed from the first fan-out to the last try (the worker's start-up left out).
  With --profile, each worker's cProfile goes to bench/out/events-worker-*.prof.
- The tick: a rush slot claimed on time (no event: a claim is not an outcome) and the same
  rush found missed (a call.ended and a day.missed per user, the most a tick writes), each
  with events off and on, in the same run, taking turns.
- The webhook's service (call_apply_event, in this process): a call completed, with events
  off (one UPDATE) and on (the UPDATE, the call.ended and day.reached inserts in one
  transaction), taking turns in rounds.
"""

from __future__ import annotations

import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from datetime import time as clock

import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

import seed
from harness import BENCH_DSN, PYTHON, ROOT, Table, flush_redis, fmt_ratio, fmt_s, median, say, timed

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo="
RUSH_ZONE = "Asia/Kolkata"
RUSH_TIME = clock(20, 30)
PREVIOUS_TICK = datetime(2026, 6, 15, 14, 30, tzinfo=UTC)


def _events(on: bool, url: str) -> None:
    from events.endpoints import endpoints_cache_clear

    settings.EVENTS_WEBHOOK_URL = url if on else ""
    settings.EVENTS_WEBHOOK_SECRET = SECRET if on else ""
    endpoints_cache_clear()


def _truncate_events() -> None:
    with psycopg.connect(BENCH_DSN, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE events_deliveryattempt, events_delivery, events_event, events_usereventsequence, "
            "events_daymark, events_endpoint RESTART IDENTITY CASCADE"
        )


def _tick(table: Table, *, users: int, url: str, repeats: int) -> None:
    from calls.scheduling import calls_schedule_due

    seed.truncate_all()
    slot = seed.seed_same_slot(
        start=1, count=users, zone=RUSH_ZONE, call_time=RUSH_TIME, previous_tick=PREVIOUS_TICK
    )
    seed.vacuum_analyze()

    def reset() -> None:
        with psycopg.connect(BENCH_DSN, autocommit=True) as conn:
            conn.execute("UPDATE users_user SET next_call_at = %s", (slot,))
            conn.execute("TRUNCATE calls_call CASCADE")  # and the tables that refer to it
            conn.execute("VACUUM (ANALYZE) users_user")
        _truncate_events()
        flush_redis()

    for label, at in (("on time", slot), ("all missed", slot + timedelta(hours=1))):
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(repeats):
            for on in (False, True):
                reset()
                _events(on, url)
                seconds, _ = timed(lambda at=at: calls_schedule_due(now=at))
                times[on].append(seconds)
        with psycopg.connect(BENCH_DSN) as conn:
            written = conn.execute("SELECT count(*) FROM events_event").fetchone()[0]
        off, on = median(times[False]), median(times[True])
        table.add(f"tick, rush {label}, events off", f"{users:,}", fmt_s(off))
        table.add(
            f"tick, rush {label}, events on",
            f"{users:,}",
            fmt_s(on),
            fmt_ratio(on, off),
            note=f"{written:,} events written in the tick's transactions",
        )
    reset()


def _webhook(table: Table, *, calls: int, url: str, rounds: int) -> None:
    from calls.outcomes import call_apply_event
    from calls.providers.base import CallEvent

    seed.truncate_all()
    _truncate_events()
    provider_ids = seed.seed_dialing_calls(start_user=1, count=calls, now=datetime.now(UTC))
    seed.vacuum_analyze()
    per_round = calls // (2 * rounds) - 1
    times: dict[bool, list[float]] = {False: [], True: []}
    ids = iter(provider_ids)
    statements: dict[bool, int] = {}
    for on in (False, True):  # one call each, its statements counted (BEGIN and COMMIT included)
        _events(on, url)
        with CaptureQueriesContext(connection) as queries:
            call_apply_event(
                event=CallEvent(provider_call_id=next(ids), status="completed", retry=False),
                providers=("callkaro",),
            )
        statements[on] = len(queries)
    for _ in range(rounds):
        for on in (False, True):
            _events(on, url)
            for _ in range(per_round):
                event = CallEvent(provider_call_id=next(ids), status="completed", retry=False)
                started = time.perf_counter()
                call_apply_event(event=event, providers=("callkaro",))
                times[on].append(time.perf_counter() - started)
    off, on = median(times[False]), median(times[True])
    n = f"{per_round * rounds:,} each"
    table.add(
        "webhook service (completed), events off", n, fmt_s(off), note=f"{statements[False]} statements"
    )
    table.add(
        "webhook service (completed), events on",
        n,
        fmt_s(on),
        fmt_ratio(on, off),
        note=f"{statements[True]} statements; median per call; the HTTP layer is bench_webhook's",
    )


def _delivery(table: Table, *, events: int, batched: bool, url: str, logs, out) -> None:
    """One worker sends ``events`` events: one job per event as before events.pump
    (``batched`` False), or the coalesced jobs a rush of commits asks for now."""
    from events.models import EventType
    from events.outbox import events_emit
    from events.queues import enqueue_fan_out, fan_out_request

    seed.truncate_all()
    _truncate_events()
    flush_redis()
    with psycopg.connect(BENCH_DSN, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users_user (id, password, is_superuser, username, first_name, last_name, email, "
            "is_staff, is_active, date_joined, name, phone, local_tz, call_enabled, call_time) "
            "SELECT i, '!', false, 'e' || i, '', '', '', false, true, now(), '', NULL, 'UTC', false, "
            "'09:00' FROM generate_series(1, %s) AS i",
            (events,),
        )
    _events(True, url)
    ids = []
    for user_id in range(1, events + 1):
        with transaction.atomic():  # one event per commit, as the webhook makes them
            ids.append(
                events_emit(
                    type=EventType.USER_OPTED_OUT, user_id=user_id, local_date=None, data={"source": "bench"}
                )
            )
    flush_redis()  # the jobs the commits asked for: enqueued again below, the one way or the other
    if batched:
        fan_out_request()
    else:
        for pk in ids:
            enqueue_fan_out([pk])
    env = {
        **os.environ,
        "EVENTS_WEBHOOK_URL": url,
        "EVENTS_WEBHOOK_SECRET": SECRET,
        "LOG_LEVEL": "WARNING",
    }
    label = "batched" if batched else "one-by-one"
    profile = [] if out is None else ["-m", "cProfile", "-o", str(out / f"events-worker-{label}.prof")]
    command = [PYTHON, *profile, "manage.py", "rqworker", settings.EVENTS_QUEUE, "--burst"]
    with open(logs / f"events-worker-{label}.log", "w") as log:
        worker = subprocess.run(
            [*command, "--worker-class", "rq.worker.SimpleWorker"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    with psycopg.connect(BENCH_DSN) as conn:
        delivered, last = conn.execute(
            "SELECT count(*) FILTER (WHERE status_code BETWEEN 200 AND 299), max(attempted_at) "
            "FROM events_deliveryattempt"
        ).fetchone()
        first = conn.execute("SELECT min(fanned_out_at) FROM events_event").fetchone()[0]
    # From the first fan-out to the last try: the worker's start-up left out, the fan-out in.
    seconds = (last - first).total_seconds() if first and last and last > first else float("nan")
    table.add(
        f"delivery, 1 worker, {label}" + (" (events.pump)" if batched else " (one job per event, before)"),
        f"{events:,}",
        f"{delivered / seconds:.0f} events/s" if seconds == seconds else "n/a",
        note=f"{delivered:,} of {events:,} delivered in {seconds:.1f} s (worker exit {worker.returncode})",
    )


def run(*, users: int, calls: int, events: int, logs, repeats: int = 3, out=None) -> Table:
    from tests.fakes import FakeEventReceiver

    with psycopg.connect(BENCH_DSN, autocommit=True) as conn:
        # seed.py's COPY lines predate the opt-out columns: "" is what Django writes for
        # a user who never opted out (the bench database only).
        conn.execute("ALTER TABLE users_user ALTER COLUMN opt_out_source SET DEFAULT ''")
    table = Table("Events to the product's app: delivery rate, and the tick's and webhook's cost")
    receiver = FakeEventReceiver().start()
    try:
        # The one-by-one path at about 10 events/s: a tenth of the events, for a few minutes at most.
        before = max(100, events // 10)
        say(f"events: delivery of {before:,} events by one worker, one job per event")
        _delivery(table, events=before, batched=False, url=receiver.url, logs=logs, out=out)
        say(f"events: delivery of {events:,} events by one worker, in batches")
        _delivery(table, events=events, batched=True, url=receiver.url, logs=logs, out=out)
        say(f"events: the tick, a {users:,}-user rush, events off and on")
        _tick(table, users=users, url=receiver.url, repeats=repeats)
        say(f"events: the webhook's service, {calls:,} calls, events off and on")
        _webhook(table, calls=calls, url=receiver.url, rounds=4)
    finally:
        _events(False, "")
        receiver.stop()
    return table
