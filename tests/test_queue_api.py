"""Operator endpoints: POST /api/queue/trigger, GET /api/queue/status, GET /api/admin/queues."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client
from rq import SimpleWorker, Worker
from rq.job import Job

from calls.queues import calls_queue, tick_queue

TOKEN = "test-queue-token-0123456789abcdefgh"  # settings_test's
TRIGGER, STATUS, QUEUES = "/api/queue/trigger", "/api/queue/status", "/api/admin/queues"
# (method, path, the status code an authorised caller gets)
ENDPOINTS = [("post", TRIGGER, 202), ("get", STATUS, 200), ("get", QUEUES, 200)]
DOWN_URL = "redis://:hunter2@127.0.0.1:1/0"  # nothing listens on port 1


def succeed() -> str:
    return "ok"


def fail() -> None:
    raise RuntimeError("boom")


def bearer(token: str = TOKEN) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def request(client: Client, method: str, path: str, **extra):
    return getattr(client, method)(path, **extra)


@pytest.fixture
def staff_client(make_user):
    client = Client()
    client.force_login(make_user(is_staff=True))
    return client


@pytest.fixture
def redis_down(settings):
    settings.RQ_QUEUES = {name: {**config, "URL": DOWN_URL} for name, config in settings.RQ_QUEUES.items()}


def queued_job_ids() -> list[str]:
    """Ticks waiting to run: the manual trigger's jobs go on the tick's own queue."""
    return tick_queue().get_job_ids()


# --- Authentication -------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "ok"), ENDPOINTS)
def test_anonymous_callers_get_401(method, path, ok, client, redis_conn):
    response = request(client, method, path)
    assert response.status_code == 401
    assert response.json()["success"] is False
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert queued_job_ids() == []


@pytest.mark.parametrize(("method", "path", "ok"), ENDPOINTS)
def test_logged_in_users_who_are_not_staff_get_403(method, path, ok, client, make_user, redis_conn):
    client.force_login(make_user(is_staff=False))
    response = request(client, method, path)
    assert response.status_code == 403
    assert response.json() == {"success": False, "error": "staff access required"}
    assert queued_job_ids() == []


@pytest.mark.parametrize(("method", "path", "ok"), ENDPOINTS)
def test_staff_sessions_are_let_in(method, path, ok, staff_client):
    response = request(staff_client, method, path)
    assert response.status_code == ok
    assert response.json()["success"] is True


@pytest.mark.parametrize(("method", "path", "ok"), ENDPOINTS)
def test_the_bearer_token_lets_scripts_in(method, path, ok, client, db):
    response = request(client, method, path, **bearer())
    assert response.status_code == ok
    assert response.json()["success"] is True


@pytest.mark.parametrize(("method", "path", "ok"), ENDPOINTS)
def test_a_wrong_token_is_403(method, path, ok, client, db, redis_conn):
    response = request(client, method, path, **bearer("nope"))
    assert response.status_code == 403
    assert response.json() == {"success": False, "error": "invalid API token"}
    assert queued_job_ids() == []


@pytest.mark.parametrize(("method", "path", "ok"), ENDPOINTS)
def test_a_token_wins_over_a_staff_session(method, path, ok, staff_client):
    """A request that names a token is judged on it, whatever cookie comes along."""
    assert request(staff_client, method, path, **bearer("nope")).status_code == 403


@pytest.mark.parametrize("authorization", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", TOKEN])
def test_an_authorization_header_that_is_not_a_bearer_token_is_401(authorization, client, db):
    response = client.get(STATUS, HTTP_AUTHORIZATION=authorization)
    assert response.status_code == 401
    assert response.json() == {"success": False, "error": "Authorization header must be 'Bearer <token>'"}


def test_a_non_ascii_token_is_403_not_500(client, db):
    assert client.get(STATUS, HTTP_AUTHORIZATION="Bearer tést").status_code == 403


@pytest.mark.parametrize(("method", "path", "ok"), ENDPOINTS)
def test_token_auth_is_off_when_no_token_is_configured(method, path, ok, client, staff_client, settings):
    settings.QUEUE_API_TOKEN = ""
    refused = request(client, method, path, **bearer(""))
    assert refused.status_code == 401  # "Bearer " with nothing after it
    refused = request(client, method, path, **bearer("anything"))
    assert refused.status_code == 403
    assert refused.json()["error"] == "token authentication is disabled (QUEUE_API_TOKEN is not set)"
    assert request(staff_client, method, path).status_code == ok


def test_csrf_is_enforced_for_session_posts(make_user, redis_conn):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user(is_staff=True))
    refused = client.post(TRIGGER)
    assert refused.status_code == 403
    assert refused.json()["error"].startswith("CSRF verification failed")
    assert queued_job_ids() == []

    token = "a" * 32
    client.cookies["csrftoken"] = token
    accepted = client.post(TRIGGER, HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 202
    assert queued_job_ids() == [accepted.json()["jobId"]]


def test_csrf_is_not_asked_of_token_callers(db, redis_conn):
    response = Client(enforce_csrf_checks=True).post(TRIGGER, **bearer())
    assert response.status_code == 202


@pytest.mark.parametrize(
    ("method", "path"), [("get", TRIGGER), ("delete", TRIGGER), ("post", STATUS), ("put", QUEUES)]
)
def test_other_methods_are_a_json_405(method, path, staff_client):
    response = request(staff_client, method, path)
    assert response.status_code == 405
    assert response.json()["success"] is False


# --- Trigger --------------------------------------------------------------------------------


def test_trigger_enqueues_one_scheduling_tick(staff_client, redis_conn):
    response = staff_client.post(TRIGGER)
    body = response.json()
    assert response.status_code == 202
    assert body == {
        "success": True,
        "jobId": body["jobId"],
        "message": "Daily calls scheduler triggered successfully",
    }
    job = Job.fetch(body["jobId"], connection=redis_conn)
    assert job.func_name == "calls.jobs.schedule_calls"
    assert queued_job_ids() == [job.id]


def test_the_sixth_trigger_within_a_minute_is_429_with_retry_after(staff_client, redis_conn):
    answers = [staff_client.post(TRIGGER).status_code for _ in range(6)]
    assert answers == [202] * 5 + [429]
    limited = staff_client.post(TRIGGER)
    assert limited.status_code == 429
    assert limited.json()["success"] is False and "rate limit exceeded" in limited.json()["error"]
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert len(queued_job_ids()) == 5


def test_the_rate_limit_counts_each_caller_separately(staff_client, make_user, client, redis_conn):
    for _ in range(5):
        staff_client.post(TRIGGER)
    assert staff_client.post(TRIGGER).status_code == 429

    other_staff = Client()
    other_staff.force_login(make_user(is_staff=True))
    assert other_staff.post(TRIGGER).status_code == 202
    assert client.post(TRIGGER, **bearer()).status_code == 202


def test_the_rate_limit_counter_expires_with_its_window(staff_client, redis_conn):
    staff_client.post(TRIGGER)
    [key] = redis_conn.keys("relevel:ratelimit:*")
    assert 0 < redis_conn.ttl(key) <= 60
    redis_conn.delete(key)  # what Redis does when the minute is over
    for _ in range(5):
        assert staff_client.post(TRIGGER).status_code == 202


def test_trigger_is_503_when_redis_is_down(staff_client, redis_down):
    response = staff_client.post(TRIGGER)
    assert response.status_code == 503
    assert response.json()["success"] is False
    assert response.json()["error"].startswith("Redis is unavailable: ConnectionError")
    assert "hunter2" not in response.content.decode()


# --- Status ---------------------------------------------------------------------------------


def _fill_queue(redis_conn) -> None:
    """1 finished, 1 failed, 1 started (abandoned), 2 waiting, 1 scheduled, 1 worker."""
    queue = calls_queue()
    queue.enqueue(succeed)
    queue.enqueue(fail)
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    queue.enqueue(succeed)
    queue.enqueue(succeed)
    queue.enqueue_in(timedelta(hours=1), succeed)
    # A job whose worker died: its entry in the started registry is already expired, so
    # RQ's clean-up would move it to "failed". Reading the status must not.
    started = queue.enqueue(succeed)
    queue.remove(started)
    redis_conn.zadd(queue.started_job_registry.key, {f"{started.id}:execution-1": 1})
    Worker([queue], connection=redis_conn, name="worker-a").register_birth()


def test_status_reports_every_count_and_the_next_cron_run(staff_client, redis_conn, settings):
    settings.SCHEDULE_CRON = "*/5 * * * *"
    _fill_queue(redis_conn)
    tick_queue().enqueue(succeed)  # a triggered tick waiting
    with time_machine.travel(datetime(2026, 11, 28, 15, 2, 30, tzinfo=UTC), tick=False):
        response = staff_client.get(STATUS)
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "queue": {
            "name": "daily-calls",
            "health": "healthy",
            "active": 1,
            "waiting": 2,
            "failed": 1,
            "completed": 1,
            "delayed": 1,
            "overdue": 0,
            "workers": 1,
            "crons": [
                {
                    "name": "schedule-calls",
                    "cron": "*/5 * * * *",
                    "next": int(datetime(2026, 11, 28, 15, 5, tzinfo=UTC).timestamp() * 1000),
                }
            ],
        },
        # Both queues: the calls queue as above (without its crons), then the tick queue,
        # with the cron that feeds it.
        "queues": [
            {
                "name": "daily-calls",
                "health": "healthy",
                "active": 1,
                "waiting": 2,
                "failed": 1,
                "completed": 1,
                "delayed": 1,
                "overdue": 0,
                "workers": 1,
            },
            {
                "name": "daily-calls-tick",
                "health": "healthy",
                "active": 0,
                "waiting": 1,
                "failed": 0,
                "completed": 0,
                "delayed": 0,
                "overdue": 0,
                "workers": 0,
                "crons": [
                    {
                        "name": "schedule-calls",
                        "cron": "*/5 * * * *",
                        "next": int(datetime(2026, 11, 28, 15, 5, tzinfo=UTC).timestamp() * 1000),
                    }
                ],
            },
            # The notifications' queue (docs/notifications.md), idle.
            {
                "name": "notifications",
                "health": "healthy",
                "active": 0,
                "waiting": 0,
                "failed": 0,
                "completed": 0,
                "delayed": 0,
                "overdue": 0,
                "workers": 0,
            },
            # Events to the product's app (docs/events.md), idle.
            {
                "name": "relevel-events",
                "health": "healthy",
                "active": 0,
                "waiting": 0,
                "failed": 0,
                "completed": 0,
                "delayed": 0,
                "overdue": 0,
                "workers": 0,
            },
        ],
    }
    # Read-only: the expired started entry is still there, nothing moved to failed.
    assert redis_conn.zcard(calls_queue().started_job_registry.key) == 1
    assert redis_conn.zcard(calls_queue().failed_job_registry.key) == 1


def test_status_counts_delayed_jobs_nobody_released_in_time_as_overdue(staff_client, redis_conn):
    """No worker runs RQ's scheduler (--with-scheduler): retries wait in the scheduled
    registry past their time. Five minutes past it, they are overdue."""
    queue = calls_queue()
    for minutes in (4, 6, 60):
        queue.enqueue_at(datetime(2026, 11, 28, 15, 0, tzinfo=UTC) - timedelta(minutes=minutes), succeed)
    queue.enqueue_at(datetime(2026, 11, 28, 16, 0, tzinfo=UTC), succeed)
    with time_machine.travel(datetime(2026, 11, 28, 15, 0, tzinfo=UTC), tick=False):
        body = staff_client.get(STATUS).json()["queue"]
    assert (body["delayed"], body["overdue"]) == (4, 2)


def test_status_computes_the_next_run_of_the_configured_cron_in_utc(staff_client, settings, redis_conn):
    settings.SCHEDULE_CRON = "30 20 * * *"
    with time_machine.travel(datetime(2026, 11, 28, 21, 0, tzinfo=UTC), tick=False):
        crons = staff_client.get(STATUS).json()["queue"]["crons"]
    assert crons == [
        {
            "name": "schedule-calls",
            "cron": "30 20 * * *",
            "next": int(datetime(2026, 11, 29, 20, 30, tzinfo=UTC).timestamp() * 1000),
        }
    ]


def test_status_of_an_empty_queue_is_all_zeros(staff_client, redis_conn):
    queue = staff_client.get(STATUS).json()["queue"]
    counts = {key: queue[key] for key in ("active", "waiting", "failed", "completed", "delayed", "workers")}
    assert set(counts.values()) == {0}


def test_status_is_503_unhealthy_when_redis_is_down(staff_client, redis_down):
    response = staff_client.get(STATUS)
    body = response.json()
    assert response.status_code == 503
    assert body["success"] is False
    assert body["queue"]["name"] == "daily-calls" and body["queue"]["health"] == "unhealthy"
    assert body["queue"]["reason"].startswith("ConnectionError: Error 111 connecting to 127.0.0.1:1")
    assert "\n" not in body["queue"]["reason"] and "Traceback" not in response.content.decode()
    assert "hunter2" not in response.content.decode()
    assert [(q["name"], q["health"]) for q in body["queues"]] == [
        ("daily-calls", "unhealthy"),
        ("daily-calls-tick", "unhealthy"),
        ("notifications", "unhealthy"),
        ("relevel-events", "unhealthy"),
    ]


# --- All queues -----------------------------------------------------------------------------


def test_admin_queues_lists_every_queue_the_dashboard_and_the_endpoints(staff_client, settings, redis_conn):
    settings.RQ_QUEUES = {**settings.RQ_QUEUES, "other": dict(settings.RQ_QUEUES["daily-calls"])}
    calls_queue().enqueue(succeed)
    response = staff_client.get(QUEUES)
    body = response.json()
    assert response.status_code == 200 and body["success"] is True
    assert body["dashboard"] == "/django-rq/"
    idle = {
        "health": "healthy",
        "active": 0,
        "waiting": 0,
        "completed": 0,
        "failed": 0,
        "delayed": 0,
        "overdue": 0,
        "workers": 0,
    }
    assert body["queues"] == [
        {**idle, "name": "daily-calls", "waiting": 1},
        {**idle, "name": "daily-calls-tick"},
        {**idle, "name": "notifications"},
        {**idle, "name": "relevel-events"},
        {**idle, "name": "other"},
    ]
    assert {(e["method"], e["path"]) for e in body["endpoints"]} == {
        ("POST", "/api/queue/trigger"),
        ("GET", "/api/queue/status"),
        ("GET", "/api/admin/queues"),
        ("GET", "/api/health"),
        ("GET", "/api/health?detail=1"),
        ("GET", "/metrics"),
        ("GET", "/api/capacity"),
        ("GET", "/dashboard/"),
        ("GET", "/api/schema"),
        ("POST", "/api/webhooks/call"),
    }
    assert staff_client.get(body["dashboard"]).status_code == 200
    for endpoint in body["endpoints"]:
        if endpoint["method"] == "GET" and endpoint["path"] != "/api/admin/queues":
            assert staff_client.get(endpoint["path"]).status_code in (200, 503), endpoint


def test_admin_queues_is_503_naming_the_queue_whose_redis_is_down(staff_client, settings, redis_conn):
    settings.RQ_QUEUES = {**settings.RQ_QUEUES, "elsewhere": {"URL": DOWN_URL}}
    response = staff_client.get(QUEUES)
    body = response.json()
    assert response.status_code == 503 and body["success"] is False
    *healthy, down = body["queues"]
    assert [(q["name"], q["health"]) for q in healthy] == [
        ("daily-calls", "healthy"),
        ("daily-calls-tick", "healthy"),
        ("notifications", "healthy"),
        ("relevel-events", "healthy"),
    ]
    assert down["name"] == "elsewhere" and down["health"] == "unhealthy"
    assert down["reason"].startswith("ConnectionError") and "hunter2" not in response.content.decode()
