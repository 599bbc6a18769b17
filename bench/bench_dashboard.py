"""Benchmark 6: the operators' dashboard (/dashboard/) on 1,000,000 users and 30 days of calls.

Seeding: the users by COPY (seed.seed_population), then every callable user's calls for the
30 closed days before NOW and today up to NOW: a first attempt a day, retries 30 and 60
minutes later after no answer / busy / failed, a few missed slots (each of the tick's and
the worker's reasons), calls in flight and retries pending at NOW, two agent variants on the
last 14 days. About 40M rows, generated in the server by one INSERT ... SELECT per UTC day on
two connections, into calls_call made UNLOGGED with its indexes and constraints dropped during
the load and rebuilt after (what a restore does). Seeding time is reported apart from the
figures. ``python bench/bench_dashboard.py seed|measure`` seeds once and measures many times.

Measured, side by side in the same run (the machine is shared: compare within a run):
- the whole page (GET /dashboard/ through Django's test client, a staff session, rollups in
  place): cold (the first request after the rollups are computed) and the median of
  repeats; the target is < 1 s.
- its parts: today's live query (selectors.today_at_a_glance) and the chart reads.
- the alternative the rollup replaces: the same charts computed from calls_call on the
  request (rollups.day_stats_compute for the 30 days, not stored), bounded in time.
- today's counts as the refresh job computes them, against the live queries the page ran
  before; the page when today's snapshot is too old to show.
- the rollup itself: computing one closed day (against the passes it took before), and the
  backfill of all 30 days.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock

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

# Error codes -> the texts relevel writes (calls/scheduling.py, calls/placement.py); 1-6 are
# the missed reasons, 7 a failed call's provider error.
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
# A dialed call's stored provider payloads (what it weighs, not what it says).
PAYLOAD = '[{"placed": {"call_id": "pc-bench", "status": "queued"}}, {"event": {"status": "%s"}}]'
DIALED = ("completed", "no_answer", "busy", "failed", "dialing", "ringing", "in_progress", "unconfirmed")
MISSED_SHARE = 0.006  # of user-days: a missed first attempt, for one of the six reasons
RETRY_SECONDS = 1800


# A deterministic uniform number in [0, 1) per (user, local day, salt): every statement that
# meets the same user-day draws the same outcomes, so a retry generated in the next UTC
# day's statement follows its first attempt's outcome.
def _rnd(salt: int) -> str:
    return f"((hashint8extended(a.user_id, a.ord * 16 + {salt}) & 2147483647)::float8 / 2147483648.0)"


def _unanswered(salt: int) -> str:
    return f"{_rnd(salt)} >= 0.70"


# One UTC day's calls (the rows a deployment writes that day, in whatever local day they
# belong to), generated in the server. Parameters: %(slots_from)s / %(slots_to)s bound the
# first attempts' slots that can have an attempt in the window (a retry is up to an hour
# after its slot), %(t0)s / %(t1)s the window, %(now)s NOW, all epoch seconds.
# bench_slots holds each (zone, minute of day, local day)'s slot, computed once with
# PostgreSQL's AT TIME ZONE (a gap's wall time moves forward, as the app's does).
_DAY_INSERT = f"""
INSERT INTO calls_call (
    id, user_id, to_number, agent_id, attempt, local_date, retry_of_id, status, provider, job_id,
    provider_call_id, provider_payloads, error, transcript, recording_url, end_reason,
    outcome_inferred, manual, variant_id, duration_seconds, created_at, scheduled_for, dialed_at,
    last_status_at, completed_at
)
SELECT c.id, c.user_id, '+9170' || lpad(c.user_id::text, 8, '0'), 'agent-bench', c.attempt,
       date '{EPOCH.isoformat()}' + c.ord, CASE WHEN c.attempt > 1 THEN c.id - 1 END, c.status,
       'callkaro', '',
       CASE WHEN c.lag >= 0 THEN 'pc-' || c.id END,
       CASE c.status {" ".join(f"WHEN '{status}' THEN '{PAYLOAD % status}'::jsonb" for status in DIALED)}
            ELSE '[]'::jsonb END,
       CASE WHEN c.status = 'missed' THEN (%(errors)s::text[])[2 + c.error]
            WHEN c.status = 'failed' THEN (%(errors)s::text[])[8] ELSE '' END,
       '', '', CASE WHEN c.status = 'completed' THEN 'customer-ended-call' ELSE '' END,
       false, false, CASE WHEN c.ord >= %(variant_from)s THEN 1 + c.user_id %% 2 END,
       CASE WHEN c.status = 'completed' THEN 42 END,
       to_timestamp(c.scheduled), to_timestamp(c.scheduled),
       CASE WHEN c.lag >= 0 THEN to_timestamp(c.scheduled + c.lag) END,
       CASE WHEN c.lag >= 0 THEN to_timestamp(c.scheduled + c.lag + 60)
            WHEN c.status = 'missed' THEN to_timestamp(c.scheduled + 900) END,
       CASE WHEN c.status IN ('completed', 'no_answer', 'busy', 'failed')
            THEN to_timestamp(c.scheduled + c.lag + 60)
            WHEN c.status = 'missed' THEN to_timestamp(c.scheduled + 900) END
FROM (
    SELECT a.id, a.user_id, a.ord, a.attempt, a.scheduled, s.status, floor({_rnd(0)} / 0.001)::int AS error,
           CASE WHEN s.status IN ('missed', 'queued') THEN -1
                WHEN {_rnd(4)} < 0.02 THEN 60 + floor({_rnd(5)} * 540)::int
                ELSE floor(-4 * ln(1 - {_rnd(5)}))::int END AS lag
    FROM (
        SELECT ((us.ord - %(first_ord)s)::bigint * %(user_span)s + u.id) * 4 + g.attempt AS id,
               u.id AS user_id, us.ord, g.attempt, us.slot,
               us.slot + {RETRY_SECONDS} * (g.attempt - 1) AS scheduled
        FROM bench_slots us
        JOIN users_user u ON u.local_tz = us.zone AND u.call_time = us.call_time
        CROSS JOIN generate_series(1, 3) AS g(attempt)
        WHERE us.slot >= %(slots_from)s AND us.slot < %(slots_to)s AND us.slot <= %(now)s
          AND u.call_enabled AND u.phone IS NOT NULL
          AND us.slot + {RETRY_SECONDS} * (g.attempt - 1) >= %(t0)s
          AND us.slot + {RETRY_SECONDS} * (g.attempt - 1) < %(t1)s
        OFFSET 0  -- the window first: the draws below only for the rows it keeps
    ) a
    CROSS JOIN LATERAL (
        SELECT CASE
            WHEN a.attempt = 1 AND {_rnd(0)} < {MISSED_SHARE} THEN 'missed'
            WHEN %(now)s - a.scheduled < 60 THEN 'queued'
            WHEN %(now)s - a.scheduled < 300
                THEN (ARRAY['dialing', 'ringing', 'in_progress', 'in_progress', 'unconfirmed'])[
                    1 + floor({_rnd(6)} * 5)::int]
            WHEN {_rnd("a.attempt")} < 0.70 THEN 'completed'
            WHEN {_rnd("a.attempt")} < 0.86 THEN 'no_answer'
            WHEN {_rnd("a.attempt")} < 0.93 THEN 'busy'
            ELSE 'failed' END AS status
    ) s
    -- A retry exists when its slot was not missed and every attempt before it ended
    -- unanswered (over 300 s before NOW: the one before it had its outcome).
    WHERE a.attempt = 1
       OR ({_rnd(0)} >= {MISSED_SHARE} AND %(now)s - (a.scheduled - {RETRY_SECONDS}) >= 300
           AND {_unanswered(1)} AND (a.attempt = 2 OR {_unanswered(2)}))
) c
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
        # A foreign key NOT VALID: the rows were generated consistent, and validating
        # one is a join over all of them.
        not_valid = " NOT VALID" if definition.startswith("FOREIGN KEY") else ""
        rebuild.append(f'ALTER TABLE calls_call ADD CONSTRAINT "{name}" {definition}{not_valid}')
    for name, definition in conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'calls_call' "
        "AND indexname <> 'calls_call_pkey'"
    ).fetchall():
        conn.execute(f'DROP INDEX "{name}"')
        rebuild.append(definition)
    conn.execute("ALTER TABLE calls_call DROP CONSTRAINT calls_call_pkey")
    # The primary key first (the foreign keys to calls_call need it), the unique ones
    # (retry_of_id) before the foreign keys.
    rebuild.insert(0, "ALTER TABLE calls_call ADD CONSTRAINT calls_call_pkey PRIMARY KEY (id)")
    return sorted(rebuild, key=lambda ddl: "FOREIGN KEY" in ddl)


def _insert_utc_days(windows: list[datetime], params: dict) -> int:
    """Insert the calls of these UTC days, one statement each, on a connection of its own."""
    rows = 0
    with psycopg.connect(BENCH_DSN, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET work_mem = '256MB'")
        for t0 in windows:
            t1 = t0 + timedelta(days=1)
            window = {
                "slots_from": int(t0.timestamp()) - 2 * RETRY_SECONDS,
                "slots_to": int(t1.timestamp()),
                "t0": int(t0.timestamp()),
                "t1": int(t1.timestamp()),
            }
            rows += conn.execute(_DAY_INSERT, {**params, **window}).rowcount
    return rows


def seed_calls(*, now: datetime, days: int, connections: int = 2) -> dict[str, float]:
    """Every callable user's calls for ``days`` closed local days and today up to ``now``,
    generated in the server one UTC day at a time (the order a deployment writes them), on
    ``connections`` connections at once; returns timings and the row count.

    calls_call is made UNLOGGED for the load and stays so in the bench database: its 36M
    rows then write no WAL, which on this machine halves the load; reading it (all that is
    measured) is the same."""
    from concurrent.futures import ThreadPoolExecutor

    timings: dict[str, float] = {}
    today = now.date()
    local_days = [today - timedelta(days=k) for k in range(days, -2, -1)]  # D-days .. D+1
    first_ord = (local_days[0] - EPOCH).days
    with psycopg.connect(BENCH_DSN, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute(
            "INSERT INTO calls_agentvariant (id, name, provider, agent_id, weight, active, created_at) "
            "VALUES (1, 'A (current script)', 'callkaro', 'agent-a', 1, true, now()), "
            "(2, 'B (shorter greeting)', 'callkaro', 'agent-b', 1, true, now())"
        )
        start = time.perf_counter()
        conn.execute(
            "CREATE UNLOGGED TABLE bench_slots AS "
            "SELECT z.zone, t.call_time, %(first_ord)s + d.k AS ord, "
            "extract(epoch FROM (%(first)s::date + d.k + t.call_time) AT TIME ZONE z.zone)::bigint AS slot "
            "FROM (SELECT DISTINCT local_tz AS zone FROM users_user) z "
            "CROSS JOIN (SELECT time '00:00' + make_interval(mins => m) AS call_time "
            "            FROM generate_series(0, 1439) m) t "
            "CROSS JOIN generate_series(0, %(n)s - 1) d(k)",
            {"first_ord": first_ord, "first": local_days[0], "n": len(local_days)},
        )
        conn.execute("CREATE INDEX ON bench_slots (slot)")
        conn.execute("ANALYZE bench_slots")
        conn.execute("ANALYZE users_user")
        user_span = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM users_user").fetchone()[0]
        rebuild = _drop_call_indexes(conn)
        conn.execute("ALTER TABLE calls_call SET UNLOGGED")
        timings["slots, drop indexes"] = time.perf_counter() - start

        start = time.perf_counter()
        params = {
            "errors": ERRORS,
            "variant_from": (today - timedelta(days=14) - EPOCH).days,
            "first_ord": first_ord,
            "user_span": user_span,
            "now": int(now.timestamp()),
        }
        first_window = datetime.combine(local_days[0] - timedelta(days=1), clock(0), tzinfo=UTC)
        last = now + timedelta(seconds=2 * RETRY_SECONDS + 3600)
        windows = [first_window + timedelta(days=k) for k in range((last - first_window).days + 1)]
        # Day k to connection k % n: each writes its days in order, the days stay apart.
        with ThreadPoolExecutor(connections) as pool:
            counts = pool.map(lambda k: _insert_utc_days(windows[k::connections], params), range(connections))
            rows = sum(counts)
        conn.execute("DROP TABLE bench_slots")
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('calls_call', 'id'), (SELECT max(id) FROM calls_call))"
        )
        timings["INSERT ... SELECT (in the server, by UTC day)"] = time.perf_counter() - start
        timings["rows"] = rows
        start = time.perf_counter()
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


def _live_glance_as_before(day: date) -> tuple[dict, int]:
    """Today's counts as the page read them live before the snapshot (the baseline): one
    aggregate over today's rows, and "not reached" as an anti-join on retry_of alone."""
    from django.db.models import Count, Q

    from calls.models import Call, CallStatus

    calls = Call.objects.filter(local_date=day)
    counts = calls.aggregate(
        due=Count("id", filter=Q(attempt=1, manual=False)),
        called=Count("id", filter=Q(dialed_at__isnull=False)),
        **{f"status_{status}": Count("id", filter=Q(status=status)) for status in CallStatus.values},
    )
    unanswered = (CallStatus.FAILED, CallStatus.NO_ANSWER, CallStatus.BUSY)
    not_reached = calls.filter(manual=False, status__in=unanswered, retry__isnull=True).count()
    return counts, not_reached


def _day_stats_as_before(day: date) -> dict:
    """The rollup of a day as it was computed before (the baseline): calls by status, missed
    calls by reason and variants each in a pass of their own, then the same three queries."""
    from django.db.models import Count, Q

    from calls.models import Call, CallStatus
    from dashboard import rollups

    stats: dict = {}
    calls = Call.objects.filter(local_date=day)
    for status, count in calls.values_list("status").annotate(n=Count("id")).order_by():
        stats[("status", status)] = count
    stats["hours"] = rollups._by_local_hour(day)
    stats["lag"] = rollups._lag_percentiles(day)
    stats["reached"] = rollups._users_reached_by_attempt(day)
    missed = (
        calls.filter(status=CallStatus.MISSED)
        .annotate(reason=rollups._missed_reason_expression())
        .values_list("reason")
        .annotate(n=Count("id"))
        .order_by()
    )
    stats["missed"] = list(missed)
    variants = (
        calls.filter(variant__isnull=False, dialed_at__isnull=False)
        .values_list("variant_id")
        .annotate(dialed=Count("id"), answered=Count("id", filter=Q(status=CallStatus.COMPLETED)))
        .order_by()
    )
    stats["variants"] = list(variants)
    return stats


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


def run(*, users: int, days: int = DAYS, repeats: int = 7, measured: bool = True) -> Table:
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
    if measured:
        measure(table, users=users, rows=rows, days=days, repeats=repeats)
    return table


def measure(table: Table, *, users: int, rows: int, days: int = DAYS, repeats: int = 7) -> None:
    """The figures, on a database seeded as above."""
    import time_machine

    from dashboard import glance, rollups, selectors

    today = NOW.date()
    closed = today - timedelta(days=2)
    say("dashboard: the rollup")

    stats = rollups.day_stats_compute(closed)  # once untimed: the first read after the seed is from disk
    # Alternately, so that neither gets the warmer cache.
    rounds = [
        (timed(lambda: rollups.day_stats_compute(closed))[0], timed(lambda: _day_stats_as_before(closed))[0])
        for _ in range(2)
    ]
    one_day_s = median([after for after, _ in rounds])
    one_day_before_s = median([before for _, before in rounds])
    backfill_s, summary = timed(lambda: rollups.daily_stats_refresh(now=NOW))
    _dirty_today(NOW)
    say("dashboard: today's snapshot, and today counted live as before")
    snapshot_s = [timed(lambda: glance.today_snapshot_store(today, now=NOW))[0] for _ in range(3)]
    live_s = [timed(lambda: _live_glance_as_before(today))[0] for _ in range(3)]

    client = _staff_client()
    with time_machine.travel(NOW, tick=True):
        say("dashboard: the page")
        cold = _page(client)
        pages = [_page(client) for _ in range(repeats)]
        glance_s = [timed(lambda: selectors.today_at_a_glance(now=NOW))[0] for _ in range(repeats)]
        charts = [timed(lambda: selectors.dashboard_charts(now=NOW))[0] for _ in range(repeats)]
    # No worker ran the refresh for TODAY_STALE_AFTER: the page counts today itself.
    with time_machine.travel(NOW + glance.TODAY_STALE_AFTER + timedelta(seconds=1), tick=True):
        say("dashboard: the page with today's snapshot too old to show")
        unrefreshed = _page(client)
    with time_machine.travel(NOW, tick=True):
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
        "whole page, today's snapshot over 15 min old (no worker ran the job)",
        n,
        fmt_s(unrefreshed),
        "",
        f"< {PAGE_TARGET_S:g} s",
        met(unrefreshed < PAGE_TARGET_S),
    )
    table.add(
        "  today at a glance (its snapshot, live in flight and retries pending)",
        f"{int(stats.get(('calls', ''), 0)):,} calls a day",
        fmt_s(median(glance_s)),
        f"{median(glance_s) / page_s:.0%} of the page",
    )
    table.add(
        "  the six charts from the rollup",
        f"{days} days",
        fmt_s(median(charts)),
        f"{median(charts) / page_s:.0%} of the page",
    )
    table.add(
        "  today's counts, computed by the job (glance.today_snapshot_store)",
        f"{int(glance.TodaySnapshot.objects.get(day=today).counts['due']):,} due today",
        fmt_s(median(snapshot_s)),
        f"{fmt_ratio(median(snapshot_s), median(live_s))} faster than before",
    )
    table.add(
        "  today's counts live on the page, as before (aggregate + anti-join)",
        "same",
        fmt_s(median(live_s)),
        "1.0x",
    )
    table.add(
        "charts computed from calls_call on the request (no rollup)",
        f"{days} days",
        fmt_s(naive_s) + (f" (extrapolated from {naive_days} days)" if naive_days < days else ""),
        "1.0x",
    )
    table.add(
        "rollup of one closed day (day_stats_compute, as the job runs it)",
        f"{int(stats[('calls', '')]):,} calls",
        fmt_s(one_day_s),
        f"{fmt_ratio(one_day_s, one_day_before_s)} faster than before (median of 2, alternated)",
    )
    table.add(
        "  the same as before: status, missed reasons and variants in three passes",
        "same",
        fmt_s(one_day_before_s),
        "1.0x",
    )
    table.add(
        "rollup backfill, all days (daily_stats_refresh)",
        f"{len(summary.refreshed)} days",
        fmt_s(backfill_s),
        "",
    )
    say(
        f"dashboard: page {fmt_s(page_s)} (cold {fmt_s(cold)}), glance {fmt_s(median(glance_s))}, "
        f"naive {fmt_s(naive_s)}"
    )


def main() -> int:
    """Seed once, measure many times: ``seed`` creates, migrates and seeds RELEVEL_BENCH_DB
    and keeps it; ``measure`` prints the figures on it (rollups recomputed each time). For
    working on the queries; ``run.py --only dashboard`` is the benchmark of record."""
    import argparse
    import os
    import sys

    import harness

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("step", choices=("seed", "measure"))
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=DAYS)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    sys.path.insert(0, str(harness.ROOT))
    env = harness.bench_env(provider_port=9)
    os.environ.update(env)
    os.environ["LOG_LEVEL"] = "WARNING"
    if args.step == "seed":
        harness.create_bench_db()
        harness.migrate(env)
    import django

    django.setup()
    harness.flush_redis()
    if args.step == "seed":
        table = run(users=args.users, days=args.days, repeats=args.repeats, measured=False)
    else:
        from django.db import connection

        table = Table(f"6. The dashboard, on {harness.BENCH_DB} as seeded")
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM users_user")
            users = cursor.fetchone()[0]
            cursor.execute("SELECT count(*) FROM calls_call")
            rows = cursor.fetchone()[0]
        measure(table, users=users, rows=rows, days=args.days, repeats=args.repeats)
    print(table.render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
