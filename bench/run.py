"""relevel's benchmarks (issue 5): one command, a table per benchmark.

    python bench/run.py            # full run (~6 min on 2 cores)
    python bench/run.py --quick    # smaller sizes (~3 min)
    python bench/run.py --only NAME [--only ...]   # NAME: one of BENCHMARKS below
    python bench/run.py --profile  # also write cProfile/EXPLAIN output to bench/out/
    python bench/run.py --only webhook --webhook-rounds 6   # trees interleaved, CPU per round
    python bench/run.py --only day [--quick]   # issue 21: a day, 1M users (~20 min; quick 100k, ~12 min)

Each benchmark measures the alternative side by side in the same run, so the ratios hold
on a noisy machine. The run creates and migrates its own PostgreSQL database
(relevel_bench), uses Redis DB 9 (flushed before and after), talks to 127.0.0.1 only, and
drops the database at the end, also on Ctrl-C. See BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

import harness  # noqa: E402
from harness import say  # noqa: E402

BENCHMARKS = (
    *("tick", "placement", "webhook", "enqueue", "import"),
    *("dashboard", "capacity", "ontime", "events", "analysis", "storage", "day"),
)
# Run only when named with --only: the dashboard's seeds ~36M calls (about 20 minutes); the
# on-time one waits for real cron ticks (about 7 minutes).
# The storage one seeds ~4M calls with their transcripts and payloads (~10 minutes).
# The day (issue 21): 1M users' ticks and a 20,000-person sample end to end (~20 minutes).
ON_REQUEST = ("dashboard", "ontime", "storage", "day")


def main() -> int:
    parser = argparse.ArgumentParser(description="Run relevel's benchmarks and print a table per benchmark.")
    parser.add_argument("--quick", action="store_true", help="smaller sizes: 10k/100k users, rush 20k")
    parser.add_argument(
        "--only", action="append", choices=BENCHMARKS, help="run only this benchmark (repeatable)"
    )
    parser.add_argument(
        "--placement-config",
        action="append",
        metavar="QxCbB",
        help="placement setting to run instead of the default list, e.g. 4x80b40 (QUEUE_CONCURRENCY x "
        "PROVIDER_MAX_CONCURRENCY, CALL_BATCH_SIZE); suffix -pool for docker-compose's rqworker-pool "
        "command (repeatable)",
    )
    parser.add_argument(
        "--webhook-rounds",
        type=int,
        metavar="K",
        help="webhook: serve each tree K times, taking turns, and report CPU per request per round "
        "and the rounds' median (default 1 with --quick, else 2)",
    )
    parser.add_argument("--profile", action="store_true", help="write profiles and query plans to bench/out/")
    args = parser.parse_args()
    selected = args.only or [name for name in BENCHMARKS if name not in ON_REQUEST]
    out = BENCH / "out" if args.profile else None
    if out is not None:
        out.mkdir(exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix="relevel-bench-"))

    started = time.perf_counter()
    tables = []
    provider = None
    harness.create_bench_db()
    try:
        harness.flush_redis()
        provider = harness.FakeProvider(delay=0.2)
        env = harness.bench_env(provider_port=provider.port)
        os.environ.update(env)
        # The harness itself logs warnings only; workers and gunicorn log at INFO to files.
        os.environ["LOG_LEVEL"] = "WARNING"
        say(f"database {harness.BENCH_DB} created; migrating; logs in {logs}")
        harness.migrate(env)

        import django

        django.setup()

        if "tick" in selected:
            import bench_tick

            tables.append(
                bench_tick.run(
                    sizes=[10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000],
                    rush=20_000 if args.quick else 100_000,
                    repeats=3 if args.quick else 5,
                    naive_repeats=1,
                    out=out,
                )
            )
            print(tables[-1].render() + "\n", file=sys.stderr, flush=True)
        if "enqueue" in selected:
            import bench_enqueue

            tables.append(bench_enqueue.run(jobs=2_000 if args.quick else 10_000))
            print(tables[-1].render() + "\n", file=sys.stderr, flush=True)
        if "import" in selected:
            import bench_import

            tables.append(
                bench_import.run(
                    rows=20_000 if args.quick else 100_000, naive_rows=500 if args.quick else 2_000
                )
            )
            print(tables[-1].render() + "\n", file=sys.stderr, flush=True)
        if "dashboard" in selected:
            import bench_dashboard

            # 1M users x 30 days is ~36M calls: seeding takes minutes, reported apart.
            tables.append(bench_dashboard.run(users=100_000 if args.quick else 1_000_000))
            print(tables[-1].render() + "\n", file=sys.stderr, flush=True)
        if "placement" in selected:
            import bench_placement

            tables.append(
                bench_placement.run(
                    calls=2_000 if args.quick else 5_000,
                    original_calls=200 if args.quick else 500,
                    provider=provider,
                    quick=args.quick,
                    logs=logs,
                    out=out,
                    specs=args.placement_config,
                )
            )
            print(tables[-1].render() + "\n", file=sys.stderr, flush=True)
        if "webhook" in selected:
            import bench_webhook

            tables.append(
                bench_webhook.run(
                    calls=2_000 if args.quick else 6_000,
                    quick=args.quick,
                    logs=logs,
                    rounds=args.webhook_rounds,
                    out=out,
                )
            )
            print(tables[-1].render() + "\n", file=sys.stderr, flush=True)
        if "ontime" in selected:
            import bench_ontime

            tables.append(bench_ontime.run(users=300 if args.quick else 600, logs=logs))
        if "analysis" in selected:
            import bench_analysis

            tables.append(bench_analysis.run(calls=1_500 if args.quick else 6_000))
            print(tables[-1].render() + "\n", file=sys.stderr, flush=True)
        if "storage" in selected:
            import bench_storage

            tables.append(bench_storage.run(users=10_000 if args.quick else 100_000, days=30))
            print(tables[-1].render() + "\n", file=sys.stderr, flush=True)
        if "day" in selected:
            import bench_day

            tables.append(
                bench_day.run(
                    users=100_000 if args.quick else 1_000_000,
                    sample=2_000 if args.quick else 21_000,
                    day_seconds=240 if args.quick else 540,
                    retry_delay=10 if args.quick else 20,
                    logs=logs,
                )
            )
            print(tables[-1].render() + "\n", file=sys.stderr, flush=True)
        if "capacity" in selected:
            import bench_capacity

            tables.append(
                bench_capacity.run(
                    users=5_000, forecast_users=100_000 if args.quick else 1_000_000, logs=logs
                )
            )
            print(tables[-1].render() + "\n", file=sys.stderr, flush=True)
        if "events" in selected:
            import bench_events

            tables.append(
                bench_events.run(
                    users=2_000 if args.quick else 10_000,
                    calls=2_000 if args.quick else 4_000,
                    events=1_000 if args.quick else 3_000,
                    logs=logs,
                    repeats=3,
                    out=out,
                )
            )
            print(tables[-1].render() + "\n", file=sys.stderr, flush=True)
    finally:
        from django.db import connections

        connections.close_all()
        if provider is not None:
            provider.stop()
        harness.flush_redis()
        harness.drop_bench_db()
        say(f"database {harness.BENCH_DB} dropped, Redis DB 9 flushed")

    info = {**harness.machine(), **harness.versions()}
    print("# relevel benchmarks" + (" (--quick)" if args.quick else ""))
    print(
        f"machine: {info['nproc']} cores, {info['cpu']}, {info['ram']} RAM; "
        f"PostgreSQL {info['postgresql']}, Redis {info['redis']}; "
        f"total {time.perf_counter() - started:.0f} s\n"
    )
    for table in tables:
        print(table.render() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
