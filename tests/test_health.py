"""GET /api/health: for load balancers, no authentication."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
import time_machine
from django.db import OperationalError, connection

URL = "/api/health"
DOWN_URL = "redis://:hunter2@127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def redis_down(settings):
    settings.RQ_QUEUES = {name: {**config, "URL": DOWN_URL} for name, config in settings.RQ_QUEUES.items()}


@pytest.fixture
def database_down(monkeypatch):
    def refuse(*args, **kwargs):
        raise OperationalError('connection to server at "db" failed: Connection refused')

    # Only for the request: the test database's own teardown needs a working cursor.
    with monkeypatch.context() as patch:
        patch.setattr(connection, "cursor", refuse)
        yield


def test_it_is_ok_when_the_database_and_redis_answer(client, db, redis_conn):
    response = client.get(URL)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "redis": "ok", "scheduler": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_it_says_delayed_jobs_are_overdue_and_stays_200(client, db, redis_conn, caplog):
    """Retries nobody releases (no worker with --with-scheduler) do not make the web service
    unhealthy, but the answer and the log say so."""
    from calls.queues import calls_queue

    calls_queue().enqueue_at(datetime(2026, 11, 28, 14, 50, tzinfo=UTC), "calls.jobs.place_call", 1)
    with (
        time_machine.travel(datetime(2026, 11, 28, 15, 0, tzinfo=UTC), tick=False),
        caplog.at_level(logging.WARNING, logger="relevel.api"),
    ):
        response = client.get(URL)
    assert response.status_code == 200
    assert response.json() == {"status": "degraded", "database": "ok", "redis": "ok", "scheduler": "overdue"}
    assert "1 delayed job(s) more than 300 s past their time" in caplog.text
    assert "--with-scheduler" in caplog.text


def test_it_needs_no_authentication_and_answers_head(client, db):
    assert client.head(URL).status_code == 200


def test_it_is_503_naming_redis_when_redis_is_down(client, db, redis_down, caplog):
    with caplog.at_level(logging.ERROR, logger="relevel.api"):
        response = client.get(URL)
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "down": ["redis"],
        "database": "ok",
        "redis": "down",
        "scheduler": "unknown",
    }
    assert "redis: ConnectionError: Error 111 connecting to 127.0.0.1:1" in caplog.text
    assert "hunter2" not in caplog.text


def test_it_is_503_naming_the_database_when_the_database_is_down(client, db, database_down, caplog):
    with caplog.at_level(logging.ERROR, logger="relevel.api"):
        response = client.get(URL)
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "down": ["database"],
        "database": "down",
        "redis": "ok",
        "scheduler": "ok",
    }
    assert "database: OperationalError" in caplog.text


def test_it_names_both_when_both_are_down(client, db, redis_down, database_down):
    response = client.get(URL)
    assert response.status_code == 503
    assert response.json()["down"] == ["database", "redis"]


def test_it_answers_only_get_and_head(client, db):
    response = client.post(URL)
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert response.json()["success"] is False


# --- ?detail=1: every check, with reasons, for operators -----------------------------------

DETAIL_URL = "/api/health?detail=1"
CHECK_NAMES = ["database", "redis", "tick", "first_attempts", "delayed_jobs", "workers"]


@pytest.fixture
def operator(settings):
    return {"HTTP_AUTHORIZATION": f"Bearer {settings.QUEUE_API_TOKEN}"}


@pytest.fixture
def ticking_with_a_worker(db, redis_conn):
    from calls.scheduling import calls_schedule_due
    from tests.test_check_calls import live_worker

    now = datetime(2026, 11, 28, 15, 30, tzinfo=UTC)
    with time_machine.travel(now, tick=False):
        calls_schedule_due()
        worker = live_worker(redis_conn)
        yield worker


def test_detail_lists_every_check_ok(client, ticking_with_a_worker, operator):
    response = client.get(DETAIL_URL, **operator)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert [check["name"] for check in body["checks"]] == CHECK_NAMES
    assert all(check["ok"] for check in body["checks"]), body
    assert body["checks"][5]["message"] == "1 live worker(s)"
    assert "no-cache" in response["Cache-Control"]


def test_detail_is_503_naming_no_live_worker(client, ticking_with_a_worker, operator):
    ticking_with_a_worker.register_death()
    response = client.get(DETAIL_URL, **operator)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "problem"
    failed = [check for check in body["checks"] if not check["ok"]]
    assert [check["name"] for check in failed] == ["workers"]
    assert failed[0]["message"].startswith("no live worker on queue(s) daily-calls, daily-calls-tick")


def test_detail_with_redis_down_says_which_checks_could_not_run(client, db, redis_down, operator):
    response = client.get(DETAIL_URL, **operator)
    assert response.status_code == 503
    checks = {check["name"]: check for check in response.json()["checks"]}
    assert checks["redis"]["ok"] is False
    assert checks["redis"]["message"].startswith("Redis is down: ConnectionError: Error 111")
    assert checks["tick"] == {"name": "tick", "ok": False, "message": "not checked: Redis is down"}
    assert checks["database"]["ok"] is True
    assert checks["first_attempts"]["ok"] is True
    assert "hunter2" not in response.content.decode()


def test_detail_needs_operator_credentials(client, db):
    response = client.get(DETAIL_URL)
    assert response.status_code == 401 and response.json()["success"] is False
    assert client.get(DETAIL_URL, HTTP_AUTHORIZATION="Bearer wrong").status_code == 403


def test_without_detail_it_stays_the_load_balancers_answer(client, db, redis_conn):
    # No tick, no worker: the plain answer (for load balancers) does not judge those.
    for url in (URL, f"{URL}?detail=0"):
        response = client.get(url)
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "database": "ok", "redis": "ok", "scheduler": "ok"}


def test_an_unknown_detail_value_is_a_400(client, db):
    response = client.get(f"{URL}?detail=yes")
    assert response.status_code == 400
    assert response.json() == {
        "success": False,
        "error": "detail must be 1 (every check, for operators) or 0",
    }
