"""The users API (docs/api.md, "Users"): the product that owns the users keeps them in sync
by its own id. Each view checks the request (decorators), validates with the users form,
calls one service and answers JSON."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from calls import manual
from calls.models import Call, CallResult
from calls.results import result_as_json
from calls.selectors import call_history
from calls.slots import zone_or_none

# The webhooks' JSON decoding: refuses what the database cannot store (NUL, lone
# surrogates, NaN) and bodies nested too deeply, before any of it is looked at.
from web.http import (
    BadPayload,
    error_response,
    json_body_decode,
    limit_body,
    operator_required,
    require_methods,
)

from . import calendar, call_days, consent, erasure, selectors, upsert
from .forms import IsoDateField, profile_from_json
from .models import Consent, User
from .validators import validate_external_id

logger = logging.getLogger("relevel.api")

USER_MAX_BYTES = 16 * 1024
BULK_MAX_USERS = 1_000
# 1,000 users of a few hundred bytes each, with room for indentation.
BULK_MAX_BYTES = 2 * 1024 * 1024
CONFLICT = (
    "another request took one of these external ids or phone numbers meanwhile; nothing was "
    "written, send it again"
)


def _utc(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _user_json(user: User) -> dict[str, Any]:
    now = timezone.now()
    off = calendar.user_off_today(user=user, now=now)
    next_call = None
    tz = zone_or_none(user.local_tz)
    if user.next_call_at is not None and tz is not None:
        next_call = {
            "utc": _utc(user.next_call_at),
            "local": user.next_call_at.astimezone(tz).isoformat(),
            "time_zone": user.local_tz,
        }
    return {
        "external_id": user.external_id,
        "username": user.get_username(),
        "name": user.name,
        "phone": user.phone,
        "local_tz": user.local_tz,
        "call_time": user.call_time.isoformat(),
        "call_enabled": user.call_enabled,
        "max_retries": user.max_retries,
        "retry_delay_minutes": user.retry_delay_minutes,
        "email": user.email or None,
        "notify_sms": user.notify_sms,
        "notify_email": user.notify_email,
        "context": user.context,
        "call_days": call_days.call_days_names(user.call_days),
        "pause_until": user.pause_until.isoformat() if user.pause_until else None,
        "skipped_dates": [day.isoformat() for day in calendar.user_upcoming_skips(user=user, now=now)],
        # Why the person's local today is off (not a call day, a pause, a skip, a holiday):
        # next_call then says when they are called instead.
        "off_today": (
            None if off is None else {"local_date": off.local_date.isoformat(), "reason": off.reason}
        ),
        "next_call": next_call,
        # Why a callable user has no next call (a time zone this host does not know).
        "parked_because": user.schedule_error,
        "opted_out": None
        if user.opted_out_at is None
        else {"at": _utc(user.opted_out_at), "source": user.opt_out_source, "call_id": user.opt_out_call_id},
        "consent": consent_json(consent.user_consent_current(user=user)),
    }


def consent_json(row: Consent | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "id": row.pk,
        "given_at": _utc(row.given_at),
        "source": row.source,
        "text": row.text,
        "recorded_by": row.recorded_by,
        "recorded_at": _utc(row.recorded_at),
    }


def _call_json(call: Call) -> dict[str, Any]:
    return {
        "attempt": call.attempt,
        "status": call.status,
        "scheduled_for": _utc(call.scheduled_for),
        "end_reason": call.end_reason,
        "error": call.error,
    }


def _user_forget(request: HttpRequest, external_id: str) -> HttpResponse:
    user = selectors.user_by_external_id(external_id=external_id)
    if user is None:
        return error_response(f"no user with external_id {external_id[:140]!r}", 404)
    record = erasure.forget_person(user_id=user.pk, actor=f"api ({request.operator})")
    logger.info("Users API: user %s forgotten by %s (erasure %s)", user.pk, request.operator, record.pk)
    return HttpResponse(status=204)


def _invalid_user(errors: dict[str, str]) -> JsonResponse:
    return JsonResponse(
        {"success": False, "error": f"invalid user: {', '.join(errors)}", "errors": errors}, status=400
    )


@never_cache
@require_methods("GET", "PUT", "DELETE")
@operator_required
@limit_body(USER_MAX_BYTES)
def user_detail(request: HttpRequest, external_id: str) -> HttpResponse:
    """GET: the user, their next call and today's calls. PUT: create or update the user
    with the fields given (201 created, 200 updated), all or nothing. DELETE: forget the
    person (users.erasure; 204)."""
    if request.method == "DELETE":
        return _user_forget(request, external_id)
    if request.method == "GET":
        user = selectors.user_by_external_id(external_id=external_id)
        if user is None:
            return error_response(f"no user with external_id {external_id[:140]!r}", 404)
        local_date = selectors.user_local_date(user=user, now=timezone.now())
        calls = selectors.user_calls_on(user=user, local_date=local_date)
        return JsonResponse(
            {
                "success": True,
                "user": _user_json(user),
                "today": {"local_date": local_date.isoformat(), "calls": [_call_json(c) for c in calls]},
            }
        )

    try:
        validate_external_id(external_id)
    except ValidationError as exc:
        return _invalid_user({"external_id": " ".join(exc.messages)})
    try:
        body = json_body_decode(request.body)
    except BadPayload as exc:
        return error_response(str(exc), 400)
    if not isinstance(body, dict):
        return error_response("body must be a JSON object with the user's fields", 400)
    if body.get("external_id", external_id) != external_id:
        return _invalid_user({"external_id": "must be the one in the URL, or left out"})
    row, errors = profile_from_json({**body, "external_id": external_id})
    if errors:
        return _invalid_user(errors)
    try:
        result = upsert.users_upsert(rows=[row])
    except upsert.UsersInvalid as exc:
        errors = exc.errors[0]
        if set(errors) == {"call_enabled"}:
            # Valid, but refused by the person's own choice: a conflict, not a bad request.
            return error_response(f"calls not enabled: {errors['call_enabled']}", 409)
        return _invalid_user(errors)
    except IntegrityError:
        return error_response(CONFLICT, 409)
    [outcome], [user] = result.results, result.users
    logger.info("Users API: user %s (%s) %s by %s", user.pk, external_id, outcome, request.operator)
    return JsonResponse(
        {"success": True, "result": outcome, "user": _user_json(user)},
        status=201 if outcome == "created" else 200,
    )


@never_cache
@require_methods("POST")
@operator_required
@limit_body(BULK_MAX_BYTES)
def users_bulk(request: HttpRequest) -> JsonResponse:
    """Create or update up to BULK_MAX_USERS users in one transaction: every row is
    validated first, and if any is invalid nothing is written and the 400 lists each bad
    row's errors by its index."""
    try:
        body = json_body_decode(request.body)
    except BadPayload as exc:
        return error_response(str(exc), 400)
    if not isinstance(body, dict) or set(body) != {"users"}:
        return JsonResponse(
            {
                "success": False,
                "error": 'body must be a JSON object with one key, "users"',
                "errors": {key: "unknown field" for key in body if key != "users"}
                if isinstance(body, dict)
                else {},
            },
            status=400,
        )
    items = body["users"]
    if not isinstance(items, list) or len(items) > BULK_MAX_USERS:
        return JsonResponse(
            {
                "success": False,
                "error": f"users must be a list of at most {BULK_MAX_USERS:,} users per request",
                "errors": {"users": f"a list of at most {BULK_MAX_USERS:,} users"},
            },
            status=400,
        )
    rows, errors = [], {}
    for index, item in enumerate(items):
        row, row_errors = profile_from_json(item)
        if row_errors:
            errors[index] = row_errors
        rows.append(row or None)
    if errors:
        # The valid rows' conflicts too, so that one answer lists every problem. Merged by
        # row, never replacing: users_conflicts skips the invalid rows today, and a row's
        # field errors must survive if that ever changes.
        for index, row_errors in upsert.users_conflicts(rows, label="user").items():
            errors.setdefault(index, {}).update(row_errors)
    else:
        try:
            result = upsert.users_upsert(rows=rows)
        except upsert.UsersInvalid as exc:
            errors = exc.errors
        except IntegrityError:
            return error_response(CONFLICT, 409)
    if errors:
        return JsonResponse(
            {
                "success": False,
                "error": f"{len(errors)} of {len(items)} users are invalid; nothing was written",
                "errors": {str(index): row_errors for index, row_errors in sorted(errors.items())},
            },
            status=400,
        )
    logger.info(
        "Users API: bulk of %s by %s: %s created, %s updated, %s unchanged",
        len(rows),
        request.operator,
        result.count("created"),
        result.count("updated"),
        result.count("unchanged"),
    )
    return JsonResponse(
        {
            "success": True,
            "created": result.count("created"),
            "updated": result.count("updated"),
            "unchanged": result.count("unchanged"),
            "canceled_calls": result.canceled_calls,
            "results": [
                {"external_id": row["external_id"], "result": outcome}
                for row, outcome in zip(rows, result.results, strict=True)
            ],
        }
    )


@never_cache
@require_methods("POST")
@operator_required
def user_call_now(request: HttpRequest, external_id: str) -> JsonResponse:
    """Place one call to the user now, outside the daily schedule
    (docs/operating/call-policy.md, "Call now"): 202 with the call, 404 for an unknown user,
    409 when the user cannot be called now (paused, outside the calling hours, calls
    disabled, a call of theirs live), 429 within 10 minutes of the last."""
    user = selectors.user_by_external_id(external_id=external_id)
    if user is None:
        return error_response(f"no user with external_id {external_id[:140]!r}", 404)
    try:
        call = manual.user_call_now(user_id=user.pk, requested_by=request.operator)
    except manual.CallNowRefused as exc:
        if exc.retry_after is not None:
            return error_response(str(exc), 429, headers={"Retry-After": str(exc.retry_after)})
        return error_response(str(exc), 409)
    return JsonResponse(
        {"success": True, "call_id": str(call.pk), "manual": True, "call": _call_json(call)}, status=202
    )


MAX_HISTORY_DAYS = 90


@never_cache
@require_methods("GET")
@operator_required
def user_calls(request: HttpRequest, external_id: str) -> JsonResponse:
    """The user's calls of the last ``days`` local days (default 7, at most 90), newest
    first, each with its result (docs/conversation.md, "The calls API")."""
    raw_days = request.GET.get("days", "7")
    if not raw_days.isdigit() or not 1 <= int(raw_days) <= MAX_HISTORY_DAYS:
        message = f"a whole number of days from 1 to {MAX_HISTORY_DAYS}"
        return JsonResponse(
            {"success": False, "error": f"invalid days: {message}", "errors": {"days": message}}, status=400
        )
    user = selectors.user_by_external_id(external_id=external_id)
    if user is None:
        return error_response(f"no user with external_id {external_id[:140]!r}", 404)
    today = selectors.user_local_date(user=user, now=timezone.now())
    calls = call_history(user_id=user.pk, since=today - timedelta(days=int(raw_days) - 1))
    return JsonResponse(
        {
            "success": True,
            "external_id": external_id,
            "days": int(raw_days),
            "calls": [_history_json(call) for call in calls],
        }
    )


def _history_json(call: Call) -> dict[str, Any]:
    def when(instant: datetime | None) -> str | None:
        return _utc(instant) if instant is not None else None

    try:
        result = result_as_json(call.result)
    except CallResult.DoesNotExist:
        result = None
    return {
        "call_id": str(call.pk),
        "status": call.status,
        "attempt": call.attempt,
        "manual": call.manual,
        "callback": call.callback,
        "local_date": call.local_date.isoformat(),
        "scheduled_for": when(call.scheduled_for),
        "dialed_at": when(call.dialed_at),
        "ended_at": when(call.completed_at),
        "duration_seconds": call.duration_seconds,
        "end_reason": call.end_reason,
        "result": result,
    }


# Sources an operator's or the product's request may give; "call" and "sms" are what relevel
# records itself, from what it heard.
OPT_OUT_REQUEST_SOURCES = ("api", "app", "web", "verbal", "admin", "import")


@never_cache
@require_methods("POST")
@operator_required
@limit_body(USER_MAX_BYTES)
def user_opt_out(request: HttpRequest, external_id: str) -> JsonResponse:
    """Opt the person out of every call at once (body ``{"source": "app"}``, default "api"):
    their queued calls are canceled, and only a new opt-in calls them again."""
    user = selectors.user_by_external_id(external_id=external_id)
    if user is None:
        return error_response(f"no user with external_id {external_id[:140]!r}", 404)
    try:
        body = json_body_decode(request.body) if request.body else {}
    except BadPayload as exc:
        return error_response(str(exc), 400)
    if not isinstance(body, dict):
        return error_response('body must be a JSON object such as {"source": "app"}', 400)
    source = body.get("source", "api")
    errors = {key: "unknown field" for key in sorted(set(body) - {"source"})}
    if source not in OPT_OUT_REQUEST_SOURCES:
        errors["source"] = f"one of {', '.join(OPT_OUT_REQUEST_SOURCES)}"
    if errors:
        return JsonResponse(
            {"success": False, "error": f"invalid opt-out: {', '.join(errors)}", "errors": errors}, status=400
        )
    changed = consent.user_opt_out(user_id=user.pk, source=source)
    user.refresh_from_db()
    logger.info("Users API: user %s (%s) opted out by %s", user.pk, external_id, request.operator)
    return JsonResponse(
        {"success": True, "result": "opted_out" if changed else "already_opted_out", "user": _user_json(user)}
    )


SKIP_KEYS = ("date",)


@never_cache
@require_methods("POST")
@operator_required
@limit_body(USER_MAX_BYTES)
def user_skip(request: HttpRequest, external_id: str) -> JsonResponse:
    """No call for the person on a day (body ``{"date": "YYYY-MM-DD"}``, default their local
    today; docs/operating/calendar.md): that day's queued calls, a retry included, are
    canceled, and the day shows as skipped. 400 naming the field for a bad body or a date
    before their today."""
    user = selectors.user_by_external_id(external_id=external_id)
    if user is None:
        return error_response(f"no user with external_id {external_id[:140]!r}", 404)
    try:
        body = json_body_decode(request.body) if request.body else {}
    except BadPayload as exc:
        return error_response(str(exc), 400)
    if not isinstance(body, dict):
        return error_response('body must be a JSON object such as {"date": "2026-12-24"}', 400)
    errors = {key: "unknown field; the one field is date" for key in sorted(set(body) - set(SKIP_KEYS))}
    local_date = None
    if "date" in body:
        try:
            local_date = IsoDateField().clean(body["date"]) if isinstance(body["date"], str) else None
        except ValidationError as exc:
            errors["date"] = " ".join(exc.messages)
        else:
            if local_date is None:
                errors["date"] = 'must be a date "YYYY-MM-DD" (leave it out for the person\'s today)'
    if not errors:
        try:
            result = calendar.user_skip_day(
                user_id=user.pk, local_date=local_date, requested_by=str(request.operator)
            )
        except calendar.SkipRefused as exc:
            errors["date"] = str(exc)
    if errors:
        return JsonResponse(
            {"success": False, "error": f"invalid skip: {', '.join(errors)}", "errors": errors}, status=400
        )
    user.refresh_from_db()
    logger.info(
        "Users API: user %s (%s) skips %s, by %s", user.pk, external_id, result.local_date, request.operator
    )
    return JsonResponse(
        {
            "success": True,
            "result": "skipped" if result.created else "already_skipped",
            "date": result.local_date.isoformat(),
            "canceled_calls": result.canceled_calls,
            "user": _user_json(user),
        }
    )
