"""Benchmark 1: one scheduler tick at 10k / 100k / 1M users, and a rush slot.

Side by side on the same rows: the tick (calls_schedule_due: select + claim + enqueue), the
original design's naive tick (bench/naive.py), and the bare indexed due-rows query.
"""

from __future__ import annotations

import cProfile
import functools
import io
import os
import pstats
import threading
import time
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from zoneinfo import ZoneInfo

import psutil
import psycopg
from django.db import connection

import seed
from harness import BENCH_DSN, Table, flush_redis, fmt_ratio, fmt_s, median, met, say, timed

# A fixed tick instant: a Monday afternoon in June (northern DST in force).
TICK_AT = datetime(2026, 6, 15, 14, 30, tzinfo=UTC)
SLOT = timedelta(minutes=5)
TICK_TARGET_S = 0.5  # for 1M users
RUSH_TARGET_S = 3.0  # 100,000 users due in one slot claimed and enqueued
RUSH_BARE_TARGET = 2.0  # the rush within this many times the bare database work it needs (issue 21)
RUSH_ZONE = "Asia/Kolkata"
RUSH_TIME = clock(20, 30)
NAIVE_BUDGET_S = 20.0  # per naive run: past it, per-user work stops and is extrapolated


def _due_snapshot(now: datetime) -> tuple[list[int], list[datetime]]:
    with psycopg.connect(BENCH_DSN) as conn:
        rows = conn.execute(
            "SELECT id, next_call_at FROM users_user WHERE next_call_at <= %s ORDER BY id", (now,)
        ).fetchall()
    return [r[0] for r in rows], [r[1] for r in rows]


def _reset(snapshot: tuple[list[int], list[datetime]]) -> None:
    """Undo a tick: due users get their slot back, calls and jobs go."""
    ids, slots = snapshot
    with psycopg.connect(BENCH_DSN, autocommit=True) as conn:
        conn.execute(
            "UPDATE users_user u SET next_call_at = v.t FROM unnest(%s::bigint[], %s::timestamptz[]) "
            "AS v(id, t) WHERE u.id = v.id",
            (ids, slots),
        )
        conn.execute("TRUNCATE calls_call CASCADE")
        # Autovacuum's job in production; here it keeps repeats from scanning dead tuples.
        conn.execute("VACUUM (ANALYZE) users_user")
    flush_redis()


def _bare_rush(slot: datetime) -> tuple[float, float, float, int, float]:
    """The database work a rush slot needs at the least, on its own connection: every due
    person's call row inserted (one INSERT ... SELECT) and their row moved on to the next day
    (one UPDATE), in one transaction with the foreign key checked per row as the claim has it.
    Returns (seconds, seconds of the insert, of the update, calls inserted, backend CPU s)."""
    with psycopg.connect(BENCH_DSN) as conn:
        backend = psutil.Process(conn.info.backend_pid)
        cpu = _cpu_seconds(backend)
        started = time.perf_counter()
        conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
        inserted = conn.execute(
            "INSERT INTO calls_call (to_number, agent_id, attempt, local_date, status, provider, job_id, "
            "provider_payloads, error, transcript, recording_url, created_at, scheduled_for, user_id, "
            "end_reason, outcome_inferred, manual) "
            "SELECT phone, 'agent-bench', 1, (next_call_at AT TIME ZONE local_tz)::date, 'queued', "
            "'callkaro', 'place-calls-' || id, '[]', '', '', '', now(), next_call_at, id, '', false, false "
            "FROM users_user WHERE next_call_at <= %s",
            (slot,),
        ).rowcount
        calls_s = time.perf_counter() - started
        conn.execute(
            "UPDATE users_user SET next_call_at = next_call_at + interval '1 day' WHERE next_call_at <= %s",
            (slot,),
        )
        conn.commit()
        seconds = time.perf_counter() - started
        cpu = _cpu_seconds(backend) - cpu
    return seconds, calls_s, seconds - calls_s, inserted, cpu


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


class _HelperBackends:
    """The CPU of the PostgreSQL backends of connections the tick opens and closes itself
    (a rush's claim helpers, calls.claim.CLAIM_CONNECTIONS): each is read every 10 ms while
    it lives, since a backend that has exited can no longer be read."""

    def __init__(self) -> None:
        self.last: dict[int, float] = {}
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def connected(self, sender, connection, **kwargs) -> None:
        process = psutil.Process(connection.connection.info.backend_pid)
        start = _cpu_seconds(process)

        def sample() -> None:
            while True:
                try:
                    self.last[process.pid] = _cpu_seconds(process) - start
                except psutil.Error:
                    return
                if self.stop.wait(0.01):
                    return

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        self.threads.append(thread)

    def total(self) -> float:
        self.stop.set()
        for thread in self.threads:
            thread.join()
        return sum(self.last.values())


def _tick_with_cpu(now: datetime):
    """The tick, timed, with the CPU seconds it took in this process and in its PostgreSQL
    backends (the same host): (seconds, summary, process CPU s, backends' CPU s)."""
    from django.db.backends.signals import connection_created

    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = psutil.Process(cursor.fetchone()[0])
    me = psutil.Process()
    helpers = _HelperBackends()
    connection_created.connect(helpers.connected)
    try:
        cpu, pg_cpu = _cpu_seconds(me), _cpu_seconds(backend)
        seconds, summary = timed(lambda: _tick(now))
        cpu, pg_cpu = _cpu_seconds(me) - cpu, _cpu_seconds(backend) - pg_cpu
    finally:
        connection_created.disconnect(helpers.connected)
    return seconds, summary, cpu, pg_cpu + helpers.total()


def _bare_due_query(now: datetime) -> int:
    from calls import selectors

    sql, params = selectors.users_due_for_call(until=now).query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return len(cursor.fetchall())


def _tick(now: datetime):
    from calls.scheduling import calls_schedule_due

    return calls_schedule_due(now=now)


def _naive(now: datetime):
    from naive import naive_tick

    return naive_tick(now=now, slot_minutes=5, deadline=time.perf_counter() + NAIVE_BUDGET_S)


def _naive_seconds(elapsed: float, result) -> tuple[float, bool]:
    """Whole-run seconds, extrapolating the per-user work when the deadline cut it short."""
    if result.complete or not result.handled:
        return elapsed, False
    per_user = result.handle_seconds / result.handled
    return elapsed + per_user * (result.matched - result.handled), True


def _profile_tick(now: datetime, snapshot, path: Path) -> str:
    _reset(snapshot)
    profiler = cProfile.Profile()
    profiler.enable()
    _tick(now)
    profiler.disable()
    profiler.dump_stats(str(path))
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
    path.with_suffix(".txt").write_text(out.getvalue())
    return str(path.with_suffix(".txt"))


def _explain_claim(now: datetime, path: Path) -> None:
    from django.db import transaction

    from calls import selectors

    with transaction.atomic():
        qs = selectors.users_due_for_call(until=now).select_for_update(skip_locked=True, of=("self",))[:1000]
        sql, params = qs.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        transaction.set_rollback(True)
    path.write_text(f"{sql}\n{params}\n\n{plan}\n")


def run(*, sizes: list[int], rush: int, repeats: int, naive_repeats: int, out: Path | None) -> Table:
    table = Table("1. The tick at scale (PostgreSQL)")
    seed.truncate_all()
    seeded = 0
    for size in sizes:
        say(f"tick: seeding users {seeded + 1}..{size}")
        seed_s, _ = timed(
            functools.partial(
                seed.seed_population, start=seeded + 1, count=size - seeded, previous_tick=TICK_AT - SLOT
            )
        )
        seeded = size
        seed.vacuum_analyze()
        snapshot = _due_snapshot(TICK_AT)
        due = len(snapshot[0])
        table.notes.append(
            f"{size:,} users: seeded (COPY) in {seed_s:.1f} s cumulative step; {due:,} due in the slot"
        )

        bare = []
        for _ in range(5):
            seconds, rows = timed(lambda: _bare_due_query(TICK_AT))
            bare.append(seconds)
        ticks, summaries = [], []
        for _ in range(repeats):
            _reset(snapshot)
            seconds, summary = timed(lambda: _tick(TICK_AT))
            ticks.append(seconds)
            summaries.append(summary)
        naive_runs, extrapolated, naive_result = [], False, None
        for _ in range(naive_repeats):
            _reset(snapshot)
            seconds, naive_result = timed(lambda: _naive(TICK_AT))
            seconds, cut = _naive_seconds(seconds, naive_result)
            extrapolated |= cut
            naive_runs.append(seconds)
        _reset(snapshot)

        tick_median = median(ticks)
        last = summaries[-1]
        if last.claimed != due or last.enqueued != due:
            table.notes.append(
                f"{size:,}: tick claimed {last.claimed}, enqueued {last.enqueued} of {due} due"
            )
        if naive_result is not None and naive_result.matched != due:
            table.notes.append(f"{size:,}: naive tick matched {naive_result.matched} of {due} due")
        is_target = size >= 1_000_000
        n = f"{size:,} users / {due:,} due"
        table.add(
            "tick (calls_schedule_due)",
            n,
            fmt_s(tick_median),
            f"{fmt_ratio(tick_median, median(naive_runs))} faster than naive" if naive_runs else "",
            f"<= {TICK_TARGET_S} s at 1M" if is_target else "",
            met(tick_median <= TICK_TARGET_S) if is_target else "",
        )
        table.add(
            "naive tick (original design)",
            n,
            fmt_s(median(naive_runs)) + (" (extrapolated)" if extrapolated else ""),
            "1.0x",
            "",
            "",
            note=f"{size:,}: {len(naive_runs)} run(s); scans {naive_result.scanned:,} enabled users"
            if naive_result
            else "",
        )
        table.add(
            "bare due-rows query (index range scan)",
            n,
            fmt_s(median(bare)),
            f"{median(bare) / tick_median:.0%} of the tick",
            "",
            "",
        )
        say(
            f"tick: {size:,} users: tick {fmt_s(tick_median)}, naive {fmt_s(median(naive_runs))}, "
            f"bare {fmt_s(median(bare))}"
        )
        if out is not None and size == sizes[-1]:
            _explain_claim(TICK_AT, out / f"explain_claim_{size}.txt")
            _profile_tick(TICK_AT, snapshot, out / f"tick_{size}.prof")
            _reset(snapshot)

    # The rush slot: everyone kept the default 20:30 in one zone.
    say(f"tick: rush slot, seeding {rush:,} users at {RUSH_TIME:%H:%M} {RUSH_ZONE}")
    seed.truncate_all()
    rush_slot = datetime.combine(TICK_AT.date(), RUSH_TIME, tzinfo=ZoneInfo(RUSH_ZONE)).astimezone(UTC)
    slot = seed.seed_same_slot(
        start=1, count=rush, zone=RUSH_ZONE, call_time=RUSH_TIME, previous_tick=rush_slot - SLOT
    )
    seed.vacuum_analyze()
    snapshot = _due_snapshot(slot)
    rush_ticks, rush_cpu, rush_pg_cpu, rush_summary, bares = [], [], [], None, []
    for _ in range(max(2, repeats // 2)):
        # The bare work first each time, on the same rows, so both meet the same state.
        _reset(snapshot)
        bares.append(_bare_rush(slot))
        _reset(snapshot)
        seconds, rush_summary, cpu, pg_cpu = _tick_with_cpu(slot)
        rush_ticks.append(seconds)
        rush_cpu.append(cpu)
        rush_pg_cpu.append(pg_cpu)
    _reset(snapshot)
    seconds, naive_result = timed(lambda: _naive(slot))
    naive_s, cut = _naive_seconds(seconds, naive_result)
    rush_median = median(rush_ticks)
    bare_median = median([bare[0] for bare in bares])
    n = f"{rush:,} due at once"
    table.add(
        "rush slot: tick",
        n,
        fmt_s(rush_median),
        f"{fmt_ratio(rush_median, naive_s)} faster than naive",
        f"<= {RUSH_TARGET_S:.0f} s" + ("" if rush >= 100_000 else " (at 100k)"),
        met(rush_median <= RUSH_TARGET_S)
        if rush >= 100_000
        else f"{rush_median * 100_000 / rush:.1f} s scaled to 100k",
        note=f"claimed {rush_summary.claimed:,}, enqueued {rush_summary.enqueued:,} "
        f"in {-(-rush_summary.enqueued // _batch_size())} batch jobs; {rush / rush_median:,.0f} users/s; "
        f"CPU {median(rush_cpu):.2f} s in the tick's process, {median(rush_pg_cpu):.2f} s in its "
        f"PostgreSQL backends (medians of {len(rush_ticks)}); load average {os.getloadavg()[0]:.1f}",
    )
    table.add(
        "rush slot: bare database work",
        n,
        fmt_s(bare_median),
        f"the tick is {rush_median / bare_median:.2f}x this",
        f"tick <= {RUSH_BARE_TARGET:.0f}x this",
        met(rush_median <= RUSH_BARE_TARGET * bare_median),
        note=f"one INSERT ... SELECT of the {bares[-1][3]:,} calls "
        f"({median([b[1] for b in bares]) * 1000:.0f} ms) and one UPDATE of the same users' "
        f"next_call_at ({median([b[2] for b in bares]) * 1000:.0f} ms), "
        f"one transaction, foreign key checked per row; CPU {median([b[4] for b in bares]):.2f} s "
        "in its PostgreSQL backend",
    )
    table.add(
        "rush slot: naive tick",
        n,
        fmt_s(naive_s) + (" (extrapolated)" if cut else ""),
        "1.0x",
        "",
        "",
        note=f"handled {naive_result.handled:,} of {naive_result.matched:,} within {NAIVE_BUDGET_S:.0f} s"
        if cut
        else "",
    )
    say(f"tick: rush {fmt_s(rush_median)}, naive {fmt_s(naive_s)}")
    if out is not None:
        _profile_tick(slot, snapshot, out / f"tick_rush_{rush}.prof")
    _reset(snapshot)
    seed.truncate_all()
    return table


def _batch_size() -> int:
    from django.conf import settings

    return settings.CALL_BATCH_SIZE
