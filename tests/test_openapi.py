"""docs/openapi.yaml describes the HTTP API as it is: each endpoint's real answers, through
Django's test client, are checked against the document (status, content type, and the JSON
body against the response's schema with jsonschema_rs, Draft 2020-12 as OpenAPI 3.1 uses);
every URL the API has is in it; and /api/schema serves it to staff only."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from pathlib import Path

import jsonschema_rs
import pytest
import schemathesis
import yaml
from django.http import HttpResponse
from django.test import Client
from django.urls import get_resolver, resolve, reverse

from calls.models import CallStatus

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT_PATH = ROOT / "docs" / "openapi.yaml"
DOCUMENT = yaml.safe_load(DOCUMENT_PATH.read_text())
TOKEN = "test-queue-token-0123456789abcdefgh"  # settings_test's QUEUE_API_TOKEN
AUTH = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
SECRET = "test-webhook-secret-0123456789abcdef"  # settings_test's CALLKARO_WEBHOOK_SECRET


def _resolve(node: dict) -> dict:
    while "$ref" in node:
        node = _pointer(node["$ref"])
    return node


def _pointer(ref: str) -> dict:
    node = DOCUMENT
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def conforms(response, path: str, method: str) -> None:
    """Assert that ``response`` is one the document gives for ``method path``."""
    operation = DOCUMENT["paths"][path][method.lower()]
    status = str(response.status_code)
    assert status in operation["responses"], f"{method} {path}: {status} is not documented"
    documented = _resolve(operation["responses"][status])
    content = documented.get("content")
    media_type = response.get("Content-Type", "").split(";")[0].strip()
    if not content:
        assert not response.content or media_type == "", (
            f"{method} {path} {status}: a body the document has not"
        )
        return
    assert media_type in content, f"{method} {path} {status}: {media_type} is not documented"
    if media_type == "application/json":
        schema = {**content[media_type]["schema"], "components": DOCUMENT["components"]}
        body = json.loads(response.content)
        errors = [error.message for error in jsonschema_rs.Draft202012Validator(schema).iter_errors(body)]
        assert not errors, f"{method} {path} {status}: {errors}"


@pytest.fixture
def staff_client(make_user):
    client = Client()
    client.force_login(make_user(is_staff=True))
    return client


def test_the_document_is_valid_openapi_3_1():
    assert DOCUMENT["openapi"].startswith("3.1")
    schemathesis.openapi.from_dict(DOCUMENT).validate()  # raises on a broken document


# --- The document covers the API, and only what exists -------------------------------------


def _api_routes() -> set[str]:
    """Every URL pattern of the HTTP API, as the document writes paths ({name} for <name>)."""
    routes = set()

    def walk(patterns, prefix=""):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if hasattr(pattern, "url_patterns"):
                walk(pattern.url_patterns, route)
            else:
                routes.add("/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route))

    walk(get_resolver().url_patterns)
    return {route for route in routes if route.startswith(("/api/", "/metrics")) or route.endswith(".csv")}


def test_every_url_of_the_api_is_in_the_document_and_every_path_resolves():
    assert _api_routes() == set(DOCUMENT["paths"])
    for path in DOCUMENT["paths"]:
        concrete = (
            path.replace("{provider}", "vapi").replace("{external_id}", "crm-1").replace("{slug}", "variants")
        )
        resolve(concrete)


# How the docs write an endpoint's path, and the document's path for it.
MENTION = re.compile(r"(?<![\w.-])(/api/[\w/<>{}.:-]*[\w>}]|/metrics\b|/dashboard/<chart>\.csv)")
CONCRETE = [
    (re.compile(r"^/dashboard/<chart>\.csv$"), "/dashboard/{slug}.csv"),
    (re.compile(r"<(\w+)>"), r"{\1}"),
    (re.compile(r"^/api/webhooks/(callkaro|vapi|retell|simulator)$"), "/api/webhooks/{provider}"),
    (re.compile(r"^/api/users/(?!bulk$|\{)[\w.:-]+"), "/api/users/{external_id}"),
    # A number's + ends the mention: /api/suppressions/+919876543210 is read as /api/suppressions.
    (re.compile(r"^/api/suppressions(/\{number\})?$"), "/api/suppressions/{number}"),
]


def documented_path(mention: str) -> str:
    for pattern, replacement in CONCRETE:
        mention = pattern.sub(replacement, mention)
    return mention


def test_every_endpoint_the_docs_mention_is_in_the_document():
    assert documented_path("/api/users/crm-42/call") == "/api/users/{external_id}/call"
    assert documented_path("/api/users/bulk") == "/api/users/bulk"
    for text_path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for mention in MENTION.findall(text_path.read_text()):
            assert documented_path(mention) in DOCUMENT["paths"], f"{text_path.name} mentions {mention}"


def test_the_image_carries_the_document():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()}
    assert not ignored & {"docs", "docs/", "docs/openapi.yaml", "*.yaml"}


# --- /api/schema ------------------------------------------------------------------------------


def test_staff_get_the_document_as_yaml(staff_client):
    response = staff_client.get("/api/schema")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/yaml; charset=utf-8"
    assert response.content == DOCUMENT_PATH.read_bytes()
    conforms(response, "/api/schema", "GET")


def test_anyone_else_is_sent_to_the_admin_login_as_for_the_dashboard(client, make_user):
    for visitor in (client, Client()):
        if visitor is not client:
            visitor.force_login(make_user(is_staff=False))
        response = visitor.get("/api/schema")
        assert response.status_code == 302
        assert response["Location"] == f"{reverse('admin:login')}?next=/api/schema"
        conforms(response, "/api/schema", "GET")
    # A bearer token is for the JSON API, not for this page.
    assert client.get("/api/schema", **AUTH).status_code == 302


def test_the_schema_takes_no_writes(staff_client):
    assert staff_client.post("/api/schema").status_code == 405


# --- Real answers against the document --------------------------------------------------------


def test_health_answers_conform(client, db):
    conforms(client.get("/api/health"), "/api/health", "GET")
    conforms(client.get("/api/health?detail=1", **AUTH), "/api/health", "GET")
    conforms(client.get("/api/health?detail=1"), "/api/health", "GET")  # 401
    conforms(
        client.get("/api/health?detail=1", HTTP_AUTHORIZATION="Bearer wrong"), "/api/health", "GET"
    )  # 403
    conforms(client.get("/api/health?detail=yes"), "/api/health", "GET")  # 400
    conforms(client.post("/api/health"), "/api/health", "GET")  # 405: the same error shape


def test_metrics_answers_conform(client, db):
    response = client.get("/metrics", **AUTH)
    assert response.status_code == 200
    conforms(response, "/metrics", "GET")
    conforms(client.get("/metrics"), "/metrics", "GET")


def test_queue_answers_conform(client, db):
    for _ in range(6):  # the sixth is over the limit
        response = client.post("/api/queue/trigger", **AUTH)
        conforms(response, "/api/queue/trigger", "POST")
    assert response.status_code == 429
    conforms(client.get("/api/queue/trigger", **AUTH), "/api/queue/trigger", "POST")
    conforms(client.get("/api/queue/status", **AUTH), "/api/queue/status", "GET")
    conforms(client.get("/api/admin/queues", **AUTH), "/api/admin/queues", "GET")


def test_policy_and_capacity_answers_conform(client, db):
    conforms(client.get("/api/policy", **AUTH), "/api/policy", "GET")
    changes = {"calling_hours": {"start": "09:00", "end": "21:00"}, "retry_delays_minutes": [30, 60]}
    response = client.patch("/api/policy", changes, content_type="application/json", **AUTH)
    assert response.status_code == 200
    conforms(response, "/api/policy", "PATCH")
    bad = client.patch("/api/policy", {"pause": True}, content_type="application/json", **AUTH)
    assert bad.status_code == 400
    conforms(bad, "/api/policy", "PATCH")
    conforms(client.get("/api/capacity", **AUTH), "/api/capacity", "GET")


def test_users_answers_conform(client, db, settings):
    path = "/api/users/{external_id}"
    body = {"phone": "+91 98765 43210", "name": "Asha Rao", "local_tz": "Asia/Kolkata", "call_time": "20:30"}
    created = client.put("/api/users/crm-42", body, content_type="application/json", **AUTH)
    assert created.status_code == 201
    conforms(created, path, "PUT")
    conforms(client.put("/api/users/crm-42", body, content_type="application/json", **AUTH), path, "PUT")
    bad = client.put("/api/users/crm-42", {"call_time": "25:00"}, content_type="application/json", **AUTH)
    assert bad.status_code == 400
    conforms(bad, path, "PUT")
    conforms(client.get("/api/users/crm-42", **AUTH), path, "GET")
    conforms(client.get("/api/users/nobody", **AUTH), path, "GET")
    conforms(client.delete("/api/users/crm-42", **AUTH), path, "GET")  # 405

    rows = {"users": [{"external_id": "crm-43", "phone": "+14155550123", "local_tz": "America/Los_Angeles"}]}
    bulk = client.post("/api/users/bulk", rows, content_type="application/json", **AUTH)
    assert bulk.status_code == 200
    conforms(bulk, "/api/users/bulk", "POST")
    rows = {"users": [{"external_id": "crm-44", "local_tz": "Mars/Olympus"}]}
    conforms(
        client.post("/api/users/bulk", rows, content_type="application/json", **AUTH),
        "/api/users/bulk",
        "POST",
    )

    opt_out = "/api/users/{external_id}/opt-out"
    body = {"source": "app"}
    done = client.post("/api/users/crm-43/opt-out", body, content_type="application/json", **AUTH)
    assert done.status_code == 200 and done.json()["user"]["opted_out"]["source"] == "app"
    conforms(done, opt_out, "POST")
    conforms(client.post("/api/users/crm-43/opt-out", **AUTH), opt_out, "POST")
    body = {"source": "sms"}
    conforms(
        client.post("/api/users/crm-43/opt-out", body, content_type="application/json", **AUTH),
        opt_out,
        "POST",
    )
    refused = client.put("/api/users/crm-43", {"call_enabled": True}, content_type="application/json", **AUTH)
    assert refused.status_code == 409
    conforms(refused, path, "PUT")

    call_now = "/api/users/{external_id}/call"
    settings.CALL_PROVIDER = "simulator"
    first = client.post("/api/users/crm-42/call", **AUTH)
    conforms(first, call_now, "POST")
    again = client.post("/api/users/crm-42/call", **AUTH)
    conforms(again, call_now, "POST")
    assert {first.status_code, again.status_code} <= {202, 409, 429}
    conforms(client.post("/api/users/nobody/call", **AUTH), call_now, "POST")


def test_consent_and_suppression_answers_conform(client, make_user):
    make_user(external_id="crm-50")
    path = "/api/users/{external_id}/consent"
    body = {"source": "app", "text": "Terms v3", "given_at": "2026-12-01T09:30:00Z"}
    recorded = client.put("/api/users/crm-50/consent", body, content_type="application/json", **AUTH)
    assert recorded.status_code == 201
    conforms(recorded, path, "PUT")
    bad = client.put("/api/users/crm-50/consent", {"source": "fax"}, content_type="application/json", **AUTH)
    assert bad.status_code == 400
    conforms(bad, path, "PUT")
    conforms(
        client.put("/api/users/nobody/consent", body, content_type="application/json", **AUTH), path, "PUT"
    )
    conforms(client.get("/api/users/crm-50", **AUTH), "/api/users/{external_id}", "GET")

    path = "/api/suppressions/{number}"
    added = client.put(
        "/api/suppressions/+14155550123", {"reason": "asked"}, content_type="application/json", **AUTH
    )
    assert added.status_code == 201
    conforms(added, path, "PUT")
    again = client.put("/api/suppressions/+14155550123", **AUTH)
    assert again.status_code == 200
    conforms(again, path, "PUT")
    conforms(client.put("/api/suppressions/12345", **AUTH), path, "PUT")
    removed = client.delete("/api/suppressions/+14155550123", **AUTH)
    assert removed.status_code == 204
    conforms(removed, path, "DELETE")
    conforms(client.delete("/api/suppressions/+14155550123", **AUTH), path, "DELETE")


def _signed(body: dict) -> dict:
    raw = json.dumps(body).encode()
    signature = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    return {
        "data": raw,
        "content_type": "application/json",
        "HTTP_X_CALLKARO_SIGNATURE": f"sha256={signature}",
    }


def test_webhook_answers_conform(client, make_call):
    call = make_call(status=CallStatus.RINGING, provider_call_id="ck_1")
    flat = {"call_id": "ck_1", "status": "completed", "metadata": {"call_id": str(call.pk)}}
    applied = client.post("/api/webhooks/call", **_signed(flat))
    assert applied.status_code == 200 and applied.json()["status"] == "completed"
    conforms(applied, "/api/webhooks/call", "POST")
    unknown = {"call_id": "ck_9", "status": "completed", "metadata": {"call_id": "999999"}}
    conforms(client.post("/api/webhooks/call", **_signed(unknown)), "/api/webhooks/call", "POST")  # 404
    ignored = client.post("/api/webhooks/callkaro", **_signed({"event": "call_started", "data": {}}))
    assert ignored.status_code == 200 and "ignored" in ignored.json()
    conforms(ignored, "/api/webhooks/{provider}", "POST")
    conforms(
        client.post("/api/webhooks/call", data=b"{", content_type="application/json"),
        "/api/webhooks/call",
        "POST",
    )
    conforms(
        client.post("/api/webhooks/call", **{**_signed(flat), "data": b"not json"}),
        "/api/webhooks/call",
        "POST",
    )
    conforms(
        client.post("/api/webhooks/nope", data=b"{}", content_type="application/json"),
        "/api/webhooks/{provider}",
        "POST",
    )
    conforms(client.get("/api/webhooks/call"), "/api/webhooks/call", "POST")


def test_dashboard_downloads_conform(staff_client, client):
    path = "/dashboard/{slug}.csv"
    response = staff_client.get("/dashboard/calls-per-day.csv")
    assert response.status_code == 200
    conforms(response, path, "GET")
    conforms(staff_client.get("/dashboard/nope.csv"), path, "GET")
    conforms(client.get("/dashboard/calls-per-day.csv"), path, "GET")


def test_the_checker_refuses_an_answer_the_document_does_not_give():
    from django.http import JsonResponse

    with pytest.raises(AssertionError, match="418 is not documented"):
        conforms(JsonResponse({}, status=418), "/api/capacity", "GET")
    with pytest.raises(AssertionError, match="provider"):
        conforms(JsonResponse({"success": True}), "/api/capacity", "GET")
    with pytest.raises(AssertionError, match="text/html is not documented"):
        conforms(HttpResponse("<p>hi</p>"), "/metrics", "GET")
