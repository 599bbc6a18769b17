"""HTTP edges: parse, authenticate, call one service, answer JSON."""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import services
from .providers import get_provider
from .providers.base import WebhookPayloadError

logger = logging.getLogger("relevel.webhooks")


def error_response(message: str, status: int) -> JsonResponse:
    return JsonResponse({"success": False, "error": message}, status=status)


@csrf_exempt
@require_POST
def call_webhook(request):
    provider = get_provider()
    body = request.body
    if settings.CALLKARO_WEBHOOK_SECRET:
        if not provider.verify_webhook_signature(body=body, headers=request.headers):
            return error_response("invalid or missing webhook signature", 401)
    elif not settings.DEBUG:
        return error_response("webhook secret not configured", 503)
    else:
        logger.warning("Accepting an unsigned webhook: CALLKARO_WEBHOOK_SECRET is not set (DEBUG)")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return error_response("body is not valid JSON", 400)
    try:
        event = provider.parse_webhook(payload)
    except WebhookPayloadError as exc:
        return error_response(str(exc), 400)
    try:
        result = services.call_apply_event(event=event)
    except services.CallNotFound as exc:
        return error_response(str(exc), 404)
    return JsonResponse(
        {
            "success": True,
            "call_id": str(result.call.pk),
            "status": result.call.status,
            "retry_scheduled": result.retry_scheduled,
        }
    )
