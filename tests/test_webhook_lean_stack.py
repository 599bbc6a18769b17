"""relevel.wsgi's application: the provider webhooks take a lean middleware stack
(relevel/handlers.py), everything else Django's full one. The test client always takes the
full stack, so these tests call the WSGI application itself, as gunicorn does."""

from __future__ import annotations

import io
import json
import sys

import pytest
from django.conf import settings as django_settings
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.urls import resolve

from calls.models import CallStatus
from relevel.handlers import (
    WEBHOOK_SKIPPED_MIDDLEWARE,
    WEBHOOK_URLCONF,
    Application,
    webhook_middleware,
)
from tests.test_webhook import sign

pytestmark = pytest.mark.usefixtures("on_the_calls_day")


@pytest.fixture(scope="module")
def application():
    return Application()


@pytest.fixture(autouse=True)
def keep_the_test_connection():
    # As Django's test client does: a request through a WSGI handler would otherwise close
    # the test's database connection, and with it the transaction the test runs in.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def serve(application, method: str, path: str, body: bytes = b"", **headers: str):
    """(status line, headers as a dict of lists, body) of one request, as gunicorn calls it."""
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json",
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.input_terminated": True,
        **headers,
    }
    answer = {}

    def start_response(status, response_headers, exc_info=None):
        answer["status"] = status
        answer["headers"] = {}
        for name, value in response_headers:
            answer["headers"].setdefault(name.lower(), []).append(value)

    result = application(environ, start_response)
    try:
        content = b"".join(result)
    finally:
        result.close()
    return answer["status"], answer["headers"], content


def signed(payload: dict) -> tuple[bytes, str]:
    body = json.dumps(payload).encode()
    return body, sign(body)


def test_the_webhook_middleware_is_the_full_list_without_what_a_webhook_never_uses():
    lean = webhook_middleware()
    assert lean == [path for path in django_settings.MIDDLEWARE if path not in WEBHOOK_SKIPPED_MIDDLEWARE]
    assert "django.middleware.security.SecurityMiddleware" in lean
    assert "django.middleware.common.CommonMiddleware" in lean
    assert "django.middleware.clickjacking.XFrameOptionsMiddleware" in lean
    assert "django.contrib.sessions.middleware.SessionMiddleware" not in lean
    assert "django.middleware.csrf.CsrfViewMiddleware" not in lean


@pytest.mark.parametrize(
    "path", ["/api/webhooks/call", "/api/webhooks/vapi", "/api/webhooks/retell", "/api/webhooks/twilio/sms"]
)
def test_each_webhook_path_finds_the_same_view_in_the_lean_urlconf(path):
    full, lean = resolve(path), resolve(path, urlconf=WEBHOOK_URLCONF)
    assert (lean.func, lean.kwargs, lean.url_name) == (full.func, full.kwargs, full.url_name)


def test_every_webhook_route_of_the_root_urlconf_is_in_the_lean_one():
    from django.urls import get_resolver

    def routes(resolver, prefix=""):
        for pattern in resolver.url_patterns:
            route = prefix + str(pattern.pattern)
            if hasattr(pattern, "url_patterns"):
                yield from routes(pattern, route)
            else:
                yield route

    full = {route for route in routes(get_resolver()) if route.startswith("api/webhooks/")}
    assert full and full == set(routes(get_resolver(WEBHOOK_URLCONF)))


def test_a_signed_webhook_through_the_lean_stack_records_the_status(application, make_call):
    call = make_call(status=CallStatus.DIALING, provider_call_id="ck-lean")
    body, signature = signed({"call_id": "ck-lean", "status": "in_progress"})
    status, headers, content = serve(
        application, "POST", "/api/webhooks/call", body, HTTP_X_CALLKARO_SIGNATURE=signature
    )
    assert status == "200 OK", content
    assert json.loads(content)["status"] == "in_progress"
    call.refresh_from_db()
    assert call.status == CallStatus.IN_PROGRESS
    # The security headers and Content-Length of the full stack; no cookie of any kind.
    assert headers["x-frame-options"] == ["DENY"]
    assert headers["x-content-type-options"] == ["nosniff"]
    assert headers["referrer-policy"] == ["same-origin"]
    assert headers["content-length"] == [str(len(content))]
    assert "set-cookie" not in headers and "vary" not in headers


def test_a_webhook_with_a_bad_signature_is_refused_by_the_lean_stack(application, make_call):
    call = make_call(status=CallStatus.DIALING, provider_call_id="ck-forged")
    body, _ = signed({"call_id": "ck-forged", "status": "completed"})
    status, _, _ = serve(application, "POST", "/api/webhooks/call", body, HTTP_X_CALLKARO_SIGNATURE="0" * 64)
    assert status.startswith("401")
    call.refresh_from_db()
    assert call.status == CallStatus.DIALING


def test_the_lean_stack_keeps_the_body_limit_and_the_host_check(application, db):
    body = b'{"call_id": "ck-big", "status": "completed", "pad": "' + b"x" * (300 * 1024) + b'"}'
    status, _, content = serve(
        application, "POST", "/api/webhooks/call", body, HTTP_X_CALLKARO_SIGNATURE=sign(body)
    )
    assert status.startswith("413"), content
    body, signature = signed({"call_id": "ck-host", "status": "completed"})
    status, _, _ = serve(
        application,
        "POST",
        "/api/webhooks/vapi",
        body,
        HTTP_HOST="attacker.example",
        HTTP_X_VAPI_SECRET="whatever",
    )
    assert status.startswith("400")  # DisallowedHost, as in the full stack


def test_an_unknown_path_under_webhooks_is_a_404_and_a_get_a_405(application, db):
    assert serve(application, "POST", "/api/webhooks/call/extra")[0].startswith("404")
    status, headers, _ = serve(application, "GET", "/api/webhooks/call")
    assert status.startswith("405") and headers["allow"] == ["POST"]


def test_the_admin_keeps_the_full_stack(application, db):
    status, headers, content = serve(application, "GET", "/admin/login/")
    assert status == "200 OK"
    # CSRF and the session middleware at work: the login form's token, and its cookie.
    assert any(cookie.startswith(" csrftoken=") or "csrftoken=" in cookie for cookie in headers["set-cookie"])
    assert b"csrfmiddlewaretoken" in content
    assert headers["x-frame-options"] == ["DENY"]
