"""A Redis that accepts connections but never answers costs a web request a few seconds
(REDIS_SOCKET_TIMEOUT), never gunicorn's whole worker timeout; the webhook still answers."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from calls.models import Call, CallStatus
from tests.fakes import SilentServer
from tests.test_webhook import event, post

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 1.0
# The timeout, plus the time the request itself takes on a loaded 2-core machine; far
# below the 30 s a request waited before (and gunicorn's worker timeout).
WITHIN = 4 * TIMEOUT


@pytest.fixture
def hung_redis(settings):
    server = SilentServer().start()
    settings.REDIS_SOCKET_TIMEOUT = TIMEOUT
    settings.RQ_QUEUES = {name: {**config, "URL": server.url} for name, config in settings.RQ_QUEUES.items()}
    yield server
    server.stop()


def timed(func):
    started = time.monotonic()
    result = func()
    return result, time.monotonic() - started


@pytest.mark.django_db(transaction=True)  # the retry's job is enqueued at commit, in the request
@pytest.mark.usefixtures("on_the_calls_day")  # the retry falls on the call's local day
def test_a_webhook_that_schedules_a_retry_answers_in_seconds_and_keeps_the_retry(
    hung_redis, make_call, client, caplog
):
    call = make_call(status=CallStatus.RINGING, provider_call_id="ck-3003")
    with caplog.at_level(logging.ERROR, logger="relevel.calls"):
        response, elapsed = timed(lambda: post(client, event(call, "no_answer")))
    assert hung_redis.accepted, "the webhook never reached the hung Redis"
    assert elapsed < WITHIN, f"the webhook took {elapsed:.1f} s"
    assert response.status_code == 200 and response.json()["retry_scheduled"] is True
    # The retry row is committed and queued: the first tick after it is due enqueues it.
    assert Call.objects.get(retry_of=call).status == CallStatus.QUEUED
    assert "Redis unreachable (TimeoutError)" in caplog.text


@pytest.mark.django_db
def test_health_says_redis_is_down_in_seconds(hung_redis, client):
    response, elapsed = timed(lambda: client.get("/api/health"))
    assert elapsed < WITHIN, f"/api/health took {elapsed:.1f} s"
    assert response.status_code == 503 and response.json()["redis"] == "down"


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), [("get", "/api/queue/status"), ("post", "/api/queue/trigger")])
def test_the_operator_api_says_redis_is_unavailable_in_seconds(hung_redis, client, settings, method, path):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {settings.QUEUE_API_TOKEN}"}
    response, elapsed = timed(lambda: getattr(client, method)(path, **headers))
    assert elapsed < WITHIN, f"{path} took {elapsed:.1f} s"
    assert response.status_code == 503


@pytest.mark.django_db
def test_the_admin_queues_page_reports_each_queue_unhealthy_in_seconds(hung_redis, client, settings):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {settings.QUEUE_API_TOKEN}"}
    response, elapsed = timed(lambda: client.get("/api/admin/queues", **headers))
    # One timeout per queue.
    assert elapsed < len(settings.RQ_QUEUES) * WITHIN, f"/api/admin/queues took {elapsed:.1f} s"
    assert response.status_code == 503
    assert {queue["health"] for queue in response.json()["queues"]} == {"unhealthy"}


def test_django_rqs_own_connections_dashboard_workers_scheduler_get_the_timeout_too():
    # The dashboard, the workers and rqscheduler connect through django-rq, from RQ_QUEUES:
    # run as a process is configured, against the hung Redis, with REDIS_SOCKET_TIMEOUT=1.
    server = SilentServer().start()
    probe = (
        "import json, time, django, django_rq\n"
        "django.setup()\n"
        "started = time.monotonic()\n"
        "try:\n"
        "    django_rq.get_connection('daily-calls').ping()\n"
        "    error = None\n"
        "except Exception as exc:\n"
        "    error = type(exc).__name__\n"
        "print(json.dumps({'error': error, 'elapsed': time.monotonic() - started}))\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "relevel.settings_test",
        "REDIS_URL": server.url,
        "REDIS_SOCKET_TIMEOUT": str(TIMEOUT),
    }
    try:
        result = subprocess.run(
            [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["error"] == "TimeoutError" and outcome["elapsed"] < WITHIN, outcome


def test_a_timeout_written_in_redis_url_is_kept():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "relevel.settings_test",
        "REDIS_URL": "redis://127.0.0.1:6379/3?socket_timeout=12",
    }
    probe = "from relevel import settings_test as s; print(s.RQ_QUEUES['daily-calls']['URL'])"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "redis://127.0.0.1:6379/3?socket_timeout=12&socket_connect_timeout=5.0"
