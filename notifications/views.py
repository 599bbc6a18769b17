"""Inbound SMS from Twilio: replies to our messages (STOP, START, STOP CALLS)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from twilio.twiml.messaging_response import MessagingResponse

from web.http import error_response, limit_body, require_methods

from .replies import sms_reply_receive
from .sms_twilio import twilio_signature_valid

logger = logging.getLogger("relevel.notifications")

# An inbound SMS is a few hundred bytes of form fields (more with media URLs).
TWILIO_WEBHOOK_MAX_BYTES = 64 * 1024


@csrf_exempt
@require_methods("POST")
@limit_body(TWILIO_WEBHOOK_MAX_BYTES)
def twilio_sms_webhook(request: HttpRequest) -> HttpResponse | JsonResponse:
    """Twilio's request for an incoming message, checked with the library's RequestValidator
    against the URL Twilio called (TWILIO_SMS_WEBHOOK_URL behind a proxy that rewrites it);
    answered with TwiML: empty, or a confirmation for STOP CALLS."""
    if not settings.TWILIO_AUTH_TOKEN:
        return error_response("Twilio is not configured: set TWILIO_AUTH_TOKEN", 503)
    url = settings.TWILIO_SMS_WEBHOOK_URL or request.build_absolute_uri()
    signature = request.headers.get("X-Twilio-Signature", "")
    if not twilio_signature_valid(url=url, params=request.POST, signature=signature):
        logger.warning(
            "Twilio SMS webhook: %s X-Twilio-Signature for %s from %s",
            "invalid" if signature else "no",
            url,
            request.META.get("REMOTE_ADDR", "-"),
        )
        return error_response("invalid X-Twilio-Signature", 403)
    outcome = sms_reply_receive(
        from_number=request.POST.get("From", ""),
        body=request.POST.get("Body", ""),
        message_sid=request.POST.get("MessageSid", ""),
        opt_out_type=request.POST.get("OptOutType", ""),
    )
    twiml = MessagingResponse()
    if outcome.reply:
        twiml.message(outcome.reply)
    return HttpResponse(str(twiml), content_type="text/xml; charset=utf-8")
