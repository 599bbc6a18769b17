"""Benchmark 4: enqueueing jobs, one by one (queue.enqueue) against pipelined enqueue_many.

The tick enqueues its batch jobs with queues.enqueue_call_batches (Queue.enqueue_many in
one pipeline); retries and stranded calls go one by one through queues.enqueue_place_call,
which also checks for a live job of the same id first.
"""

from __future__ import annotations

from django.conf import settings

from harness import Table, flush_redis, median, met, say, timed


def run(*, jobs: int, repeats: int = 3) -> Table:
    from calls import queues
    from calls.jobs import place_call

    table = Table("4. Enqueue (Redis DB 9)")
    queue = queues.calls_queue()
    options = {"result_ttl": settings.JOB_RESULT_TTL, "failure_ttl": settings.JOB_FAILURE_TTL}

    def one_by_one() -> int:
        for i in range(jobs):
            queue.enqueue(place_call, i, job_id=queues.call_job_id(i), **options)
        return jobs

    def pipelined() -> int:
        # One batch of one call per job, so that the job count matches one_by_one's.
        return queues.enqueue_call_batches({f"bench-{i}": [i] for i in range(jobs)})

    def per_call_service() -> int:
        small = jobs // 5  # the slowest path; fewer jobs keep the run short
        for i in range(small):
            queues.enqueue_place_call(i, retry_intervals=[2, 4])
        return small

    results: dict[str, tuple[float, int]] = {}
    for name, func in (("one by one", one_by_one), ("pipelined", pipelined), ("service", per_call_service)):
        runs = []
        for _ in range(repeats):
            flush_redis()
            seconds, count = timed(func)
            runs.append(count / seconds)
        results[name] = (median(runs), count)
    flush_redis()

    fast, slow, service = results["pipelined"][0], results["one by one"][0], results["service"][0]
    table.add(
        "enqueue_many, one pipeline (queues.enqueue_call_batches)",
        f"{jobs:,} jobs",
        f"{fast:,.0f} jobs/s",
        f"{fast / slow:.1f}x one-by-one",
        ">= one-by-one (tick uses this path)",
        met(fast >= slow),
    )
    table.add("queue.enqueue one by one", f"{jobs:,} jobs", f"{slow:,.0f} jobs/s", "1.0x", "", "")
    table.add(
        "queues.enqueue_place_call (retries, stranded calls)",
        f"{results['service'][1]:,} jobs",
        f"{service:,.0f} jobs/s",
        f"{service / slow:.2f}x one-by-one",
        "",
        "",
        note="checks for a live job of the same id, then enqueues with unique=True: 3+ round trips a job",
    )
    say(f"enqueue: pipelined {fast:,.0f}/s, one by one {slow:,.0f}/s, service {service:,.0f}/s")
    return table
