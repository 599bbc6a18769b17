"""The HTTP API fuzzed from its own description: Schemathesis generates requests for every
operation of docs/openapi.yaml (valid ones and invalid ones: wrong types, missing fields,
odd strings, unknown keys), sends them through the Django WSGI application in this process
(the test database, the test Redis, real middleware and auth), and fails on any 5xx, any
status, content type, header or body the document does not give for that operation, or a
crash.

Bounded by count, not by time: Schemathesis' coverage cases (a fixed set per operation)
and FUZZ_EXAMPLES generated examples per operation, derandomized (the same cases every run,
so CI is repeatable), no deadline per example: 20 to 90 s on the shared 2-core machine,
depending on its load. `RELEVEL_FUZZ_EXAMPLES=500 python3 dev.py test tests/test_api_fuzz.py` explores more.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from calls.providers import reset_provider_cache
from relevel.handlers import Application

DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
FUZZ_EXAMPLES = int(os.environ.get("RELEVEL_FUZZ_EXAMPLES", "25"))
TOKEN = "test-queue-token-0123456789abcdefgh"  # settings_test's QUEUE_API_TOKEN
CALLKARO_TOKEN = "callkaro-fuzz-token-0123456789abcdef"
VAPI_SECRET = "vapi-fuzz-secret-0123456789abcdefgh"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(autouse=True)
def webhook_credentials(db, settings):
    """Every provider's webhook credential set (with none, a webhook is refused 503 outside
    DEBUG, as documented), and the simulator placing calls now: nothing leaves this process."""
    settings.CALLKARO_WEBHOOK_TOKEN = CALLKARO_TOKEN
    settings.VAPI_WEBHOOK_SECRET = VAPI_SECRET
    settings.RETELL_WEBHOOK_API_KEY = "retell-fuzz-key-0123456789abcdefgh"
    # Set, so the inbound SMS webhook checks signatures (a forged one is a 403) rather than
    # answering 503 for a Twilio that is not configured.
    settings.TWILIO_AUTH_TOKEN = "twilio-fuzz-token-0123456789abcdef"
    settings.CALL_PROVIDER = "simulator"
    reset_provider_cache()
    # As Django's test client does: a request through the WSGI handler would otherwise close
    # the test's database connection, and with it the transaction the test runs in.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def staff_session(make_user) -> str:
    client = Client()
    client.force_login(make_user(is_staff=True))
    return client.cookies["sessionid"].value


# One test per operation; the WSGI application answers in this process, on the test database:
# the one gunicorn serves (relevel/wsgi.py), so the webhooks' lean stack is fuzzed too.
schema = schemathesis.openapi.from_path(DOCUMENT)
schema.app = Application()


def credentials(case) -> tuple[dict[str, str], dict[str, str]]:
    """Headers and query parameters that authenticate ``case`` as its operation expects:
    the operator token, or the provider's webhook credential (Retell's signature covers the
    body as sent, so Retell's webhook is fuzzed unauthenticated: every answer a 401)."""
    path = case.operation.path
    if (
        path == "/api/webhooks/call"
        or path == "/api/webhooks/{provider}"
        and case.path_parameters.get("provider") in ("callkaro", "simulator")
    ):
        return {}, {"token": CALLKARO_TOKEN}
    if path == "/api/webhooks/{provider}":
        return {"X-Vapi-Secret": VAPI_SECRET}, {}
    return {"Authorization": f"Bearer {TOKEN}"}, {}


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_answers_every_generated_request_as_documented(case, staff_session):
    headers, params = credentials(case)
    response = case.call(headers=headers, params=params, cookies={"sessionid": staff_session})
    checks = CHECKS
    if case.operation.path == "/api/health":
        # Its 503 is the documented answer of a deployment with a problem (here: no worker,
        # no tick yet), not a server error; a 500 still fails as an undocumented status.
        checks = [check for check in CHECKS if check is not not_a_server_error]
    case.validate_response(response, checks=checks, headers=headers)
