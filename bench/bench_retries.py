"""Benchmark: the CPU of an outcome retry, from the webhook that schedules it to its placement,
for two checkouts side by side in one run (issue 21's worst stage per call).

    .venv/bin/python bench/bench_retries.py [--retries 200] [--rate 10] [--rounds 2] \
        [--code /work/main] [--code .]

For each checkout (``--code``, repeatable; default this one), in turns, ``--rounds`` times:
RETRIES people whose clock shows noon each have a ringing first attempt; the provider's
no-answer outcome arrives for each, ``--rate`` a second (call_apply_event, the webhook's
service, with its commit and whatever the retry does in Redis after it), the retries are
due at once (CALL_RETRY_DELAY_SECONDS=0), and an in-process RQ worker with the scheduler
releases and runs their jobs, dialing bench/fake_provider.py on 127.0.0.1 (50 ms). At ten a
second and the default RETRY_GATHER_SECONDS (5) a bucket gathers 50 retries, one batch.

Measured in a child process per checkout and round, after a warm-up round of 20 retries:
the webhook side (app CPU of the process, CPU of its PostgreSQL backend, read from /proc: the
same host) and the placement side (each job's app and backend CPU, added up as
bench/day_worker.py does for the day benchmark), per retry. The database is its own
(RELEVEL_BENCH_DB, default relevel_bench) and so is Redis (RELEVEL_BENCH_REDIS_URL): both
emptied between rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH)]

WARM_UP = 20


# --- The child: one checkout, one round --------------------------------------------------------


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _backend_cpu() -> float:
    import psutil
    from django.db import connection

    connection.ensure_connection()
    times = psutil.Process(connection.connection.info.backend_pid).cpu_times()
    return times.user + times.system


def _seed(count: int, *, start: int) -> list[str]:
    """``count`` people at noon with a ringing first attempt each; their provider call ids."""
    from datetime import UTC, datetime, time, timedelta
    from zoneinfo import ZoneInfo

    from calls.models import Call, CallStatus
    from users.models import User

    now = datetime.now(UTC)
    offset = 12 - now.hour
    zone = f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"
    local = now.astimezone(ZoneInfo(zone))
    users = User.objects.bulk_create(
        User(
            username=f"retry{i}",
            name=f"Retry {i}",
            phone=f"+9191{i:08d}",
            local_tz=zone,
            call_time=time(local.hour, local.minute),
        )
        for i in range(start, start + count)
    )
    Call.objects.bulk_create(
        Call(
            user=user,
            to_number=user.phone,
            agent_id="agent-bench",
            local_date=local.date(),
            status=CallStatus.RINGING,
            provider="callkaro",
            provider_call_id=f"bench-{user.pk}",
            scheduled_for=now - timedelta(minutes=2),
            dialed_at=now - timedelta(minutes=1),
        )
        for user in users
    )
    return [f"bench-{user.pk}" for user in users]


def _webhooks(provider_call_ids: list[str], *, rate: float) -> tuple[float, float]:
    """The no-answer outcome of each call, ``rate`` a second; (app, PostgreSQL) CPU seconds."""
    from calls import outcomes
    from calls.providers.base import CallEvent

    app, pg = _own_cpu(), _backend_cpu()
    started = time.monotonic()
    for index, provider_call_id in enumerate(provider_call_ids):
        wait = started + index / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        result = outcomes.call_apply_event(
            event=CallEvent(
                provider_call_id=provider_call_id, status="no_answer", raw={"status": "no_answer"}
            )
        )
        assert result.retry_scheduled, provider_call_id
    return _own_cpu() - app, _backend_cpu() - pg


def _release() -> dict[str, list[float]]:
    """Run every retry's job once it is due; {job function: [app s, PostgreSQL s, jobs]}."""
    from django.db import connection
    from rq import SimpleWorker
    from rq.registry import ScheduledJobRegistry

    from calls import queues
    from calls.models import Call, CallStatus

    spent: dict[str, list[float]] = {}

    class TimedWorker(SimpleWorker):
        def perform_job(self, job, queue, *args, **kwargs):
            pid = connection.connection.info.backend_pid if connection.connection else None
            pg, app = (_backend_cpu() if pid else 0.0), _own_cpu()
            try:
                return super().perform_job(job, queue, *args, **kwargs)
            finally:
                row = spent.setdefault(job.func_name, [0.0, 0.0, 0])
                row[0] += _own_cpu() - app
                same = connection.connection is not None and connection.connection.info.backend_pid == pid
                row[1] += _backend_cpu() - (pg if same else 0.0)
                row[2] += 1

    queue = queues.calls_queue()
    registry = ScheduledJobRegistry(queue=queue)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        TimedWorker([queue], connection=queue.connection).work(burst=True, with_scheduler=True)
        if not len(registry) and not queue.count:
            break
        time.sleep(0.5)
    left = Call.objects.filter(attempt=2, status=CallStatus.QUEUED).count()
    assert not left, f"{left} retries were not placed"
    return spent


def child(*, retries: int, rate: float) -> None:
    import django

    django.setup()
    from calls.models import Call, CallStatus

    ids = _seed(WARM_UP, start=0)
    _webhooks(ids, rate=1000)
    _release()
    ids = _seed(retries, start=WARM_UP)
    webhook_app, webhook_pg = _webhooks(ids, rate=rate)
    spent = _release()
    placed = Call.objects.filter(attempt=2, status=CallStatus.RINGING).count() - WARM_UP
    print(
        json.dumps(
            {
                "retries": retries,
                "placed": placed,
                "webhook": [webhook_app, webhook_pg],
                "jobs": spent,
                "gather": os.environ.get("RETRY_GATHER_SECONDS", ""),
            }
        )
    )


# --- The parent: the checkouts in turns ---------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retries", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0, help="outcomes a second (default 10)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--code", action="append", help="a checkout to measure (repeatable; default this one)"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(retries=args.retries, rate=args.rate)
        return 0

    import harness
    import seed

    codes = [Path(code).resolve() for code in (args.code or [BENCH.parent])]
    harness.create_bench_db()
    provider = harness.FakeProvider(delay=0.05)
    results: dict[Path, list[dict]] = {code: [] for code in codes}
    try:
        env = harness.bench_env(provider_port=provider.port, CALL_RETRY_DELAY_SECONDS=0, LOG_LEVEL="WARNING")
        harness.migrate(env)
        for round_number in range(args.rounds):
            for code in codes:
                seed.truncate_all()
                harness.flush_redis()
                harness.say(f"round {round_number + 1}: {code}")
                out = subprocess.run(
                    [sys.executable, __file__, "--child", f"--retries={args.retries}", f"--rate={args.rate}"],
                    cwd=code,
                    env={**env, "PYTHONPATH": str(code)},
                    check=True,
                    capture_output=True,
                    text=True,
                    timeout=900,
                )
                results[code].append(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        provider.stop()
        harness.flush_redis()
        harness.drop_bench_db()

    print(
        f"\n{args.retries} retries a round, {args.rate:g} outcomes a second, {args.rounds} rounds; "
        "CPU ms per retry, the rounds' median\n"
    )
    print("| checkout | webhook app | webhook PostgreSQL | jobs app | jobs PostgreSQL | jobs | total |")
    print("|---|---|---|---|---|---|---|")
    for code, rounds in results.items():

        def per_retry(value, rounds=rounds) -> float:
            return statistics.median(value(r) / r["retries"] * 1000 for r in rounds)

        webhook_app = per_retry(lambda r: r["webhook"][0])
        webhook_pg = per_retry(lambda r: r["webhook"][1])
        jobs_app = per_retry(lambda r: sum(row[0] for row in r["jobs"].values()))
        jobs_pg = per_retry(lambda r: sum(row[1] for row in r["jobs"].values()))
        jobs = statistics.median(sum(row[2] for row in r["jobs"].values()) for r in rounds)
        total = webhook_app + webhook_pg + jobs_app + jobs_pg
        print(
            f"| {code} | {webhook_app:.2f} | {webhook_pg:.2f} | {jobs_app:.2f} | {jobs_pg:.2f} "
            f"| {jobs:g} | {total:.2f} |"
        )
    print("\nEach round's jobs {function: [app s, PostgreSQL s, jobs]} and retries placed:")
    for code, rounds in results.items():
        for r in rounds:
            print(f"  {code}: {json.dumps(r['jobs'])}, {r['placed']} placed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
