"""`manage.py rqscheduler` rides out a Redis outage and enqueues the tick once Redis is back.

Suspected and confirmed: RQ's CronScheduler.start catches no Redis error, so stopping Redis
for a moment ended the process (and every tick after it, until someone restarted it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import redis

from tests.fakes import RedisServer

ROOT = Path(__file__).resolve().parent.parent
TICK_QUEUE_KEY = "rq:queue:daily-calls-tick"


def wait_until(condition, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def ticks_enqueued(url: str) -> int:
    try:
        return redis.Redis.from_url(url, socket_timeout=1).llen(TICK_QUEUE_KEY)
    except redis.RedisError:
        return 0


@pytest.mark.slow
def test_rqscheduler_keeps_running_through_a_redis_outage_and_enqueues_afterwards():
    server = RedisServer().start()
    # The child appends (O_APPEND) and the test reads the file by name: a shared file
    # offset would let the test's seek-and-read race the child's writes.
    log_dir = tempfile.TemporaryDirectory()
    log_path = Path(log_dir.name) / "rqscheduler.log"
    log = open(log_path, "a")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "relevel.settings_test",
        "REDIS_URL": server.url,
        "SCHEDULE_CRON": "* * * * * */2",  # every 2 seconds (croniter's sixth field)
        # Only ticks on the tick queue, which is what this test counts.
        "DASHBOARD_REFRESH_CRON": "",
    }
    process = subprocess.Popen(
        [sys.executable, "manage.py", "rqscheduler"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )

    def output() -> str:
        return log_path.read_text()

    try:
        wait_until(lambda: ticks_enqueued(server.url) >= 1, timeout=30, what="the first tick")

        server.stop()  # a Redis restart, a failover, a network blip
        time.sleep(5)  # several of the scheduler's loops meet a refused connection
        assert process.poll() is None, f"rqscheduler exited during the outage:\n{output()}"
        assert "Redis unreachable (ConnectionError" in output()

        server.start()  # back, and empty (this Redis keeps nothing on disk)
        wait_until(lambda: ticks_enqueued(server.url) >= 1, timeout=30, what="a tick after the outage")
        assert process.poll() is None
        # The tick is in Redis a moment before the scheduler's loop logs its recovery.
        wait_until(lambda: "Redis answers again after" in output(), timeout=10, what="the recovery line")
        assert process.poll() is None

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0, output()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        server.cleanup()
        log.close()
        log_dir.cleanup()
