"""Benchmark 6: a rush slot against a provider that caps live calls.

5,000 users are due in one slot; CALL_PROVIDER=vapi against bench/fake_provider.py in its
vapi-live mode, which holds each call live for 2 s and refuses (HTTP 400, Vapi's
concurrency message) beyond 50 live calls, then posts each call's end-of-call-report to
relevel's webhook under gunicorn. relevel runs with PROVIDER_MAX_LIVE_CALLS=vapi=50,
CALL_TIME_WINDOW_MINUTES=1 and CALL_AVERAGE_DURATION_SECONDS=2, workers as docker-compose
runs them (rqworker-pool, SimpleWorker; not --burst, since a call waiting for a line may be
released later), and one tick at the slot. Once the window has closed and every call has
settled, it reports what the fake and the database saw:

* the most live calls at the fake (target <= the cap) and the requests it refused;
* cap utilisation while calls waited: mean live calls / cap over the samples (every 50 ms)
  from the claim to the moment the last call left the queue (or the window closed);
* calls dialed outside their window (each accept time at the fake against slot + window);
* missed calls against calls.forecast.capacity_forecast's will_miss for the slot (within 5%).

It only sets environment settings and measures at the fake and in the database, so it runs
unchanged whatever the engine does to respect the cap (calls/dispatch.py when it lands).
CALL_MAX_RETRIES=0: first attempts only, so nothing waits 30 minutes for a retry.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import psycopg
import requests

import seed
from bench_placement import _tree
from harness import (
    BENCH_DSN,
    PYTHON,
    ROOT,
    Table,
    bench_env,
    flush_redis,
    fmt_s,
    met,
    say,
    stop_process,
)

CAP = 50
HOLD_S = 2.0
WINDOW_MINUTES = 1
ANSWER_DELAY_S = 0.05
WORKERS = 5
# Seconds from seeding to the slot: enough for gunicorn and the workers to start.
LEAD_S = 12
SETTLE_S = 30  # at most this long after the window closes for the last outcomes
TARGET_UTILISATION = 0.90
TARGET_MISSED_SHARE = 0.05
SECRET = "bench-vapi-webhook-secret-0123456789abcdef"  # 32+
# A call still queued after its window can never be dialed: the next tick records it missed.
UNSETTLED = ("dialing", "unconfirmed", "ringing", "in_progress")


def _clock(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%H:%M:%S}.{moment.microsecond // 1000:03d}"


def _rss(processes: list[subprocess.Popen]) -> int:
    total = 0
    for proc in _tree(processes):
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _settings_env(*, fake_port: int) -> dict[str, str]:
    return bench_env(
        provider_port=fake_port,
        CALL_PROVIDER="vapi",
        VAPI_API_KEY="bench",
        VAPI_ASSISTANT_ID="assistant-bench",
        VAPI_PHONE_NUMBER_ID="number-bench",
        VAPI_WEBHOOK_SECRET=SECRET,
        VAPI_BASE_URL=f"http://127.0.0.1:{fake_port}",
        PROVIDER_MAX_LIVE_CALLS=f"vapi={CAP}",
        CALL_TIME_WINDOW_MINUTES=WINDOW_MINUTES,
        CALL_AVERAGE_DURATION_SECONDS=int(HOLD_S),
        CALL_MAX_RETRIES=0,
        QUEUE_CONCURRENCY=WORKERS,
        LOG_LEVEL="INFO",
    )


def _seed_one_slot(*, users: int, slot: datetime) -> None:
    """``users`` callable users in UTC whose call time is ``slot`` (to the second), as the
    tick's state is just before it: next_call_at at the slot."""
    joined = "2025-01-01 00:00:00+00"
    lines = (
        f"{i}\t!\t\\N\tf\tu{i}\t\t\t\tf\tt\t{joined}\tUser {i}\t+9180{i:08d}\tUTC\tt\t"
        f"{slot:%H:%M:%S}\t{slot.isoformat()}\n"
        for i in range(1, users + 1)
    )
    seed._copy_lines("users_user", seed.USER_COLUMNS, lines)


def _start_gunicorn(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    output = open(log, "ab")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [PYTHON, "-m", "gunicorn", "relevel.wsgi", "-w", "3", "-b", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=output,
        stderr=output,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return process
        except requests.RequestException:
            pass
        time.sleep(0.2)
    stop_process(process)
    raise RuntimeError(f"gunicorn did not answer /api/health; see {log}")


def _start_fake(*, webhook_port: int) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen(
        [
            PYTHON,
            str(ROOT / "bench" / "fake_provider.py"),
            "--mode",
            "vapi-live",
            "--hold",
            str(HOLD_S),
            "--max-live",
            str(CAP),
            "--delay",
            str(ANSWER_DELAY_S),
            "--webhook-url",
            f"http://127.0.0.1:{webhook_port}/api/webhooks/vapi",
            "--webhook-secret",
            SECRET,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline().strip()
    if not line.isdigit():
        stop_process(process)
        raise RuntimeError("the vapi-live fake provider did not start")
    return process, int(line)


def _start_workers(env: dict[str, str], log: Path) -> subprocess.Popen:
    output = open(log, "ab")  # noqa: SIM115 - closed with the process
    command = [
        PYTHON,
        str(ROOT / "manage.py"),
        "rqworker-pool",
        "daily-calls-tick",
        "daily-calls",
        "--num-workers",
        str(WORKERS),
        "--worker-class",
        "rq.worker.SimpleWorker",
    ]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=output)


def _forecast_for(slot: datetime) -> tuple[int, int | None, int]:
    """(due, capacity, will_miss) of the slot, as capacity_forecast says with the bench's
    settings (the harness process's settings are the bench's CALLKARO ones otherwise)."""
    from django.db import connections
    from django.test.utils import override_settings

    from calls.forecast import capacity_forecast, slot_start

    limits = {name: 0 for name in ("callkaro", "vapi", "retell", "simulator")}
    with override_settings(
        CALL_PROVIDER="vapi",
        PROVIDER_MAX_LIVE_CALLS={**limits, "vapi": CAP},
        PROVIDER_MAX_CALLS_PER_SECOND=limits,
        CALL_AVERAGE_DURATION_SECONDS=int(HOLD_S),
        CALL_TIME_WINDOW_MINUTES=WINDOW_MINUTES,
    ):
        slots = capacity_forecast(now=slot)
    connections.close_all()
    for row in slots:
        if row.start == slot_start(slot):
            return row.due, row.capacity, row.will_miss
    return 0, None, 0


def _job_memory(redis_url: str) -> int:
    """MEMORY USAGE of one queued batch job of 50 calls (its hash and its queue entry),
    enqueued as the tick does and deleted at once."""
    import redis
    from django.db import connections

    from calls import queues

    job_id = "place-calls-9000001"
    queues.enqueue_call_batches({job_id: list(range(9_000_001, 9_000_051))})
    connection = redis.Redis.from_url(redis_url)
    size = int(connection.memory_usage(f"rq:job:{job_id}", samples=0) or 0)
    size += len(job_id) + 24  # its entry in the queue's list
    queues.calls_queue().remove(job_id)
    connection.delete(f"rq:job:{job_id}")
    connections.close_all()
    return size


def _finished_job_memory(redis_url: str) -> int:
    """MEMORY USAGE of one finished batch job kept for JOB_RESULT_TTL (hash and result)."""
    import redis

    connection = redis.Redis.from_url(redis_url)
    for key in connection.scan_iter("rq:job:place-calls-*", count=1000):
        if connection.hget(key, "status") != b"finished":
            continue
        job_id = key.decode().removeprefix("rq:job:")
        total = int(connection.memory_usage(key, samples=0) or 0)
        total += int(connection.memory_usage(f"rq:results:{job_id}", samples=0) or 0)
        return total
    return 0


def _wait_until_settled(*, window_closes: datetime) -> float:
    """Poll the calls until none is on its way (sent, not yet ended) after the window closed;
    returns the seconds waited after it closed."""
    deadline = window_closes + timedelta(seconds=SETTLE_S)
    while True:
        now = datetime.now(UTC)
        with psycopg.connect(BENCH_DSN) as conn:
            (unsettled,) = conn.execute(
                "SELECT count(*) FROM calls_call WHERE status = ANY(%s)", (list(UNSETTLED),)
            ).fetchone()
        if now >= window_closes + timedelta(seconds=HOLD_S + 2) and unsettled == 0:
            return (now - window_closes).total_seconds()
        if now >= deadline:
            say(f"capacity: {unsettled} calls still unsettled {SETTLE_S} s after the window closed")
            return (now - window_closes).total_seconds()
        time.sleep(1.0)


def _measure(stats: dict, *, window: timedelta) -> dict:
    with psycopg.connect(BENCH_DSN) as conn:
        statuses = dict(conn.execute("SELECT status, count(*) FROM calls_call GROUP BY status").fetchall())
        rows = conn.execute(
            "SELECT id, scheduled_for, created_at, status, dialed_at, completed_at FROM calls_call"
        ).fetchall()
    scheduled = {call_id: scheduled_for for call_id, scheduled_for, *_ in rows}
    outside = 0
    for accepted_at, name in stats["accepts"]:
        call_id = int(name.rsplit(" ", 1)[-1]) if name.rsplit(" ", 1)[-1].isdigit() else None
        slot = scheduled.get(call_id)
        accepted = datetime.fromtimestamp(accepted_at, UTC)
        if slot is None or not slot <= accepted < slot + window:
            outside += 1
    # Calls wait from the claim until they leave the queue: dialed (accepted), or ended
    # without a line (missed, failed, canceled). Within the window: after it, nothing waits.
    claimed = min((created for _, _, created, *_ in rows), default=None)
    left = [
        dialed if status in ("ringing", "in_progress", "completed") and dialed else completed
        for _, _, _, status, dialed, completed in rows
    ]
    left = [moment for moment in left if moment is not None]
    first_slot = min(scheduled.values(), default=None)
    utilisation = float("nan")
    waited = (None, None)
    if claimed and left and first_slot:
        until = min(max(left), first_slot + window)
        waited = (claimed, until)
        live = [n for at, n in stats["samples"] if claimed.timestamp() <= at <= until.timestamp()]
        utilisation = statistics.mean(live) / CAP if live else float("nan")
    return {
        "statuses": statuses,
        "outside": outside,
        "utilisation": utilisation,
        "waited": waited,
        "missed": statuses.get("missed", 0),
        # Past its window, never to be dialed: missed as soon as the next tick sweeps it.
        "stale": statuses.get("queued", 0),
        "accepted": len(stats["accepts"]),
        "refused": len(stats["refusals"]),
        "max_live": stats["max_live"],
        "webhooks": (stats["webhooks_sent"], stats["webhooks_failed"]),
    }


def _time_forecast(*, users: int) -> float:
    """Median seconds of capacity_forecast over ``users`` realistic users (bench/seed.py)."""
    from django.db import connections

    from calls.forecast import capacity_forecast

    seed.truncate_all()
    now = datetime.now(UTC)
    seed.seed_population(start=1, count=users, previous_tick=now - timedelta(minutes=5))
    seed.vacuum_analyze()
    times = []
    for _ in range(3):
        started = time.perf_counter()
        capacity_forecast(now=now)
        times.append(time.perf_counter() - started)
    connections.close_all()
    return statistics.median(times)


def run(*, users: int, forecast_users: int, logs: Path) -> Table:
    table = Table(
        f"6. Provider capacity: {users:,} users in one slot, Vapi capped at {CAP} live calls held "
        f"{HOLD_S:.0f} s, a {WINDOW_MINUTES}-minute window"
    )
    dispatcher = (ROOT / "calls" / "dispatch.py").exists()
    seed.truncate_all()
    flush_redis()
    web_port = _free_port()
    fake, fake_port = _start_fake(webhook_port=web_port)
    env = _settings_env(fake_port=fake_port)
    processes: list[subprocess.Popen] = [fake]
    try:
        gunicorn = _start_gunicorn(env, web_port, logs / "capacity-gunicorn.log")
        processes.append(gunicorn)
        queued_job_bytes = _job_memory(env["REDIS_URL"])
        slot = (datetime.now(UTC) + timedelta(seconds=LEAD_S)).replace(microsecond=0)
        window = timedelta(minutes=WINDOW_MINUTES)
        _seed_one_slot(users=users, slot=slot)
        seed.vacuum_analyze()
        due, capacity, will_miss = _forecast_for(slot)
        workers = _start_workers(env, logs / "capacity-workers.log")
        processes.append(workers)
        requests.post(f"http://127.0.0.1:{fake_port}/_reset", timeout=5)
        peak_rss = 0
        while datetime.now(UTC) < slot:
            peak_rss = max(peak_rss, _rss([workers]))
            time.sleep(0.1)
        say(f"capacity: slot {slot:%H:%M:%S}; forecast due={due} capacity={capacity} will_miss={will_miss}")
        tick = subprocess.run(
            [PYTHON, str(ROOT / "manage.py"), "schedule_calls"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        say(f"capacity: {tick.stdout.strip() or tick.stderr.strip()[-300:]}")
        window_closes = slot + window
        while datetime.now(UTC) < window_closes:
            peak_rss = max(peak_rss, _rss([workers]))
            time.sleep(0.2)
        settled_after = _wait_until_settled(window_closes=window_closes)
        stats = requests.get(f"http://127.0.0.1:{fake_port}/_stats", timeout=10).json()
        finished_job_bytes = _finished_job_memory(env["REDIS_URL"])
    finally:
        for process in reversed(processes):
            stop_process(process)
    result = _measure(stats, window=window)

    engine = "calls/dispatch.py present" if dispatcher else "no dispatcher yet (baseline)"
    table.add(
        "max live calls at the fake",
        f"{users:,} due",
        f"{result['max_live']}",
        "",
        f"<= {CAP}",
        met(result["max_live"] <= CAP),
        note=f"{engine}; {result['accepted']:,} accepted, {result['refused']:,} requests refused "
        f"over the cap (HTTP 400 Over Concurrency Limit)",
    )
    table.add(
        "refusals by the fake (requests beyond the cap)",
        f"{users:,} due",
        f"{result['refused']:,}",
        "",
        "0",
        met(result["refused"] == 0),
    )
    claimed, until = result["waited"]
    table.add(
        "cap utilisation while calls waited (mean live / cap)",
        f"{users:,} due",
        "n/a" if result["utilisation"] != result["utilisation"] else f"{result['utilisation']:.0%}",
        "",
        f">= {TARGET_UTILISATION:.0%}",
        met(result["utilisation"] >= TARGET_UTILISATION),
        note=(
            f"from the claim at {_clock(claimed)} to {_clock(until)} "
            f"({(until - claimed).total_seconds():.1f} s; the window closed at {_clock(slot + window)})"
            if claimed and until
            else "no call waited"
        ),
    )
    table.add(
        "calls dialed outside their window (accept time vs slot + window)",
        f"{result['accepted']:,} accepted",
        f"{result['outside']:,}",
        "",
        "0",
        met(result["outside"] == 0),
    )
    missed = result["missed"] + result["stale"]
    share = abs(missed - will_miss) / will_miss if will_miss else float(missed != 0)
    table.add(
        "missed calls vs capacity_forecast's will_miss",
        f"{users:,} due",
        f"{missed:,} missed / {will_miss:,} forecast"
        + (f" ({result['stale']:,} of them still queued past the window)" if result["stale"] else ""),
        f"{share:.1%} apart",
        f"within {TARGET_MISSED_SHARE:.0%}",
        met(share <= TARGET_MISSED_SHARE),
        note=f"forecast for the slot: due {due:,}, capacity {capacity}, will_miss {will_miss:,}; "
        f"statuses {result['statuses']}; settled {settled_after:.0f} s after the window closed; "
        f"webhooks delivered {result['webhooks'][0]:,}, failed {result['webhooks'][1]:,}",
    )
    table.notes.append(
        f"Workers: rqworker-pool --num-workers {WORKERS} (SimpleWorker), peak RSS "
        f"{peak_rss / 2**20:,.0f} MiB for the pool and its workers. Redis: a queued batch job of 50 "
        f"calls is {queued_job_bytes:,} bytes (MEMORY USAGE of its hash, plus its queue entry); a "
        f"finished one, kept JOB_RESULT_TTL, {finished_job_bytes:,} bytes with its result."
    )
    if forecast_users:
        say(f"capacity: timing capacity_forecast over {forecast_users:,} users")
        seconds = _time_forecast(users=forecast_users)
        table.add(
            "capacity_forecast (GET /api/capacity's reads), median of 3",
            f"{forecast_users:,} users",
            fmt_s(seconds),
        )
    seed.truncate_all()
    flush_redis()
    return table
