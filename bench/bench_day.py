"""Benchmark (issue 21): a day in one run, what a call costs from tick to event.

Two parts, one database, one run:

A. **The tick over the million.** USERS users in a few zones, call times clustered as real
   ones are (most on the hour and the half hour, a long tail of other minutes; peaks in the
   morning and evening), two agent variants (a capped Vapi and an uncapped CallKaro). The
   day's 288 scheduler ticks are replayed back to back with ``now=`` each 5-minute slot of a
   day three days ahead (SCHEDULE_CRON's cadence): every tick does its real work (sweeps,
   claim, variant assignment, next calls, the batch jobs enqueued in Redis). Its CPU is
   this process's thread and its PostgreSQL backend, around each tick. Nothing places these
   calls: after each tick the calls it claimed are settled in bulk (a fixed mix of final
   statuses, by the harness on a connection of its own, not counted) and the bench's Redis
   DB is emptied, so the next tick finds what it would after a day of placed calls.

B. **The calls end to end, a sample.** SAMPLE more users, drawn from the same distribution
   (zones, local call times), replay the same day compressed into DAY_SECONDS of real time
   (each call time's place in the day kept, so every hour's share and the rushes on the hour
   stay): their call time is the real instant their slot maps to, in their own zone. From
   there everything is the app's, in production's shape: RQ's cron (``rqscheduler``, the tick
   every minute so that a compressed day's slots are claimed in time), the workers as
   docker-compose runs them (``rqworker-pool``, SimpleWorker), gunicorn with
   deploy/gunicorn.conf.py, the events workers, two fake providers on 127.0.0.1
   (bench/fake_provider.py's live modes: Vapi capped at CAP live calls, CallKaro uncapped,
   each answering after ANSWER_DELAY_S and posting its documented end-of-call webhook when
   the call ends, the outcome drawn from a fixed seeded mix), retries CALL_RETRY_DELAY_SECONDS
   apart, the analysis (ANALYSIS_CRON) and events to a receiver on 127.0.0.1.

CPU is attributed per stage: each process role has its own ``application_name``
(``?application_name=`` in DATABASE_URL) and PostgreSQL backends are sampled by it; the
calls workers run bench/day_worker.py's TimedWorker, which adds up each job's CPU and its
backend's by job function (placement, dispatcher, retries, analysis, ticks). Per-1,000
figures come from the sample; the day's totals are the tick's measured total plus the others
extrapolated to the day's calls (the million's first attempts times the sample's attempts
per first attempt), with the extrapolation printed.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from zoneinfo import ZoneInfo

import psutil
import psycopg
import requests

import seed
from harness import (
    BENCH_DB,
    BENCH_DSN,
    PG_ADMIN_DSN,
    PYTHON,
    REDIS_URL,
    ROOT,
    Table,
    bench_env,
    flush_redis,
    say,
    stop_process,
)

# A few zones, most of the people in the product's first market.
ZONES = [
    ("Asia/Kolkata", 55),
    ("America/New_York", 15),
    ("Europe/London", 12),
    ("America/Los_Angeles", 10),
    ("Asia/Singapore", 8),
]
# Local hour weights: mornings and evenings; nobody much at 3 a.m.
HOUR_WEIGHTS = [1, 0.5, 0.3, 0.3, 0.3, 0.5, 2, 5, 8, 7, 4, 3, 3, 3, 3, 3, 3, 4, 6, 8, 9, 8, 5, 2]
# The minute within the hour: most on the hour and half hour, then the quarters, then any.
ON_THE_HOUR, ON_THE_HALF, ON_A_QUARTER = 0.45, 0.25, 0.10
DISABLED_SHARE, NO_PHONE_SHARE = 0.03, 0.02
OUTCOME_MIX = "completed:62,no_answer:20,busy:8,voicemail:10"
# Track A's bulk settlement of the million's claimed calls: the same mix, by call id.
SETTLED_MIX = [("completed", 62), ("no_answer", 20), ("busy", 8), ("voicemail", 10)]
CAP = 40  # Vapi's live calls
VARIANTS = [("day-vapi", "vapi", "assistant-bench", 30), ("day-callkaro", "callkaro", "agent-bench", 70)]
ANSWER_DELAY_S = 0.2  # the provider's API answer
HOLD_S = 2.0  # an answered call, compressed (a real one is minutes)
RING_S = 1.0  # an unanswered one
WORKERS = 5  # QUEUE_CONCURRENCY, docker-compose's default
EVENT_WORKERS = 2  # EVENTS_CONCURRENCY, docker-compose's default
LEAD_S = 60  # from the processes being up to the sample's first call time
SETTLE_MAX_S = 240  # after the compressed day, at most this long for the last outcomes
SLOTS = 288
POLL_S = 4.0  # how often the harness looks at the sample's progress
EVENTS_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo="
VAPI_SECRET = "bench-vapi-webhook-secret-0123456789abcdef"
CALLKARO_TOKEN = "bench-callkaro-webhook-token-0123456789abcdef"
SAMPLE_START_ID = 10_000_001
UNSETTLED = ["queued", "dialing", "unconfirmed", "ringing", "in_progress"]

# Job functions (calls/jobs.py, events/jobs.py) -> stage.
STAGE_OF_JOB = {
    "calls.jobs.place_calls": "dispatch",
    "calls.jobs.dispatch_calls": "dispatch",
    "calls.jobs.place_call": "retries",
    # Outcome retries, released in batches per RETRY_GATHER_SECONDS instant (calls/retries.py);
    # a bucket of more than CALL_BATCH_SIZE hands the rest to place_calls jobs (dispatch).
    "calls.jobs.place_retries": "retries",
    "calls.jobs.analyse_calls": "analysis",
    "calls.jobs.analyse_noted_calls": "analysis",
    "calls.jobs.schedule_calls": "sample ticks",
}
STAGES = [
    ("tick", "tick and claim (all users, 288 ticks)"),
    ("dispatch", "dispatch and placement (first attempts)"),
    ("webhook", "webhook (gunicorn)"),
    ("analysis", "result and analysis"),
    ("events", "event delivery (events workers)"),
    ("retries", "retries (their placement)"),
    ("overhead", "workers between jobs, RQ cron, sample ticks"),
]


# --- The population -----------------------------------------------------------------------


def _draw_profile(rng: random.Random) -> tuple[str, int]:
    """(zone, local minute of the day) of one person."""
    zone = rng.choices([z for z, _ in ZONES], weights=[w for _, w in ZONES])[0]
    hour = rng.choices(range(24), weights=HOUR_WEIGHTS)[0]
    r = rng.random()
    if r < ON_THE_HOUR:
        minute = 0
    elif r < ON_THE_HOUR + ON_THE_HALF:
        minute = 30
    elif r < ON_THE_HOUR + ON_THE_HALF + ON_A_QUARTER:
        minute = rng.choice((15, 45))
    else:
        minute = rng.randrange(60)
    return zone, hour * 60 + minute


def _seed_million(*, users: int, day_start: datetime) -> None:
    rng = random.Random(21)
    profiles = [_draw_profile(rng) for _ in range(users)]
    flags = [rng.random() for _ in range(users)]
    # The state after the previous day's last tick: every slot up to day_start + 1 min claimed.
    slots = seed._slot_table(
        [z for z, _ in ZONES], sorted({m for _, m in profiles}), after=day_start + timedelta(minutes=1)
    )
    joined = "2025-01-01 00:00:00+00"

    def lines():
        for k in range(users):
            i = k + 1
            (zone, minute), flag = profiles[k], flags[k]
            enabled = flag >= DISABLED_SHARE
            has_phone = not (DISABLED_SHARE <= flag < DISABLED_SHARE + NO_PHONE_SHARE)
            phone = f"+9170{i:08d}" if has_phone else "\\N"
            next_call_at = slots[(zone, minute)] if enabled and has_phone else "\\N"
            yield (
                f"{i}\t!\t\\N\tf\tu{i}\t\t\t\tf\tt\t{joined}\tUser {i}\t{phone}\t{zone}\t"
                f"{'t' if enabled else 'f'}\t{minute // 60:02d}:{minute % 60:02d}:00\t{next_call_at}\n"
            )

    seed._copy_lines("users_user", seed.USER_COLUMNS, lines())


def _seed_sample(*, count: int, day_start: datetime, real_start: datetime, day_seconds: float) -> dict:
    """``count`` people from the same distribution, their day compressed onto the real clock:
    the slot at fraction f of the fake day is at real_start + f * day_seconds, and their call
    time is that instant in their own zone. Returns the UTC hours (of the fake day) covered."""
    rng = random.Random(2121)
    joined = "2025-01-01 00:00:00+00"
    hours: dict[int, int] = {}
    rows = []
    for k in range(count):
        zone, minute = _draw_profile(rng)
        tz = ZoneInfo(zone)
        local_day = day_start.astimezone(tz).date()
        local = datetime.combine(local_day, clock(minute // 60, minute % 60), tzinfo=tz)
        offset = (local.astimezone(UTC) - day_start).total_seconds() % 86_400
        hours[int(offset // 3600)] = hours.get(int(offset // 3600), 0) + 1
        at = (real_start + timedelta(seconds=offset * day_seconds / 86_400)).replace(microsecond=0)
        local_time = at.astimezone(tz).time()
        i = SAMPLE_START_ID + k
        rows.append(
            f"{i}\t!\t\\N\tf\tu{i}\t\t\t\tf\tt\t{joined}\tUser {i}\t+9171{i:08d}\t{zone}\tt\t"
            f"{local_time:%H:%M:%S}\t{at.isoformat()}\n"
        )
    seed._copy_lines("users_user", seed.USER_COLUMNS, iter(rows))
    return hours


def _create_variants() -> None:
    with psycopg.connect(BENCH_DSN, autocommit=True) as conn:
        for name, provider, agent, weight in VARIANTS:
            conn.execute(
                "INSERT INTO calls_agentvariant (name, provider, agent_id, weight, active, created_at) "
                "VALUES (%s, %s, %s, %s, true, now())",
                (name, provider, agent, weight),
            )


def _settle_claimed(conn: psycopg.Connection, *, now: datetime) -> int:
    """Give the calls a tick claimed a final status, in bulk (the mix, by id), as if placed."""
    cases, bound = [], 0
    for status, weight in SETTLED_MIX:
        bound += weight
        cases.append(f"WHEN id %% 100 < {bound} THEN '{status}'")
    cursor = conn.execute(
        f"UPDATE calls_call SET status = CASE {' '.join(cases)} END, "
        "completed_at = %s, last_status_at = %s WHERE status = 'queued'",
        (now + timedelta(minutes=3), now + timedelta(minutes=3)),
    )
    return cursor.rowcount


# --- Measuring ----------------------------------------------------------------------------


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def _redis():
    import redis

    return redis.Redis.from_url(REDIS_URL)


def _db_keys_bytes(connection) -> tuple[int, int]:
    """(keys, sum of MEMORY USAGE) of the bench's Redis DB."""
    keys = list(connection.scan_iter(count=1000))
    pipe = connection.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return len(keys), sum(int(size or 0) for size in pipe.execute())


def _db_size() -> int:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        return conn.execute("SELECT pg_database_size(%s)", (BENCH_DB,)).fetchone()[0]


def _wal_lsn() -> int:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        return int(conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0])


@dataclass
class Sampler:
    """Every second: CPU of each process role's tree, of the PostgreSQL backends of the bench
    database by application_name, Redis's memory and the bench DB's keys."""

    roles: dict[str, list[subprocess.Popen]]
    app_cpu: dict[int, tuple[str, float]] = field(default_factory=dict)
    app_start: dict[int, float] = field(default_factory=dict)  # processes' CPU at the first sample
    pg_cpu: dict[int, tuple[str, float, float]] = field(default_factory=dict)  # pid: role, first, last
    redis_used: list[int] = field(default_factory=list)
    redis_keys: list[int] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Sampler:
        self.started = True
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        return self

    def _loop(self) -> None:
        connection = _redis()
        first = True
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            while not self.stop.is_set():
                self.sample(conn, connection, first=first)
                first = False
                self.stop.wait(1.0)
            self.sample(conn, connection, first=False)

    def sample(self, conn, connection, *, first: bool) -> None:
        for role, processes in self.roles.items():
            for process in processes:
                try:
                    parent = psutil.Process(process.pid)
                    for proc in [parent, *parent.children(recursive=True)]:
                        self.app_cpu[proc.pid] = (role, _cpu(proc))
                        if first:  # their start-up is not the day's work
                            self.app_start[proc.pid] = self.app_cpu[proc.pid][1]
                except psutil.NoSuchProcess:
                    pass
        rows = conn.execute(
            "SELECT pid, application_name FROM pg_stat_activity WHERE datname = %s", (BENCH_DB,)
        ).fetchall()
        for pid, name in rows:
            try:
                now = _cpu(psutil.Process(pid))
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            # A backend seen first at the first sample counts from there; a later one, whole.
            role, start, _ = self.pg_cpu.get(pid, (name or "?", now if first else 0.0, 0.0))
            self.pg_cpu[pid] = (role, start, now)
        self.redis_used.append(int(connection.info("memory")["used_memory"]))
        self.redis_keys.append(int(connection.dbsize()))

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)

    def app_by_role(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for pid, (role, seconds) in self.app_cpu.items():
            totals[role] = totals.get(role, 0.0) + seconds - self.app_start.get(pid, 0.0)
        return totals

    def pg_by_role(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for role, start, last in self.pg_cpu.values():
            totals[role] = totals.get(role, 0.0) + max(0.0, last - start)
        return totals


# --- Part A: the tick over the million ----------------------------------------------------


@dataclass
class TickDay:
    users: int
    claimed: int = 0
    ticks: int = 0
    app_s: float = 0.0
    pg_s: float = 0.0
    largest_tick: int = 0
    largest_tick_s: float = 0.0
    redis_keys_peak: int = 0
    redis_bytes_peak: int = 0
    settled: int = 0
    db_growth: int = 0
    wal: int = 0
    wall_s: float = 0.0


def _tick_day(*, users: int, day_start: datetime) -> TickDay:
    from django.db import connection, connections

    from calls.scheduling import calls_schedule_due

    result = TickDay(users=users)
    connections["default"].settings_dict.setdefault("OPTIONS", {})["application_name"] = "relevel-tick"
    connection.close()
    redis_connection = _redis()
    size_before, wal_before = _db_size(), _wal_lsn()
    started = time.perf_counter()
    with psycopg.connect(BENCH_DSN + " application_name=relevel-bench", autocommit=True) as settle:
        for i in range(SLOTS):
            now = day_start + timedelta(minutes=5 * i)
            connection.ensure_connection()
            pid = connection.connection.info.backend_pid
            pg_before = _cpu(psutil.Process(pid))
            app_before = time.thread_time()
            summary = calls_schedule_due(now=now)
            app = time.thread_time() - app_before
            pg = _cpu(psutil.Process(pid)) - pg_before if connection.connection is not None else 0.0
            result.app_s += app
            result.pg_s += pg
            result.claimed += summary.claimed
            result.ticks += 1
            if summary.claimed > result.largest_tick:
                result.largest_tick, result.largest_tick_s = summary.claimed, app + pg
            keys, size = _db_keys_bytes(redis_connection)
            if size > result.redis_bytes_peak:
                result.redis_keys_peak, result.redis_bytes_peak = keys, size
            result.settled += _settle_claimed(settle, now=now)
            redis_connection.flushdb()
            if i % 24 == 23:
                say(
                    f"day: A tick {i + 1}/{SLOTS} at {now:%H:%M}: {result.claimed:,} claimed so far, "
                    f"tick CPU app {result.app_s:.1f} s + PostgreSQL {result.pg_s:.1f} s"
                )
    result.wall_s = time.perf_counter() - started
    result.db_growth, result.wal = _db_size() - size_before, _wal_lsn() - wal_before
    connections["default"].settings_dict["OPTIONS"].pop("application_name", None)
    connection.close()
    return result


# --- Part B: the sample end to end --------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _role_env(env: dict[str, str], role: str) -> dict[str, str]:
    return {**env, "DATABASE_URL": f"{env['DATABASE_URL']}?application_name=relevel-{role}"}


def _start_fake(mode: str, *, webhook_url: str, max_live: int, log: Path) -> tuple[subprocess.Popen, int]:
    command = [
        PYTHON,
        str(ROOT / "bench" / "fake_provider.py"),
        *("--mode", mode, "--delay", str(ANSWER_DELAY_S), "--hold", str(HOLD_S), "--ring", str(RING_S)),
        *("--outcomes", OUTCOME_MIX, "--seed", "21", "--webhook-url", webhook_url),
        *("--webhook-secret", VAPI_SECRET),
    ]
    if max_live:
        command += ["--max-live", str(max_live)]
    errors = open(log, "ab")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
    line = process.stdout.readline().strip()
    if not line.isdigit():
        stop_process(process)
        raise RuntimeError(f"the {mode} fake provider did not start; see {log}")
    return process, int(line)


def _spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    output = open(log, "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=output)


def _wait_for_web(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.3)
    raise RuntimeError(f"gunicorn did not answer /api/health; see {log}")


def _idle_cpu(sampler: Sampler, connection) -> float:
    """The app processes' CPU so far, less what their jobs spent (the first ticks)."""
    roles = ("workers", "events", "web", "scheduler")
    app = sum(v for role, v in sampler.app_by_role().items() if role in roles)
    jobs = sum(float(v) for k, v in connection.hgetall("bench:day:jobs").items() if k.endswith(b"|app"))
    return max(0.0, app - jobs)


def _wait_for_workers(connection, count: int, processes: dict) -> None:
    """Until ``count`` RQ workers have registered (their start-up done), then a moment more."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if connection.scard("rq:workers") >= count:
            time.sleep(3)
            return
        if any(p.poll() is not None for group in processes.values() for p in group):
            break
        time.sleep(0.5)
    raise RuntimeError("the workers did not all start; see the day-*.log files")


def _day_settings(*, retry_delay: int) -> dict[str, str | int]:
    return {
        "PROVIDER_MAX_LIVE_CALLS": f"vapi={CAP}",
        "CALL_AVERAGE_DURATION_SECONDS": int(HOLD_S),
        "CALL_RETRY_DELAY_SECONDS": retry_delay,
        "DASHBOARD_REFRESH_CRON": "",
        "RETENTION_CRON": "",
        "ANALYSIS_CRON": "* * * * *",
        "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
    }


def _sample_counts(conn) -> dict:
    since = SAMPLE_START_ID
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE attempt = 1), "
        "count(*) FILTER (WHERE attempt = 1 AND dialed_at IS NOT NULL), "
        "count(*) FILTER (WHERE attempt > 1 AND dialed_at IS NOT NULL), "
        "count(*) FILTER (WHERE status = ANY(%s)), count(*) FROM calls_call WHERE user_id >= %s",
        (UNSETTLED, since),
    ).fetchone()
    return dict(zip(("first", "first_placed", "retries_placed", "unsettled", "rows"), row, strict=True))


def _pending_events(conn) -> int:
    return conn.execute("SELECT count(*) FROM events_delivery WHERE status = 'pending'").fetchone()[0]


@dataclass
class SampleDay:
    sample: int
    hours: dict
    counts: dict = field(default_factory=dict)
    statuses: dict = field(default_factory=dict)
    lags: dict = field(default_factory=dict)
    jobs: dict = field(default_factory=dict)
    app: dict = field(default_factory=dict)
    pg: dict = field(default_factory=dict)
    fakes: dict = field(default_factory=dict)
    events: tuple = (0, 0)
    results: int = 0
    redis_used_peak: int = 0
    redis_used_start: int = 0
    redis_keys_peak: int = 0
    db_growth: int = 0
    wal: int = 0
    wall_s: float = 0.0
    settled_after_s: float = 0.0
    idle_from: float = 0.0
    idle_s: float = 0.0  # from the processes' start-up to the sample's first call time
    idle_cpu: float = 0.0  # the app processes' CPU meanwhile


def _sample_day(*, sample: int, day_start: datetime, day_seconds: float, retry_delay: int, logs: Path):
    from calls import queues
    from calls.queues import ANALYSIS_PENDING_KEY
    from calls.slots import release_step_at_or_after
    from tests.fakes import FakeEventReceiver

    receiver = FakeEventReceiver().start()
    web_port = _free_port()
    base = bench_env(
        provider_port=0,
        **_day_settings(retry_delay=retry_delay),
        SCHEDULE_CRON="* * * * *",
        CALLKARO_WEBHOOK_TOKEN=CALLKARO_TOKEN,
        VAPI_API_KEY="bench",
        VAPI_ASSISTANT_ID="assistant-bench",
        VAPI_PHONE_NUMBER_ID="number-bench",
        VAPI_WEBHOOK_SECRET=VAPI_SECRET,
        EVENTS_WEBHOOK_URL=receiver.url,
        EVENTS_WEBHOOK_SECRET=EVENTS_SECRET,
        QUEUE_CONCURRENCY=WORKERS,
        LOG_LEVEL="INFO",
    )
    base["PYTHONPATH"] = f"{ROOT}{os.pathsep}{ROOT / 'bench'}"
    processes: dict[str, list[subprocess.Popen]] = {}
    sampler = None
    try:
        vapi, vapi_port = _start_fake(
            "vapi-live",
            webhook_url=f"http://127.0.0.1:{web_port}/api/webhooks/vapi",
            max_live=CAP,
            log=logs / "day-fake-vapi.log",
        )
        processes["fake"] = [vapi]
        callkaro, callkaro_port = _start_fake(
            "callkaro-live",
            webhook_url=f"http://127.0.0.1:{web_port}/api/webhooks/callkaro?token={CALLKARO_TOKEN}",
            max_live=0,
            log=logs / "day-fake-callkaro.log",
        )
        processes["fake"].append(callkaro)
        base["CALLKARO_BASE_URL"] = f"http://127.0.0.1:{callkaro_port}"
        base["VAPI_BASE_URL"] = f"http://127.0.0.1:{vapi_port}"

        day = SampleDay(sample=sample, hours={})
        manage = [PYTHON, str(ROOT / "manage.py")]
        web = _spawn(
            [
                *(PYTHON, "-m", "gunicorn", "relevel.wsgi", "-c", str(ROOT / "deploy" / "gunicorn.conf.py")),
                *("--bind", f"127.0.0.1:{web_port}"),  # the shipped workers
            ],
            _role_env(base, "web"),
            logs / "day-gunicorn.log",
        )
        processes["web"] = [web]
        _wait_for_web(web_port, web, logs / "day-gunicorn.log")
        pool = ["--worker-class", "day_worker.TimedWorker"]
        processes["workers"] = [
            _spawn(
                [*manage, "rqworker-pool", "daily-calls-tick", "daily-calls", "notifications"]
                + ["--num-workers", str(WORKERS), *pool],
                _role_env(base, "worker"),
                logs / "day-workers.log",
            )
        ]
        processes["events"] = [
            _spawn(
                [*manage, "rqworker-pool", "relevel-events", "--num-workers", str(EVENT_WORKERS), *pool],
                _role_env(base, "events"),
                logs / "day-events.log",
            )
        ]
        processes["scheduler"] = [
            _spawn([*manage, "rqscheduler"], _role_env(base, "scheduler"), logs / "day-cron.log")
        ]
        redis_connection = _redis()
        _wait_for_workers(redis_connection, WORKERS + EVENT_WORKERS, processes)
        redis_connection.delete("bench:day:jobs")
        day.redis_used_start = int(redis_connection.info("memory")["used_memory"])
        sampler = Sampler(roles=processes).start()
        day.idle_from = time.perf_counter()
        # The sample, once every process is up: its first call time LEAD_S from now.
        real_start = (datetime.now(UTC) + timedelta(seconds=LEAD_S)).replace(microsecond=0)
        day.hours = _seed_sample(
            count=sample, day_start=day_start, real_start=real_start, day_seconds=day_seconds
        )
        with psycopg.connect(BENCH_DSN, autocommit=True) as conn:
            conn.execute("ANALYZE users_user")
        size_before, wal_before = _db_size(), _wal_lsn()
        # A tick now, as an operator's trigger would: the cron's first comes within a minute.
        queues.enqueue_tick()
        started = time.perf_counter()
        ends = real_start + timedelta(seconds=day_seconds)
        say(
            f"day: B sample of {sample:,} people, their day from {real_start:%H:%M:%S} to {ends:%H:%M:%S} "
            f"({day_seconds:.0f} s); logs in {logs}"
        )
        deadline = ends + timedelta(seconds=SETTLE_MAX_S)
        last_report, quiet_polls = 0.0, 0
        with psycopg.connect(BENCH_DSN + " application_name=relevel-bench", autocommit=True) as conn:
            while True:
                time.sleep(POLL_S)
                now = datetime.now(UTC)
                if not day.idle_s and now >= real_start:
                    day.idle_s = time.perf_counter() - day.idle_from
                    day.idle_cpu = _idle_cpu(sampler, redis_connection)
                counts = _sample_counts(conn)
                pending_analysis = redis_connection.llen(ANALYSIS_PENDING_KEY) or 0
                pending_events = _pending_events(conn)
                if time.perf_counter() - last_report >= 30:
                    last_report = time.perf_counter()
                    say(
                        f"day: B {now:%H:%M:%S}: {counts['first']:,} first attempts claimed, "
                        f"{counts['first_placed']:,} placed, {counts['retries_placed']:,} retries placed, "
                        f"{counts['unsettled']:,} unsettled, {pending_events:,} deliveries pending"
                    )
                queued_jobs = redis_connection.llen("rq:queue:daily-calls") or 0
                quiet = (
                    now > ends + timedelta(seconds=retry_delay * 3 + 10)
                    and not counts["unsettled"]
                    and not pending_analysis
                    and not queued_jobs
                    and not pending_events
                )
                # Twice in a row, POLL_S apart: a job taken from the queue is finished by then.
                quiet_polls = quiet_polls + 1 if quiet else 0
                if quiet_polls >= 2:
                    break
                if now > deadline:
                    say(f"day: B not settled {SETTLE_MAX_S} s after the day: {counts}; measuring as it is")
                    break
        day.settled_after_s = (datetime.now(UTC) - ends).total_seconds()
        day.wall_s = time.perf_counter() - started
        for name, port in (("vapi", vapi_port), ("callkaro", callkaro_port)):
            stats = requests.get(f"http://127.0.0.1:{port}/_stats", timeout=10).json()
            day.fakes[name] = {
                key: stats[key] for key in ("max_live", "webhooks_sent", "webhooks_failed", "outcomes")
            } | {"accepted": len(stats["accepts"]), "refused": len(stats["refusals"])}
        sampler.finish()
        jobs = redis_connection.hgetall("bench:day:jobs")
        for key, value in jobs.items():
            name, _, part = key.decode().rpartition("|")
            day.jobs.setdefault(name, {})[part] = float(value)
        day.app, day.pg = sampler.app_by_role(), sampler.pg_by_role()
        day.redis_used_peak = max(sampler.redis_used, default=0)
        day.redis_keys_peak = max(sampler.redis_keys, default=0)
        with psycopg.connect(BENCH_DSN) as conn:
            day.counts = _sample_counts(conn)
            day.statuses = dict(
                conn.execute(
                    "SELECT status, count(*) FROM calls_call WHERE user_id >= %s AND dialed_at IS NOT NULL "
                    "GROUP BY status",
                    (SAMPLE_START_ID,),
                ).fetchall()
            )
            for provider, slot, dialed in conn.execute(
                "SELECT provider, scheduled_for, dialed_at FROM calls_call "
                "WHERE user_id >= %s AND attempt = 1 AND dialed_at IS NOT NULL",
                (SAMPLE_START_ID,),
            ).fetchall():
                lag = (dialed - slot).total_seconds()
                stepped = (dialed - release_step_at_or_after(slot)).total_seconds()
                day.lags.setdefault(provider, []).append((lag, stepped))
            day.results = conn.execute(
                "SELECT count(*) FROM calls_callresult r JOIN calls_call c ON c.id = r.call_id "
                "WHERE c.user_id >= %s",
                (SAMPLE_START_ID,),
            ).fetchone()[0]
            day.events = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE status = 'delivered') FROM events_delivery"
            ).fetchone()
        day.db_growth, day.wal = _db_size() - size_before, _wal_lsn() - wal_before
        return day
    finally:
        if sampler is not None and not sampler.stop.is_set():
            sampler.finish()
        # All at once (each finishes its current job), then each waited for.
        roles = ("scheduler", "workers", "events", "web", "fake")
        everyone = [process for role in roles for process in processes.get(role, [])]
        for process in everyone:
            if process.poll() is None:
                process.terminate()
        for process in everyone:
            stop_process(process, grace=30)
        receiver.stop()


# --- The table ----------------------------------------------------------------------------


class DayTable(Table):
    headers = [
        *("stage", "n (the unit)", "app CPU ms per 1,000"),
        *("PostgreSQL CPU ms per 1,000", "day total CPU s"),
    ]

    def render(self) -> str:
        cells = [[r.variant, r.n, r.figure, r.ratio, r.target] for r in self.rows]
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(self.headers)]
        lines = [f"## {self.title}", ""]
        lines.append("| " + " | ".join(h.ljust(w) for h, w in zip(self.headers, widths, strict=True)) + " |")
        lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for row in cells:
            lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        for row in self.rows:
            if row.note:
                lines.append(f"- {row.variant}: {row.note}")
        lines.extend(f"- {note}" for note in self.notes)
        return "\n".join(lines)


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _report(a: TickDay, b: SampleDay, *, day_seconds: float, retry_delay: int) -> DayTable:
    table = DayTable(
        f"Issue 21. A day in one run: {a.users:,} users (tick), {b.sample:,} people's calls end to end"
    )
    placed = b.counts["first_placed"] + b.counts["retries_placed"]
    first = max(1, b.counts["first_placed"])
    per_first = placed / first
    day_first = a.claimed * b.counts["first_placed"] / max(1, b.counts["first"])
    day_calls = day_first * per_first
    ended = sum(fake["webhooks_sent"] for fake in b.fakes.values())
    # Each stage per 1,000 of what it handles in the sample, and that unit's count in the day.
    units = {
        "dispatch": (b.counts["first_placed"], "first attempts", day_first),
        "webhook": (ended, "webhooks", day_calls),
        "analysis": (b.results, "results", day_calls),
        "events": (ended, "calls ended", day_calls),
        "retries": (b.counts["retries_placed"], "retries", day_calls - day_first),
        "overhead": (placed, "calls", day_calls),
    }
    stage_app = dict.fromkeys([key for key, _ in STAGES], 0.0)
    stage_pg = dict.fromkeys([key for key, _ in STAGES], 0.0)
    job_app = job_pg = 0.0
    for name, parts in b.jobs.items():
        stage = STAGE_OF_JOB.get(name, "overhead")
        if name.startswith("events."):
            continue  # the events pool is taken whole below
        stage = "overhead" if stage == "sample ticks" else stage
        stage_app[stage] += parts.get("app", 0.0)
        stage_pg[stage] += parts.get("pg", 0.0)
        job_app += parts.get("app", 0.0)
        job_pg += parts.get("pg", 0.0)
    stage_app["webhook"] = b.app.get("web", 0.0)
    stage_pg["webhook"] = b.pg.get("relevel-web", 0.0)
    stage_app["events"] = b.app.get("events", 0.0)
    stage_pg["events"] = b.pg.get("relevel-events", 0.0)
    # The calls workers' CPU outside jobs, the cron process, and backends not seen in a job.
    stage_app["overhead"] += max(0.0, b.app.get("workers", 0.0) - job_app) + b.app.get("scheduler", 0.0)
    stage_pg["overhead"] += max(0.0, b.pg.get("relevel-worker", 0.0) - job_pg) + b.pg.get(
        "relevel-scheduler", 0.0
    )

    tick_per_k = 1000 / max(1, a.claimed)
    day_total = 0.0
    for key, label in STAGES:
        if key == "tick":
            app_ms, pg_ms = a.app_s * tick_per_k * 1000, a.pg_s * tick_per_k * 1000
            total = a.app_s + a.pg_s
            n = f"{a.claimed:,} claimed"
            note = (
                f"measured over the whole day ({a.ticks} ticks, {a.wall_s:.0f} s wall), not extrapolated; "
                f"per 1,000 first attempts claimed; the largest tick claimed {a.largest_tick:,} "
                f"in {a.largest_tick_s:.2f} CPU s"
            )
        else:
            count, unit, day_units = units[key]
            per_unit = 1000 / max(1, count)
            app_ms, pg_ms = stage_app[key] * per_unit * 1000, stage_pg[key] * per_unit * 1000
            total = (stage_app[key] + stage_pg[key]) / max(1, count) * day_units
            n = f"{count:,} {unit}"
            note = ""
        day_total += total
        table.add(label, n, f"{app_ms:,.0f}", f"{pg_ms:,.0f}", f"{total:,.0f}", note=note)
    table.add(
        "all stages, per 1,000 calls of the day",
        f"{day_calls:,.0f} calls/day",
        f"{day_total / day_calls * 1e6:,.0f} (app + PostgreSQL)",
        "",
        f"{day_total:,.0f}",
    )

    raw = [lag for values in b.lags.values() for lag, _ in values]
    stepped = [lag for values in b.lags.values() for _, lag in values]
    lag_text = "; ".join(
        f"{provider} p50 {_percentile([x for _, x in v], 0.5):.2f} s, "
        f"p95 {_percentile([x for _, x in v], 0.95):.2f} s ({len(v):,})"
        for provider, v in sorted(b.lags.items())
    )
    table.add(
        "p95 dial lag (dialed_at - call time), first attempts",
        f"{len(stepped):,} calls",
        f"{_percentile(stepped, 0.95):.2f} s",
        f"p50 {_percentile(stepped, 0.5):.2f} s",
        "",
        note=f"from the 10-s release step at or after the call time, which is the call time itself for "
        f"a real one (call times are whole minutes); the compressed sample's call times fall on any "
        f"second, so against them the lag is p95 {_percentile(raw, 0.95):.2f} s, p50 "
        f"{_percentile(raw, 0.5):.2f} s, of which up to 10 s is the step. By provider: {lag_text}",
    )
    idle_rate = b.idle_cpu / b.idle_s if b.idle_s else 0.0
    table.notes += [
        f"Extrapolation: the day's first attempts = {a.claimed:,} claimed by the million's ticks x "
        f"{b.counts['first_placed']:,} / {b.counts['first']:,} of the sample's claimed ones placed = "
        f"{day_first:,.0f}; the day's calls = that x {per_first:.3f} attempts per first attempt in the "
        f"sample ({placed:,} / {first:,}) = {day_calls:,.0f}. Each stage's day total = its CPU in the "
        f"sample / the units it handled there (column n) x those units in the day (first attempts for "
        f"dispatch, retries for retries, calls for the others); the tick's is measured whole.",
        f"Calls per CPU-second: {day_calls / day_total:,.1f} (app + PostgreSQL, all stages); "
        f"a {a.users:,}-user day takes {day_total / (2 * 86_400):.1%} of a 2-core box "
        f"({day_total:,.0f} CPU s / 172,800).",
        f"The sample's day ran {day_seconds:.0f} s (x{86_400 / day_seconds:.0f} compressed): its rushes are "
        f"that much denser than real ones, so the dial lag and the capped provider's queue are worst cases.",
        f"Workers between jobs, RQ cron, sample ticks: extrapolated per call above. Idle, before the first "
        f"call, the app's processes spent {idle_rate:.3f} CPU s a second ({b.idle_cpu:.1f} s in "
        f"{b.idle_s:.0f} s: RQ's polling, heartbeats and schedulers); over a real day that alone is "
        f"{idle_rate * 86_400:,.0f} CPU s, which the table's per-call extrapolation does not hold.",
        f"Redis: the tick's largest footprint {a.redis_bytes_peak / 2**20:,.1f} MiB in "
        f"{a.redis_keys_peak:,} keys "
        f"(MEMORY USAGE summed over the bench DB after a tick); during the sample, used_memory peaked "
        f"{(b.redis_used_peak - b.redis_used_start) / 2**20:+,.1f} MiB over its start "
        f"(server-wide, other DBs "
        f"included) with at most {b.redis_keys_peak:,} keys in the bench DB.",
        f"Database bytes per user-day: the tick over the million grew the database "
        f"{a.db_growth / 2**20:,.0f} MiB "
        f"= {a.db_growth / a.users:,.0f} B/user-day (call rows, users' next calls, indexes, dead tuples); "
        f"the sample grew it {b.db_growth / 2**20:,.1f} MiB = {b.db_growth / b.sample:,.0f} B "
        f"per person's day "
        f"(everything: claims, attempts, payloads, results, events). WAL written meanwhile (the whole "
        f"server, other databases and helpers included, so an upper bound): "
        f"{a.wal / a.users:,.0f} B/user-day "
        f"(tick), {b.wal / b.sample:,.0f} B per sampled person's day.",
        f"Sample: {b.counts['first']:,} first attempts claimed, {b.counts['first_placed']:,} placed, "
        f"{b.counts['retries_placed']:,} retries placed (CALL_RETRY_DELAY_SECONDS={retry_delay}); "
        f"final statuses of placed attempts {b.statuses}; {b.counts['unsettled']:,} unsettled at the end "
        f"({b.settled_after_s:.0f} s after the day); {b.results:,} results; events "
        f"{b.events[1]:,} of {b.events[0]:,} deliveries delivered. Every fake-day hour has sample calls: "
        f"min {min(b.hours.values()) if len(b.hours) == 24 else 0:,} per hour over {len(b.hours)} hours.",
        f"Fakes: {b.fakes}. Outcomes drawn from {OUTCOME_MIX}; Vapi capped at {CAP} live calls, "
        f"{VARIANTS[0][3]}% of people on it, CallKaro uncapped.",
        "Jobs (CPU s app / PostgreSQL, count): "
        + "; ".join(
            f"{name.rsplit('.', 1)[-1]} {p.get('app', 0):.1f}/{p.get('pg', 0):.1f} ({p.get('n', 0):,.0f})"
            for name, p in sorted(b.jobs.items())
        )
        + ". Roles' CPU s, app: "
        + ", ".join(f"{k} {v:.1f}" for k, v in sorted(b.app.items()))
        + "; PostgreSQL by application_name: "
        + ", ".join(f"{k} {v:.1f}" for k, v in sorted(b.pg.items()))
        + ". Fakes and the receiver are not the app's (not in the totals); nor is Redis (a shared server).",
        f"The million's claimed calls ({a.settled:,}) were settled in bulk by the harness, never placed; "
        "per-call figures come from the sample only. The sample's ticks ran every minute (SCHEDULE_CRON "
        "'* * * * *', a compressed day needs it), the million's every 5 minutes (the default).",
    ]
    return table


def run(*, users: int, sample: int, day_seconds: float, retry_delay: int, logs: Path) -> Table:
    from django.conf import settings
    from django.test.utils import override_settings

    day_start = (datetime.now(UTC) + timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
    with psycopg.connect(BENCH_DSN, autocommit=True) as conn:
        # seed.py's COPY lines predate the opt-out columns (bench_events does the same).
        conn.execute("ALTER TABLE users_user ALTER COLUMN opt_out_source SET DEFAULT ''")
    seed.truncate_all()
    flush_redis()
    _create_variants()
    say(f"day: seeding {users:,} users (clustered call times, {len(ZONES)} zones)")
    started = time.perf_counter()
    _seed_million(users=users, day_start=day_start)
    seed.vacuum_analyze()
    say(
        f"day: seeded in {time.perf_counter() - started:.1f} s; "
        f"A: {SLOTS} ticks of the day {day_start:%Y-%m-%d}"
    )
    limits = dict.fromkeys(settings.CALL_PROVIDERS, 0)
    # The sample's settings (part B's environment), but no events endpoint: a tick writes events
    # only for missed calls, and an endpoint stored now would outlive this part.
    with override_settings(
        PROVIDER_MAX_LIVE_CALLS={**limits, "vapi": CAP},
        CALL_AVERAGE_DURATION_SECONDS=int(HOLD_S),
        CALL_RETRY_DELAY_SECONDS=retry_delay,
    ):
        ticks = _tick_day(users=users, day_start=day_start)
    say(
        f"day: A done: {ticks.claimed:,} claimed in {ticks.ticks} ticks, CPU app {ticks.app_s:.1f} s + "
        f"PostgreSQL {ticks.pg_s:.1f} s ({ticks.wall_s:.0f} s wall)"
    )
    with psycopg.connect(BENCH_DSN, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) calls_call")
    flush_redis()
    sampled = _sample_day(
        sample=sample, day_start=day_start, day_seconds=day_seconds, retry_delay=retry_delay, logs=logs
    )
    say(f"day: B done in {sampled.wall_s:.0f} s: {sampled.counts}")
    table = _report(ticks, sampled, day_seconds=day_seconds, retry_delay=retry_delay)
    seed.truncate_all()
    flush_redis()
    return table
