"""The consent and suppression API (docs/operating/consent.md): a person's consent by the
product's id, and the do-not-call list by number. Each view checks the request, calls one
service and answers JSON; anything unknown or malformed is a 400 naming the field, and
nothing changes."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.cache import never_cache

from web.http import (
    BadPayload,
    error_response,
    json_body_decode,
    limit_body,
    operator_required,
    require_methods,
)

from . import consent, selectors, suppression
from .models import ConsentSource, Suppression
from .validators import validate_e164_phone
from .views import _user_json, _utc, consent_json

logger = logging.getLogger("relevel.api")

CONSENT_MAX_BYTES = 16 * 1024
CONSENT_TEXT_MAX_CHARS = 8000
REASON_MAX_CHARS = 200
# A consent's time may be a little ahead of ours (the product's clock), never in the future.
CLOCK_SKEW = timedelta(minutes=5)


def _invalid(what: str, errors: dict[str, str]) -> JsonResponse:
    return JsonResponse(
        {"success": False, "error": f"invalid {what}: {', '.join(errors)}", "errors": errors}, status=400
    )


def _body(request: HttpRequest) -> Any:
    return json_body_decode(request.body) if request.body else {}


def _consent_fields(body: dict[str, Any], *, now: datetime) -> tuple[dict[str, Any], dict[str, str]]:
    errors = {key: "unknown field" for key in sorted(set(body) - {"source", "text", "given_at"})}
    sources = [choice.value for choice in ConsentSource]
    source = body.get("source")
    if source not in sources:
        errors["source"] = f"required, one of {', '.join(sources)}"
    text = body.get("text")
    if not isinstance(text, str) or not text.strip() or len(text) > CONSENT_TEXT_MAX_CHARS:
        errors["text"] = (
            "required: the wording agreed to, or a reference to it "
            f"(at most {CONSENT_TEXT_MAX_CHARS} characters)"
        )
    given_at: datetime | None = now
    if "given_at" in body:
        raw = body["given_at"]
        given_at = parse_datetime(raw) if isinstance(raw, str) else None
        if given_at is None or timezone.is_naive(given_at):
            errors["given_at"] = "an ISO 8601 time with its offset, such as 2026-12-07T09:30:00Z"
        elif given_at > now + CLOCK_SKEW:
            errors["given_at"] = "in the future"
    return {"source": source, "text": text, "given_at": given_at}, errors


@never_cache
@require_methods("PUT")
@operator_required
@limit_body(CONSENT_MAX_BYTES)
def user_consent(request: HttpRequest, external_id: str) -> JsonResponse:
    """Record the consent the person gave (``{"source", "text", "given_at"}``): a new row of
    their history, current if it is the newest, and the end of an opt-out. 201."""
    user = selectors.user_by_external_id(external_id=external_id)
    if user is None:
        return error_response(f"no user with external_id {external_id[:140]!r}", 404)
    try:
        body = _body(request)
    except BadPayload as exc:
        return error_response(str(exc), 400)
    if not isinstance(body, dict):
        return error_response('body must be a JSON object such as {"source": "app", "text": "..."}', 400)
    now = timezone.now()
    fields, errors = _consent_fields(body, now=now)
    if errors:
        return _invalid("consent", errors)
    row = consent.user_consent_record(
        user_id=user.pk, recorded_by=f"api {request.operator}", now=now, **fields
    )
    user.refresh_from_db()
    logger.info("Consent API: user %s (%s) consent %s by %s", user.pk, external_id, row.pk, request.operator)
    return JsonResponse({"success": True, "consent": consent_json(row), "user": _user_json(user)}, status=201)


def suppression_json(row: Suppression) -> dict[str, Any]:
    return {
        "number": row.number,
        "reason": row.reason,
        "source": row.source,
        "created_at": _utc(row.created_at),
        "created_by": row.created_by,
    }


@never_cache
@require_methods("PUT", "DELETE")
@operator_required
@limit_body(CONSENT_MAX_BYTES)
def suppression_detail(request: HttpRequest, number: str) -> HttpResponse:
    """PUT: put the number on the do-not-call list (body optional ``{"reason": "..."}``):
    201 added, 200 already there. DELETE: take it off: 204, or 404 if it was not on it."""
    try:
        validate_e164_phone(number)
    except ValidationError as exc:
        return _invalid("number", {"number": " ".join(exc.messages)})
    if request.method == "DELETE":
        if not suppression.suppression_remove(number=number, removed_by=request.operator):
            return error_response("this number is not on the suppression list", 404)
        return HttpResponse(status=204)
    try:
        body = _body(request)
    except BadPayload as exc:
        return error_response(str(exc), 400)
    if not isinstance(body, dict):
        return error_response(
            'body must be a JSON object such as {"reason": "asked on a call"}, or empty', 400
        )
    errors = {key: "unknown field" for key in sorted(set(body) - {"reason"})}
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > REASON_MAX_CHARS:
        errors["reason"] = f"a text of at most {REASON_MAX_CHARS} characters"
    if errors:
        return _invalid("suppression", errors)
    row, created = suppression.suppression_add(
        number=number, reason=reason, source=ConsentSource.API, created_by=f"api {request.operator}"
    )
    return JsonResponse(
        {"success": True, "result": "created" if created else "exists", "suppression": suppression_json(row)},
        status=201 if created else 200,
    )
