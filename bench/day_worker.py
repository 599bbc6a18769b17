"""An RQ worker for bench/bench_day.py that accounts each job's CPU to the job's function.

``rqworker-pool ... --worker-class day_worker.TimedWorker``: RQ's SimpleWorker (what
docker-compose runs), plus, around each job, this process's CPU (user + system, all its
threads: a batch's placement threads too) and the CPU of its PostgreSQL backend (the
connection Django holds after the job, read from /proc: the same host), added up per job
function in a Redis hash (``bench:day:jobs``: ``<function>|app``, ``|pg``, ``|n``). What the
worker spends between jobs (waiting on the queues, heartbeats, RQ's scheduler) is left out
here; the bench reads it as the pool's whole CPU less the jobs'.
"""

from __future__ import annotations

import resource

import psutil
from rq.worker import SimpleWorker

JOBS_KEY = "bench:day:jobs"


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _backend_pid() -> int | None:
    from django.db import connection

    raw = connection.connection
    if raw is None or raw.closed:
        return None
    return raw.info.backend_pid


def _backend_cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        times = psutil.Process(pid).cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0
    return times.user + times.system


class TimedWorker(SimpleWorker):
    def perform_job(self, job, queue, *args, **kwargs):
        pid_before = _backend_pid()
        pg_before = _backend_cpu(pid_before)
        app_before = _own_cpu()
        try:
            return super().perform_job(job, queue, *args, **kwargs)
        finally:
            app = _own_cpu() - app_before
            pid_after = _backend_pid()
            pg_after = _backend_cpu(pid_after)
            # A new connection during the job: all of its backend's CPU is the job's.
            pg = pg_after - (pg_before if pid_after == pid_before else 0.0)
            name = job.func_name or "?"
            pipe = self.connection.pipeline(transaction=False)
            pipe.hincrbyfloat(JOBS_KEY, f"{name}|app", app)
            pipe.hincrbyfloat(JOBS_KEY, f"{name}|pg", max(0.0, pg))
            pipe.hincrby(JOBS_KEY, f"{name}|n", 1)
            pipe.execute()
