"""HTTP edges: check the request (decorators), parse, call one service, answer JSON."""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from redis.exceptions import RedisError

from web.http import (
    BadPayload,
    error_response,
    json_body_decode,
    limit_body,
    operator_required,
    require_methods,
)

from . import forecast, health_checks, monitoring, outcomes, policy, policy_changes, queues
from .decorators import (
    connection_checked_without_a_query,
    provider_webhook_authenticated,
    rate_limit,
    redis_unavailable_response,
)
from .metrics import metrics_exposition
from .providers import LEGACY_WEBHOOK_PROVIDERS, PROVIDER_CLASSES, provider_named
from .providers.base import WebhookIgnored, WebhookPayloadError

logger = logging.getLogger("relevel.webhooks")

WEBHOOK_MAX_BYTES = 256 * 1024
TRIGGER_RATE_LIMIT = 5
TRIGGER_RATE_PERIOD_SECONDS = 60


# --- Provider webhooks --------------------------------------------------------------------


@csrf_exempt
@require_methods("POST")
def provider_webhook(request: HttpRequest, provider: str) -> JsonResponse:
    """``/api/webhooks/<provider>``: one provider's status callback, for its own calls."""
    if provider not in PROVIDER_CLASSES:
        return error_response(
            f"unknown provider {provider[:40]!r}; expected one of {', '.join(PROVIDER_CLASSES)}", 404
        )
    return _webhook(request, provider=provider, scope=(provider,))


@csrf_exempt
@require_methods("POST")
def call_webhook(request: HttpRequest) -> JsonResponse:
    """``/api/webhooks/call``, the original design's URL: its flat format exactly as before,
    and CallKaro's envelope, for the calls CallKaro or the simulator placed."""
    return _webhook(request, provider="callkaro", scope=LEGACY_WEBHOOK_PROVIDERS)


@limit_body(WEBHOOK_MAX_BYTES)
@provider_webhook_authenticated
@connection_checked_without_a_query
def _webhook(request: HttpRequest, *, provider: str, scope: tuple[str, ...]) -> JsonResponse:
    """Record the status, schedule a retry if it calls for one."""
    try:
        payload = json_body_decode(request.body)
        event = provider_named(provider).parse_webhook(payload)
    except (BadPayload, WebhookPayloadError) as exc:
        logger.warning("Webhook from %s rejected: %s", provider, exc)
        return error_response(str(exc), 400)
    except WebhookIgnored as exc:
        return _ignored(provider, str(exc))
    try:
        result = outcomes.call_apply_event(event=event, providers=scope)
    except outcomes.CallNotFound as exc:
        if not isinstance(payload, dict) or "call_id" not in payload or "event" in payload:
            # A provider's account-level webhook sees every call of the account (inbound
            # calls, dashboard tests, another deployment's): not ours, nothing to do.
            return _ignored(provider, f"not a call relevel placed ({exc})")
        logger.warning("Webhook for an unknown call: %s", exc)
        return error_response(str(exc), 404)
    return JsonResponse(
        {
            "success": True,
            "call_id": str(result.call.pk),
            "status": result.call.status,
            "retry_scheduled": result.retry_scheduled,
        }
    )


def _ignored(provider: str, why: str) -> JsonResponse:
    logger.info("Webhook from %s ignored: %s", provider, why)
    return JsonResponse({"success": True, "ignored": why})


# --- Operator API -------------------------------------------------------------------------


@require_methods("POST")
@operator_required
@rate_limit(scope="queue-trigger", limit=TRIGGER_RATE_LIMIT, period=TRIGGER_RATE_PERIOD_SECONDS)
def queue_trigger(request: HttpRequest) -> JsonResponse:
    """Enqueue one scheduling tick now (the tick itself is safe to run concurrently)."""
    try:
        job = queues.enqueue_tick()
    except RedisError as exc:
        return redis_unavailable_response(exc)
    logger.info("Scheduling tick %s triggered by %s", job.id, request.operator)
    return JsonResponse(
        {"success": True, "jobId": job.id, "message": "Daily calls scheduler triggered successfully"},
        status=202,
    )


@never_cache
@require_methods("GET")
@operator_required
def queue_status(request: HttpRequest) -> JsonResponse:
    """The calls queue (``queue``, the original design's answer) and every queue (``queues``)."""
    try:
        report = monitoring.queue_status_report(now=timezone.now())
    except monitoring.RedisUnavailable as exc:
        logger.error("Queue status: Redis unavailable: %s", exc)
        return JsonResponse(
            {
                "success": False,
                "error": f"Redis is unavailable: {exc}",
                "queue": {"name": settings.CALLS_QUEUE, "health": "unhealthy", "reason": str(exc)},
                "queues": monitoring.all_queues_status(),
            },
            status=503,
        )
    healthy = all(status["health"] == "healthy" for status in report["queues"])
    return JsonResponse({"success": healthy, **report}, status=200 if healthy else 503)


@never_cache
@require_methods("GET")
@operator_required
def admin_queues(request: HttpRequest) -> JsonResponse:
    """Every queue's counts, where the dashboard is, and the API endpoints."""
    statuses = monitoring.all_queues_status()
    healthy = all(status["health"] == "healthy" for status in statuses)
    return JsonResponse(
        {
            "success": healthy,
            "dashboard": reverse("django_rq:home"),
            "queues": statuses,
            "endpoints": [
                {
                    "method": "POST",
                    "path": reverse("queue-trigger"),
                    "description": "Enqueue a scheduling tick now",
                },
                {
                    "method": "GET",
                    "path": reverse("queue-status"),
                    "description": "Calls queue counts and crons",
                },
                {"method": "GET", "path": reverse("admin-queues"), "description": "All queues (this page)"},
                {"method": "GET", "path": reverse("health"), "description": "Database and Redis health"},
                {
                    "method": "GET",
                    "path": reverse("health") + "?detail=1",
                    "description": "Every check of manage.py check_calls, with reasons",
                },
                {"method": "GET", "path": reverse("metrics"), "description": "Prometheus metrics"},
                {
                    "method": "GET",
                    "path": reverse("capacity"),
                    "description": "Users due per 15-minute slot against the provider's capacity",
                },
                {"method": "GET", "path": reverse("dashboard:index"), "description": "Operators' dashboard"},
                {
                    "method": "GET",
                    "path": reverse("api-schema"),
                    "description": "This API described as OpenAPI 3.1 (staff session)",
                },
                {
                    "method": "POST",
                    "path": reverse("call-webhook"),
                    "description": "Provider status callback",
                },
            ],
        },
        status=200 if healthy else 503,
    )


@never_cache
@require_methods("GET", "HEAD")
def health(request: HttpRequest) -> JsonResponse:
    """For load balancers: no authentication, and no reasons (they go to the log).
    ``?detail=1``: every check of `manage.py check_calls`, with reasons, for operators."""
    detail = request.GET.get("detail", "0")
    if detail not in ("0", "1"):
        return error_response("detail must be 1 (every check, for operators) or 0", 400)
    if detail == "1":
        return _health_detail(request)
    problems = monitoring.dependency_problems()
    checks = {name: ("down" if name in problems else "ok") for name in ("database", "redis")}
    # Delayed jobs nobody releases are a worker problem, not this web server's: 200 either way.
    late = None if "redis" in problems else monitoring.scheduler_problem()
    checks["scheduler"] = "unknown" if "redis" in problems else ("overdue" if late else "ok")
    if late:
        logger.warning("Health check: %s", late)
    if problems:
        logger.error(
            "Health check failed: %s", "; ".join(f"{name}: {reason}" for name, reason in problems.items())
        )
        return JsonResponse({"status": "unavailable", "down": sorted(problems), **checks}, status=503)
    return JsonResponse({"status": "degraded" if late else "ok", **checks})


@operator_required
def _health_detail(request: HttpRequest) -> JsonResponse:
    results = health_checks.checks_run(now=timezone.now())
    problems = health_checks.problems_found(results)
    for problem in problems:
        logger.warning("Health check %s: %s", problem.code, problem.message)
    return JsonResponse(
        {"status": "problem" if problems else "ok", "checks": [result.as_dict() for result in results]},
        status=503 if problems else 200,
    )


# --- Call policy --------------------------------------------------------------------------


@never_cache
@require_methods("GET", "PATCH")
@operator_required
@limit_body(16 * 1024)
def call_policy(request: HttpRequest) -> JsonResponse:
    """GET: the stored policy (null: the setting applies) and the rules in force. PATCH:
    change some of it, all or nothing; an unknown key or a bad value is a 400 naming it."""
    if request.method == "PATCH":
        try:
            changes = json_body_decode(request.body)
        except BadPayload as exc:
            return error_response(str(exc), 400)
        if not isinstance(changes, dict) or not changes:
            return error_response("body must be a JSON object with the keys to change", 400)
        try:
            policy_changes.policy_update(
                changes=changes,
                user_id=request.user.pk if request.operator.startswith("user:") else None,
                actor=request.operator,
            )
        except policy_changes.PolicyInvalid as exc:
            return JsonResponse(
                {"success": False, "error": f"invalid call policy: {exc}", "errors": exc.errors}, status=400
            )
    return JsonResponse({"success": True, "policy": policy.policy_as_dict()})


# --- Prometheus -----------------------------------------------------------------------------


@never_cache
@require_methods("GET")
@operator_required
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus gauges for the whole deployment, read from the database and Redis now."""
    body, content_type = metrics_exposition()
    return HttpResponse(body, content_type=content_type)


# --- Capacity forecast --------------------------------------------------------------------


@never_cache
@require_methods("GET")
@operator_required
def capacity(request: HttpRequest) -> JsonResponse:
    """The next 24 hours' 15-minute slots with users due, the busiest first: most calls
    that will be missed, then most users due, then the earliest."""
    summary = forecast.capacity_summary(now=timezone.now())
    slots = sorted(summary.slots, key=lambda slot: (-slot.will_miss, -slot.due, slot.start))
    return JsonResponse(
        {
            "success": True,
            "provider": summary.provider,
            "max_live_calls": summary.max_live_calls or None,
            "max_calls_per_second": summary.max_calls_per_second or None,
            "average_call_seconds": round(summary.average_call_seconds, 1),
            "window_minutes": summary.window.total_seconds() / 60,
            "paused": summary.paused,
            "slots": [
                {
                    "start": slot.start.isoformat().replace("+00:00", "Z"),
                    "due": slot.due,
                    "capacity": slot.capacity,
                    "will_miss": slot.will_miss,
                    "skipped": slot.skipped,
                }
                for slot in slots
            ],
        }
    )
