"""A webhook sent with Transfer-Encoding: chunked (no Content-Length) is read whole, within
the same 256 KB limit, under WSGI (gunicorn) as under ASGI."""

from __future__ import annotations

import http.client
import io
import json

import pytest
from django.db import connection

from calls.models import Call, CallStatus
from tests.fakes import GunicornServer
from tests.test_webhook import SECRET, URL, accepted, event, sign, stored_state

pytestmark = pytest.mark.django_db


def post_chunked(client, body: bytes, *, signature: str | None = None):
    """POST ``body`` as a WSGI server hands a chunked request to Django: no CONTENT_LENGTH,
    wsgi.input de-chunked and ending where the body ends (wsgi.input_terminated)."""
    return client.post(
        URL,
        data=b"",
        content_type="application/json",
        CONTENT_LENGTH="",
        HTTP_TRANSFER_ENCODING="chunked",
        HTTP_X_CALLKARO_SIGNATURE=signature or sign(body),
        **{"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True},
    )


@pytest.fixture
def dialed(make_call):
    return make_call(status=CallStatus.RINGING, provider_call_id="ck-1001")


def test_a_signed_chunked_webhook_is_applied(dialed, client):
    response = post_chunked(client, json.dumps(event(dialed, "completed")).encode())
    assert response.status_code == 200, response.content
    dialed.refresh_from_db()
    assert response.json() == accepted(dialed, "completed")


def test_a_chunked_webhook_signed_with_another_secret_is_still_401(dialed, client):
    body = json.dumps(event(dialed, "completed")).encode()
    response = post_chunked(client, body, signature=sign(body, "not-the-" + SECRET))
    assert response.status_code == 401


def test_a_chunked_body_over_256_kb_is_413_and_writes_nothing(dialed, client, redis_conn):
    before = stored_state(redis_conn)
    body = json.dumps(event(dialed, "completed", transcript="x" * (256 * 1024))).encode()
    response = post_chunked(client, body)
    assert response.status_code == 413
    assert response.json() == {"success": False, "error": "body larger than 256 KB"}
    assert stored_state(redis_conn) == before


def test_a_chunked_body_of_exactly_256_kb_is_accepted(dialed, client):
    body = json.dumps(event(dialed, "completed")).encode()
    body += b" " * (256 * 1024 - len(body))
    assert post_chunked(client, body).status_code == 200


def test_a_server_that_does_not_end_its_input_is_not_read_past_content_length(dialed, client):
    # Without wsgi.input_terminated (runserver's wsgiref), reading to the end could hang:
    # no Content-Length still means no body there.
    body = json.dumps(event(dialed, "completed")).encode()
    response = client.post(
        URL,
        data=b"",
        content_type="application/json",
        CONTENT_LENGTH="",
        HTTP_X_CALLKARO_SIGNATURE=sign(body),
        **{"wsgi.input": io.BytesIO(body)},
    )
    assert response.status_code == 401


# --- Against a real gunicorn ------------------------------------------------------------------


def chunked_post(url: str, body: bytes, *, chunk: int = 1000) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        # An iterable body without Content-Length: http.client sends it chunked.
        conn.request(
            "POST",
            URL,
            body=(body[i : i + chunk] for i in range(0, len(body), chunk)),
            headers={"Content-Type": "application/json", "X-Callkaro-Signature": sign(body)},
            encode_chunked=True,
        )
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.skipif(connection.vendor != "postgresql", reason="gunicorn shares the database: PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_gunicorn_hands_a_chunked_webhook_to_relevel_whole(make_call, redis_conn):
    from tests.test_faults import child_env

    call = make_call(status=CallStatus.RINGING, provider_call_id="ck-2002")
    server = GunicornServer(env=child_env()).start()
    try:
        status, answer = chunked_post(server.url, json.dumps(event(call, "in_progress")).encode())
        assert status == 200, (answer, server.output())
        assert json.loads(answer)["status"] == "in_progress"
        huge = json.dumps(event(call, "completed", transcript="x" * (260 * 1024))).encode()
        status, answer = chunked_post(server.url, huge, chunk=64 * 1024)
        assert status == 413, answer
    finally:
        server.stop()
    assert Call.objects.get(pk=call.pk).status == CallStatus.IN_PROGRESS
