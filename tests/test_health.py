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
