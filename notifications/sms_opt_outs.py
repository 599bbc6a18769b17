"""The record of a person's SMS opt-out (SmsOptOut): written by their STOP reply
(replies.py), by Twilio refusing a send to a number that opted out with it (services.py),
and by the admin; read before any SMS is queued or sent."""

from __future__ import annotations

import logging
from datetime import datetime

from django.utils import timezone

from .models import SmsOptOut

logger = logging.getLogger("relevel.notifications")


def sms_opt_out(
    *,
    user_id: int,
    source: str,
    keyword: str,
    message_sid: str,
    also_calls: bool = False,
    now: datetime | None = None,
) -> SmsOptOut:
    """Stop SMS to the user, recording when, how (``source``: "sms", "twilio", "admin")
    and with which reply. A second STOP renews the record; one row per user (its unique
    constraint), so two replies at once cannot make two."""
    now = now or timezone.now()
    opt_out, _ = SmsOptOut.objects.update_or_create(
        user_id=user_id,
        defaults={
            "opted_out_at": now,
            "source": source,
            "keyword": keyword[:64],
            "message_sid": message_sid[:64],
            "also_calls": also_calls,
            "resumed_at": None,
            "resumed_keyword": "",
        },
    )
    logger.info("User %s opted out of SMS (%s%s)", user_id, source, f", {keyword}" if keyword else "")
    return opt_out


def sms_opt_in(*, user_id: int, keyword: str, now: datetime | None = None) -> bool:
    """Resume SMS to the user (they replied START); False if they had not opted out."""
    now = now or timezone.now()
    resumed = SmsOptOut.objects.filter(user_id=user_id, resumed_at__isnull=True).update(
        resumed_at=now, resumed_keyword=keyword[:64]
    )
    logger.info(
        "User %s %s SMS (%s)", user_id, "resumed" if resumed else "asked to resume, already getting,", keyword
    )
    return bool(resumed)
