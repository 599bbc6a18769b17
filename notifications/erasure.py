"""The notifications' part of forgetting a person (users.erasure.forget_person): the rows
stay (a day's message is counted once) without the masked address, the provider's message
id (Twilio keeps the number and the text under it) or an error quoting the person; messages
still waiting are skipped; their SMS opt-out loses the reply's id; and the send jobs go
from Redis."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.db.models import Value
from django.db.models.functions import Replace

from calls import queues
from calls.erasure import ERASED, MIN_SCRUBBED_LENGTH

from .models import Notification, NotificationStatus, SmsOptOut
from .services import notification_job_id

logger = logging.getLogger("relevel.notifications")


def _jobs_delete(notification_ids: list[int]) -> None:
    queue = queues.queue_named(settings.NOTIFICATIONS_QUEUE)
    ids = [notification_job_id(pk) for pk in notification_ids]
    for start in range(0, len(ids), 500):
        for job in queue.job_class.fetch_many(ids[start : start + 500], connection=queue.connection):
            if job is not None:
                job.delete()


def notifications_erase_person(*, user_id: int, identifiers: Iterable[str], now: datetime) -> int:
    """Strip the person's messages and SMS opt-out of what identifies them; returns how
    many messages were changed. Runs in the caller's transaction."""
    messages = Notification.objects.filter(user_id=user_id)
    messages.filter(status=NotificationStatus.PENDING).update(
        status=NotificationStatus.SKIPPED, error="The person was forgotten (erasure).", updated_at=now
    )
    for value in sorted(
        {v for v in identifiers if v and len(v) >= MIN_SCRUBBED_LENGTH}, key=len, reverse=True
    ):
        messages.filter(error__contains=value).update(error=Replace("error", Value(value), Value(ERASED)))
    changed = messages.update(recipient="", provider_message_id="")
    SmsOptOut.objects.filter(user_id=user_id).update(message_sid="")
    notification_ids = list(messages.values_list("pk", flat=True))
    queues.on_commit(lambda: _jobs_delete(notification_ids))
    return changed
