"""Benchmark 6: the operators' dashboard (/dashboard/) on 1,000,000 users and 30 days of calls.

Seeding: the users by COPY (seed.seed_population), then every callable user's calls for the
30 closed days before NOW and today up to NOW: a first attempt a day, retries 30 and 60
minutes later after no answer / busy / failed, a few missed slots (each of the tick's and
the worker's reasons), calls in flight and retries pending at NOW, two agent variants on the
last 14 days. About 36M rows. The rows are generated in Python as compact integers, COPYed
into an unlogged staging table and expanded into calls_call by one INSERT ... SELECT, with
calls_call's indexes and constraints dropped during the load and rebuilt after (what a
restore does). Seeding time is reported apart from the figures.

Measured, side by side in the same run (the machine is shared: compare within a run):
- the whole page (GET /dashboard/ through Django's test client, a staff session, rollups in
  place): cold (the first request after the rollups are computed) and the median of
  repeats; the target is < 1 s.
- its parts: today's live query (selectors.today_at_a_glance) and the chart reads.
- the alternative the rollup replaces: the same charts computed from calls_call on the
  request (rollups.day_stats_compute for the 30 days, not stored), bounded in time.
- the rollup itself: computing one closed day, and the backfill of all 30 days.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from zoneinfo import ZoneInfo

import psycopg

import seed
from harness import BENCH_DSN, Table, fmt_ratio, fmt_s, median, met, say, timed

# A Monday afternoon in June: Kolkata's evening rush is over, New York's morning under way,
# Auckland already on the 16th.
NOW = datetime(2026, 6, 15, 14, 30, tzinfo=UTC)
DAYS = 30
PAGE_TARGET_S = 1.0
# The naive alternative stops after this long and extrapolates from the days it did.
NAIVE_BUDGET_S = 60.0
EPOCH = date(2000, 1, 1)

# Outcome codes of the staging table -> calls_call.status.
STATUSES = [
    "completed",
    "no_answer",
    "busy",
    "failed",
    "missed",
    "canceled",
    "queued",
    "dialing",
    "ringing",
    "in_progress",
    "unconfirmed",
]
S = {name: code for code, name in enumerate(STATUSES)}
# Error codes -> the texts relevel writes (calls/scheduling.py, calls/placement.py).
ERRORS = [
    "",
    "Calls were paused until the window of this slot (2026-06-01 09:00 to 09:15 UTC) closed.",
    "No scheduler tick ran between 2026-06-01 09:00 and 09:15 UTC, the window of this slot.",
    "Its window, 2026-06-01 14:30 to 14:45 IST, had closed when a worker took it at 2026-06-01 14:52 IST.",
    "Its time, 07:30 IST, is outside the calling hours (09:00 to 21:00 in each user's local time).",
    "Its job was lost (Redis down or flushed) and its window closed before a tick found it.",
    "Provider capacity: the provider's live-call limit was reached until the window closed.",
    "CallKaro HTTP 500: upstream error",
]
PAYLOAD = '[{"placed": {"call_id": "pc-%s", "status": "queued"}}, {"event": {"status": "%s"}}]'


def _outcome(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.70:
        return S["completed"]
    if r < 0.86:
        return S["no_answer"]
    if r < 0.93:
        return S["busy"]
    return S["failed"]


def _lag(rng: random.Random) -> int:
    # Seconds from scheduled_for to dialed_at: mostly a few, a tail of workers behind.
    if rng.random() < 0.02:
        return rng.randrange(60, 600)
    return int(rng.expovariate(1 / 4))


def _user_rows() -> list[tuple[int, str, int]]:
    with psycopg.connect(BENCH_DSN) as conn:
        rows = conn.execute(
            "SELECT id, local_tz, "
            "extract(hour FROM call_time)::int * 60 + extract(minute FROM call_time)::int "
            "FROM users_user WHERE call_enabled AND phone IS NOT NULL ORDER BY id"
        ).fetchall()
    return rows


def _staging_lines(users, *, now: datetime, days: int, rng: random.Random):
    """Compact rows: id, user, attempt, day, status, scheduled (epoch s), lag (-1: not
    dialed), error code, variant (0: none), retry_of (0: none)."""
    now_s = int(now.timestamp())
    today = now.date()
    variant_from = today - timedelta(days=14)
    slot_cache: dict[tuple[str, int, date], int] = {}
    zones = {zone: ZoneInfo(zone) for zone in {u[1] for u in users}}
    local_days = [today - timedelta(days=k) for k in range(days, -2, -1)]  # D-30 .. D+1
    next_id = 1
    for user_id, zone, minute in users:
        tz = zones[zone]
        for day in local_days:
            key = (zone, minute, day)
            slot = slot_cache.get(key)
            if slot is None:
                slot = int(datetime.combine(day, clock(minute // 60, minute % 60), tzinfo=tz).timestamp())
                slot_cache[key] = slot
            if slot > now_s:
                continue
            day_ord = (day - EPOCH).days
            variant = (1 + user_id % 2) if day >= variant_from else 0
            r = rng.random()
            if r < 0.006:  # a missed slot, for one of the reasons
                error = 1 + int(r / 0.001)
                missed = S["missed"]
                yield f"{next_id}\t{user_id}\t1\t{day_ord}\t{missed}\t{slot}\t-1\t{error}\t{variant}\t0\n"
                next_id += 1
                continue
            previous = 0
            scheduled = slot
            for attempt in (1, 2, 3):
                age = now_s - scheduled
                if age < 0:
                    # The retry is not due yet: pending.
                    yield (
                        f"{next_id}\t{user_id}\t{attempt}\t{day_ord}\t{S['queued']}\t{scheduled}\t-1\t0\t"
                        f"{variant}\t{previous}\n"
                    )
                    next_id += 1
                    break
                lag = _lag(rng)
                if age < 60:
                    status, lag = S["queued"], -1
                elif age < 300:
                    status = S[
                        rng.choice(("dialing", "ringing", "in_progress", "in_progress", "unconfirmed"))
                    ]
                else:
                    status = _outcome(rng)
                error = 7 if status == S["failed"] else 0
                yield (
                    f"{next_id}\t{user_id}\t{attempt}\t{day_ord}\t{status}\t{scheduled}\t{lag}\t{error}\t"
                    f"{variant}\t{previous}\n"
                )
                previous = next_id
                next_id += 1
                if status not in (S["no_answer"], S["busy"], S["failed"]):
                    break
                scheduled += 1800


def _sql_text(text: str) -> str:
    return text.replace("'", "''")


_CALLS_INSERT = f"""
INSERT INTO calls_call (
    id, user_id, to_number, agent_id, attempt, local_date, retry_of_id, status, provider, job_id,
    provider_call_id, provider_payloads, error, transcript, recording_url, end_reason,
    outcome_inferred, manual, variant_id, duration_seconds, created_at, scheduled_for, dialed_at,
    last_status_at, completed_at
)
SELECT r.id, r.user_id, '+9170' || lpad(r.user_id::text, 8, '0'), 'agent-bench', r.attempt,
       date '{EPOCH.isoformat()}' + r.day, nullif(r.retry_of, 0), s.status, 'callkaro', '',
       CASE WHEN r.lag >= 0 THEN 'pc-' || r.id END,
       CASE WHEN r.lag >= 0 THEN format('{PAYLOAD}', r.id, s.status)::jsonb ELSE '[]'::jsonb END,
       e.error, '', '', CASE WHEN s.status = 'completed' THEN 'customer-ended-call' ELSE '' END,
       false, false, nullif(r.variant, 0), CASE WHEN s.status = 'completed' THEN 42 END,
       to_timestamp(r.scheduled), to_timestamp(r.scheduled),
       CASE WHEN r.lag >= 0 THEN to_timestamp(r.scheduled + r.lag) END,
       CASE WHEN r.lag >= 0 THEN to_timestamp(r.scheduled + r.lag + 60)
            WHEN s.status = 'missed' THEN to_timestamp(r.scheduled + 900) END,
       CASE WHEN s.status IN ('completed', 'no_answer', 'busy', 'failed')
            THEN to_timestamp(r.scheduled + r.lag + 60)
            WHEN s.status = 'missed' THEN to_timestamp(r.scheduled + 900) END
FROM bench_calls_raw r
JOIN (VALUES {", ".join(f"({code}, '{name}')" for code, name in enumerate(STATUSES))}) AS s(code, status)
  ON s.code = r.status
JOIN (VALUES {", ".join(f"({code}, '{_sql_text(text)}')" for code, text in enumerate(ERRORS))})
  AS e(code, error)
  ON e.code = r.error
"""


def _drop_call_indexes(conn) -> list[str]:
    """Drop calls_call's constraints (but its primary key) and indexes; returns the DDL
    that rebuilds them."""
    rebuild = []
    for name, definition in conn.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'calls_call'::regclass AND contype IN ('u', 'f')"
    ).fetchall():
        conn.execute(f'ALTER TABLE calls_call DROP CONSTRAINT "{name}"')
        rebuild.append(f'ALTER TABLE calls_call ADD CONSTRAINT "{name}" {definition}')
    for name, definition in conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'calls_call' "
        "AND indexname <> 'calls_call_pkey'"
    ).fetchall():
        conn.execute(f'DROP INDEX "{name}"')
        rebuild.append(definition)
    # Foreign keys last: they need the referenced tables' indexes only, but the unique ones
    # (retry_of_id) first.
    return sorted(rebuild, key=lambda ddl: "FOREIGN KEY" in ddl)


def seed_calls(*, now: datetime, days: int) -> dict[str, float]:
    """Every callable user's calls for ``days`` closed days and today; returns timings."""
    timings: dict[str, float] = {}
    rng = random.Random(6)
    users = _user_rows()
    with psycopg.connect(BENCH_DSN, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute(
            "CREATE UNLOGGED TABLE bench_calls_raw (id bigint, user_id bigint, attempt smallint, day int, "
            "status smallint, scheduled bigint, lag int, error smallint, variant bigint, retry_of bigint)"
        )
        conn.execute(
            "INSERT INTO calls_agentvariant (id, name, provider, agent_id, weight, active, created_at) "
            "VALUES (1, 'A (current script)', 'callkaro', 'agent-a', 1, true, now()), "
            "(2, 'B (shorter greeting)', 'callkaro', 'agent-b', 1, true, now())"
        )
        start = time.perf_counter()
        rows = 0
        with conn.cursor() as cursor, cursor.copy("COPY bench_calls_raw FROM STDIN") as copy:
            buffer: list[str] = []
            for line in _staging_lines(users, now=now, days=days, rng=rng):
                buffer.append(line)
                if len(buffer) >= seed.CHUNK_ROWS:
                    copy.write("".join(buffer))
                    rows += len(buffer)
                    buffer.clear()
            copy.write("".join(buffer))
            rows += len(buffer)
        timings["generate + COPY staging"] = time.perf_counter() - start
        timings["rows"] = rows

        start = time.perf_counter()
        rebuild = _drop_call_indexes(conn)
        conn.execute(_CALLS_INSERT)
        conn.execute("DROP TABLE bench_calls_raw")
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('calls_call', 'id'), (SELECT max(id) FROM calls_call))"
        )
        timings["INSERT ... SELECT"] = time.perf_counter() - start
        start = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '512MB'")
        for ddl in rebuild:
            conn.execute(ddl)
        timings["indexes and constraints"] = time.perf_counter() - start
        start = time.perf_counter()
        conn.execute("VACUUM (ANALYZE) calls_call")
        conn.execute("VACUUM (ANALYZE) users_user")
        timings["VACUUM ANALYZE"] = time.perf_counter() - start
    return timings


def _dirty_today(now: datetime) -> None:
    """Make today's rows look as they do at NOW in production: written minutes ago, not yet
    all-visible to an index-only scan (the VACUUM after the load set every page visible)."""
    with psycopg.connect(BENCH_DSN, autocommit=True) as conn:
        conn.execute(
            "UPDATE calls_call SET last_status_at = last_status_at WHERE local_date >= %s", (now.date(),)
        )


def _staff_client():
    from django.test import Client

    from users.models import User

    operator, _ = User.objects.get_or_create(
        username="bench-operator", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client(SERVER_NAME="localhost")
    client.force_login(operator)
    return client


def _page(client) -> float:
    start = time.perf_counter()
    response = client.get("/dashboard/")
    seconds = time.perf_counter() - start
    if response.status_code != 200 or b'data-chart="calls-per-day"' not in response.content:
        raise RuntimeError(f"the dashboard answered {response.status_code}")
    return seconds


def _naive_charts(days: list[date], *, deadline: float) -> tuple[float, int]:
    """The charts' numbers computed from calls_call on the request, as without the rollup;
    stops at ``deadline`` and extrapolates from the days done."""
    from dashboard import rollups

    start = time.perf_counter()
    done = 0
    for day in days:
        if time.perf_counter() >= deadline:
            break
        rollups.day_stats_compute(day)
        done += 1
    elapsed = time.perf_counter() - start
    return (elapsed / done * len(days) if done else float("nan")), done


def run(*, users: int, days: int = DAYS, repeats: int = 7) -> Table:
    table = Table(f"6. The dashboard, {users:,} users and {days} days of calls (PostgreSQL)")
    seed.truncate_all()
    say(f"dashboard: seeding {users:,} users")
    users_s, _ = timed(
        lambda: seed.seed_population(start=1, count=users, previous_tick=NOW - timedelta(minutes=5))
    )
    say("dashboard: seeding their calls")
    timings = seed_calls(now=NOW, days=days)
    rows = int(timings.pop("rows"))
    table.notes.append(
        f"seeding (not part of any figure): users {users_s:.1f} s; {rows:,} calls: "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items())
    )
    measure(table, users=users, rows=rows, days=days, repeats=repeats)
    return table


def measure(table: Table, *, users: int, rows: int, days: int = DAYS, repeats: int = 7) -> None:
    """The figures, on a database seeded as above."""
    import time_machine

    from dashboard import rollups, selectors

    today = NOW.date()
    closed = today - timedelta(days=2)
    say("dashboard: the rollup")
    one_day_s, stats = timed(lambda: rollups.day_stats_compute(closed))
    backfill_s, summary = timed(lambda: rollups.daily_stats_refresh(now=NOW))
    _dirty_today(NOW)

    client = _staff_client()
    with time_machine.travel(NOW, tick=True):
        say("dashboard: the page")
        cold = _page(client)
        pages = [_page(client) for _ in range(repeats)]
        glance = [timed(lambda: selectors.today_at_a_glance(now=NOW))[0] for _ in range(repeats)]
        charts = [timed(lambda: selectors.dashboard_charts(now=NOW))[0] for _ in range(repeats)]
        say("dashboard: the charts without the rollup (bounded)")
        naive_s, naive_days = _naive_charts(
            rollups.rollup_days(today=today), deadline=time.perf_counter() + NAIVE_BUDGET_S
        )
    page_s = median(pages)
    n = f"{users:,} users / {rows:,} calls"
    table.add(
        "whole page GET /dashboard/ (median)",
        n,
        fmt_s(page_s),
        f"{fmt_ratio(page_s, naive_s)} faster than without the rollup",
        f"< {PAGE_TARGET_S:g} s",
        met(page_s < PAGE_TARGET_S),
    )
    table.add(
        "whole page, first request (cold)",
        n,
        fmt_s(cold),
        "",
        f"< {PAGE_TARGET_S:g} s",
        met(cold < PAGE_TARGET_S),
    )
    table.add(
        "  today at a glance (live, today's rows)",
        f"{int(stats.get(('calls', ''), 0)):,} calls a day",
        fmt_s(median(glance)),
        f"{median(glance) / page_s:.0%} of the page",
    )
    table.add(
        "  the six charts from the rollup",
        f"{days} days",
        fmt_s(median(charts)),
        f"{median(charts) / page_s:.0%} of the page",
    )
    table.add(
        "charts computed from calls_call on the request (no rollup)",
        f"{days} days",
        fmt_s(naive_s) + (f" (extrapolated from {naive_days} days)" if naive_days < days else ""),
        "1.0x",
    )
    table.add(
        "rollup of one closed day (day_stats_compute)",
        f"{int(stats[('calls', '')]):,} calls",
        fmt_s(one_day_s),
        "",
    )
    table.add(
        "rollup backfill, all days (daily_stats_refresh)",
        f"{len(summary.refreshed)} days",
        fmt_s(backfill_s),
        "",
    )
    say(
        f"dashboard: page {fmt_s(page_s)} (cold {fmt_s(cold)}), glance {fmt_s(median(glance))}, "
        f"naive {fmt_s(naive_s)}"
    )
