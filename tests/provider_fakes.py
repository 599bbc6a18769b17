"""What the provider contract tests share: the documented fixtures, a fake provider at the
HTTP boundary that answers with them, each provider's settings, and each provider's way of
delivering (and authenticating) a webhook.

The fakes listen on 127.0.0.1 only, as tests/fakes.py's FakeCallKaro does (this reuses its
server); nothing here talks to a real provider.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from calls.models import Call
from calls.providers import reset_provider_cache
from tests.fakes import FakeCallKaro

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# CallKaro signs nothing: the URL pasted into its dashboard carries this token.
CALLKARO_TOKEN = "ck-url-token-0123456789abcdef0123"
CALLKARO_URL = "/api/webhooks/callkaro"

# The ids of Vapi's own documented request (tests/fixtures/vapi/create_call_request.json).
VAPI_API_KEY = "test-vapi-private-key"
VAPI_ASSISTANT_ID = "4a170597-a0c2-4657-8c32-cb93f080cead"
VAPI_PHONE_NUMBER_ID = "c6ea6cb0-0dfb-4a65-918f-6a33abb54b64"
VAPI_WEBHOOK_SECRET = "test-vapi-webhook-secret"
VAPI_URL = "/api/webhooks/vapi"

# Retell's documented request (tests/fixtures/retell/create_phone_call_request.json); the
# webhook key differs from the API key, so a test can tell which one signs.
RETELL_API_KEY = "test-retell-api-key"
RETELL_WEBHOOK_API_KEY = "test-retell-webhook-key"
RETELL_FROM_NUMBER = "+14157774444"
RETELL_AGENT_ID = "oBeDLoLOeuAbiuaMFXRtDOLriTJ5tSxD"
RETELL_URL = "/api/webhooks/retell"

NOWHERE = "http://127.0.0.1:9"  # nothing listens there: an unexpected request fails fast


def fixture(provider: str, name: str) -> Any:
    """A documented example from tests/fixtures/<provider>/ (a fresh copy on every call);
    the URL each one came from is in that folder's SOURCES.md."""
    return json.loads(fixture_text(provider, name))


def fixture_text(provider: str, name: str) -> str:
    return (FIXTURES / provider / name).read_text(encoding="utf-8")


class FakeProvider(FakeCallKaro):
    """FakeCallKaro's server, for any provider: it records every request and answers what the
    test scripts with ``respond_with``; by default ``default``, a documented answer."""

    def __init__(self, default: tuple[int, dict | bytes]) -> None:
        super().__init__()
        self.respond_with(default)


def our_metadata(call: Call) -> dict[str, str]:
    """What relevel sends as metadata for ``call`` (and the provider echoes back)."""
    user = call.user
    return {"call_id": str(call.pk), "user_id": str(user.pk), "name": user.name or user.get_username()}


# --- Settings -----------------------------------------------------------------------------


def configure_callkaro_token(settings) -> None:
    settings.CALLKARO_WEBHOOK_TOKEN = CALLKARO_TOKEN
    reset_provider_cache()


def configure_vapi(settings, *, base_url: str = NOWHERE) -> None:
    settings.CALL_PROVIDER = "vapi"
    settings.VAPI_BASE_URL = base_url
    settings.VAPI_API_KEY = VAPI_API_KEY
    settings.VAPI_ASSISTANT_ID = VAPI_ASSISTANT_ID
    settings.VAPI_PHONE_NUMBER_ID = VAPI_PHONE_NUMBER_ID
    settings.VAPI_WEBHOOK_SECRET = VAPI_WEBHOOK_SECRET
    settings.PROVIDER_CONNECT_TIMEOUT = 1.0
    settings.PROVIDER_READ_TIMEOUT = 2.0
    reset_provider_cache()


def configure_retell(settings, *, base_url: str = NOWHERE) -> None:
    settings.CALL_PROVIDER = "retell"
    settings.RETELL_BASE_URL = base_url
    settings.RETELL_API_KEY = RETELL_API_KEY
    settings.RETELL_WEBHOOK_API_KEY = RETELL_WEBHOOK_API_KEY
    settings.RETELL_FROM_NUMBER = RETELL_FROM_NUMBER
    settings.RETELL_AGENT_ID = RETELL_AGENT_ID
    settings.PROVIDER_CONNECT_TIMEOUT = 1.0
    settings.PROVIDER_READ_TIMEOUT = 2.0
    reset_provider_cache()


@contextmanager
def vapi_server(settings) -> Iterator[FakeProvider]:
    """A fake Vapi answering POST /call with its documented 201 (create_call_response.json)."""
    fake = FakeProvider((201, fixture("vapi", "create_call_response.json"))).start()
    configure_vapi(settings, base_url=fake.url)
    try:
        yield fake
    finally:
        fake.stop()
        reset_provider_cache()


@contextmanager
def retell_server(settings) -> Iterator[FakeProvider]:
    """A fake Retell answering POST /v2/create-phone-call with its documented call object
    (create_phone_call_response.json)."""
    fake = FakeProvider((201, fixture("retell", "create_phone_call_response.json"))).start()
    configure_retell(settings, base_url=fake.url)
    try:
        yield fake
    finally:
        fake.stop()
        reset_provider_cache()


# --- Delivering webhooks ------------------------------------------------------------------


def callkaro_call_ended(call: Call, *, call_sid: str | None = None, **data: Any) -> dict:
    """CallKaro's documented call_ended (webhook_call_ended.json) about ``call``: its
    call_metadata extended by the ids we send, callSid the call's provider id."""
    payload = fixture("callkaro", "webhook_call_ended.json")
    payload["data"]["callSid"] = call_sid if call_sid is not None else call.provider_call_id
    payload["data"]["call_metadata"] = {**payload["data"]["call_metadata"], **our_metadata(call)}
    payload["data"].update(data)
    return payload


def post_callkaro(
    client, payload: Any, *, token: str | None = CALLKARO_TOKEN, url: str = CALLKARO_URL, **extra
):
    if token is not None:
        url = f"{url}?token={token}"
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post(url, data=body, content_type="application/json", **extra)


def vapi_message(name: str, call: Call | None = None, *, vapi_id: str | None = None, **changes: Any) -> dict:
    """A documented Vapi server message (tests/fixtures/vapi/<name>); with ``call``, its
    ``message.call`` echoes our ids where relevel puts them (assistantOverrides.metadata and
    the call's name) and carries ``vapi_id`` (default: the call's provider id)."""
    payload = fixture("vapi", name)
    message = payload["message"]
    if call is not None:
        echoed = message["call"]
        echoed["id"] = vapi_id if vapi_id is not None else call.provider_call_id
        echoed["name"] = f"relevel call {call.pk}"
        echoed["assistantOverrides"] = {"metadata": our_metadata(call)}
    message.update(changes)
    return payload


def post_vapi(client, payload: Any, *, secret: str | None = VAPI_WEBHOOK_SECRET, bearer: bool = False):
    extra = {}
    if secret is not None:
        extra["HTTP_AUTHORIZATION" if bearer else "HTTP_X_VAPI_SECRET"] = (
            f"Bearer {secret}" if bearer else secret
        )
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post(VAPI_URL, data=body, content_type="application/json", **extra)


def sign_retell(raw_body: str, api_key: str, timestamp_ms: int | None = None) -> str:
    """An X-Retell-Signature that retell-sdk's verify() accepts: the stdlib signer of
    tests/fixtures/retell/CONTRACT.md §3.4, HMAC-SHA256(body + timestamp) with the key."""
    if timestamp_ms is None:
        timestamp_ms = int(time.time() * 1000)
    digest = hmac.new(api_key.encode(), (raw_body + str(timestamp_ms)).encode(), hashlib.sha256).hexdigest()
    return f"v={timestamp_ms},d={digest}"


def retell_event(
    name: str, call: Call | None = None, *, retell_id: str | None = None, **changes: Any
) -> dict:
    """A documented Retell webhook (tests/fixtures/retell/<name>); with ``call``, its
    ``call.metadata`` is ours and ``call.call_id`` is ``retell_id`` (default: the call's)."""
    payload = fixture("retell", name)
    if call is not None:
        payload["call"]["call_id"] = retell_id if retell_id is not None else call.provider_call_id
        payload["call"]["metadata"] = our_metadata(call)
    payload["call"].update(changes)
    return payload


def post_retell(
    client,
    payload: Any,
    *,
    key: str = RETELL_WEBHOOK_API_KEY,
    timestamp_ms: int | None = None,
    signature: str | None = None,
    signed: bool = True,
):
    """POST a Retell webhook, signed over the exact text sent (unless ``signed`` is False)."""
    text = payload if isinstance(payload, str) else json.dumps(payload)
    extra = {}
    if signed:
        extra["HTTP_X_RETELL_SIGNATURE"] = signature or sign_retell(text, key, timestamp_ms)
    return client.post(RETELL_URL, data=text.encode(), content_type="application/json", **extra)
