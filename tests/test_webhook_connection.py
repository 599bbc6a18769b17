"""The webhook's persistent database connection: Django's per-request SELECT 1 is skipped
while the socket is quiet, and a connection the server closed is still replaced."""

from __future__ import annotations

import json
import select
import time

import psycopg
import pytest
from django.db import connection

from calls.models import Call, CallStatus
from tests.test_webhook import URL, event, sign

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL connection's socket"),
    # The connection is killed from outside: no test transaction may be open on it.
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def health_queries(monkeypatch):
    """Each SELECT 1 that Django's health check sends, counted."""
    sent = []
    real_is_usable = connection.is_usable

    def is_usable() -> bool:
        sent.append("SELECT 1")
        return real_is_usable()

    monkeypatch.setattr(connection, "is_usable", is_usable)
    return sent


def post_as_a_new_request(client, call: Call, status: str):
    """POST the webhook with Django's health check armed, as at the start of each request
    on a persistent connection (the test client skips the signal that arms it)."""
    connection.health_check_enabled = True
    connection.health_check_done = False
    body = json.dumps(event(call, status)).encode()
    return client.post(URL, data=body, content_type="application/json", HTTP_X_CALLKARO_SIGNATURE=sign(body))


def test_a_quiet_connection_is_used_without_a_health_query(make_call, client, health_queries):
    call = make_call(status=CallStatus.DIALING, provider_call_id="ck-quiet")
    health_queries.clear()
    response = post_as_a_new_request(client, call, "ringing")
    assert response.status_code == 200 and response.json()["status"] == "ringing"
    assert health_queries == []
    assert connection.health_check_done


def test_a_connection_the_server_closed_is_checked_and_replaced(make_call, client, health_queries):
    call = make_call(status=CallStatus.DIALING, provider_call_id="ck-killed")
    health_queries.clear()
    backend = connection.connection.info.backend_pid
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"]
    ) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", [backend]).fetchone() == (True,)
    poller = select.poll()
    poller.register(connection.connection.fileno(), select.POLLIN)
    deadline = time.monotonic() + 5
    while not poller.poll(50) and time.monotonic() < deadline:
        pass  # the server's goodbye is on its way

    response = post_as_a_new_request(client, call, "ringing")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "ringing"
    assert health_queries == ["SELECT 1"]
    assert connection.connection.info.backend_pid != backend
    assert Call.objects.get(pk=call.pk).status == CallStatus.RINGING
