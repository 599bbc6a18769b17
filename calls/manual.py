"""Call now: one call to a user outside the daily schedule, asked for by an operator."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError

from users.suppression import number_is_suppressed

from . import queues, selectors
from .models import Call, CallStatus
from .policy import policy_current
from .providers import default_agent_id
from .slots import zone_or_none
from .variants import variant_for, variants_active

logger = logging.getLogger("relevel.calls")
User = get_user_model()

# One manual call per user per this many seconds.
CALL_NOW_INTERVAL_SECONDS = 600


class CallNowRefused(Exception):
    """Why a manual call cannot be placed now; ``retry_after`` in seconds when it is only
    too soon."""

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def user_call_now(*, user_id: int, requested_by: str, now: datetime | None = None) -> Call:
    """Place one call to the user now, outside the daily schedule ("call now").

    It is a call of its own (``manual``): it never counts as, nor blocks, the day's first
    attempt or its retries, and is never retried. It obeys the pause and the calling hours
    (checked here, and again when a worker takes it), and a user gets at most one every
    CALL_NOW_INTERVAL_SECONDS: the user's row is locked, so two requests at once make one.
    It is refused while a call of the user is live (models.LIVE_STATUSES), and if the
    scheduled call is dialed first after all, the worker drops it (placement._wait_for_user).
    """
    now = now or timezone.now()
    rules = policy_current()
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user_id)
        if not user.is_callable:
            raise CallNowRefused("the user cannot be called: calls disabled or no phone number")
        if rules.require_consent and user.consented_at is None:
            raise CallNowRefused("no consent recorded, and the call policy requires one")
        if number_is_suppressed(number=user.phone):
            raise CallNowRefused("the number is on the do-not-call list (suppressed)")
        tz = zone_or_none(user.local_tz)
        if tz is None:
            raise CallNowRefused(f"the user's time zone {user.local_tz!r} is not one this host knows")
        if rules.paused:
            raise CallNowRefused("calls are paused (call policy)")
        if not rules.allows_hour(now, tz):
            raise CallNowRefused(
                f"{now.astimezone(tz):%H:%M %Z} is outside the calling hours ({rules.describe_hours()})"
            )
        # Under the user's row lock, which taking a call for dialing also takes: a call of
        # theirs cannot become live between this look and the commit.
        live = selectors.calls_live_of_users(user_ids=[user.pk], now=now).get(user.pk)
        if live is not None:
            raise CallNowRefused(
                f"the user is on a call now (call {live[0]}, {live[1]}); try again when it has ended"
            )
        last = (
            Call.objects.filter(user_id=user.pk, manual=True)
            .order_by("-created_at")
            .values_list("created_at", flat=True)
            .first()
        )
        if last is not None and now - last < timedelta(seconds=CALL_NOW_INTERVAL_SECONDS):
            wait = int(CALL_NOW_INTERVAL_SECONDS - (now - last).total_seconds()) + 1
            every = CALL_NOW_INTERVAL_SECONDS // 60
            raise CallNowRefused(
                f"one call now per user every {every} minutes; try again in {wait} s", retry_after=wait
            )
        variant = variant_for(user_id=user.pk, current_id=user.agent_variant_id, variants=variants_active())
        if variant is not None and variant.pk != user.agent_variant_id:
            User.objects.filter(pk=user.pk).update(agent_variant=variant.pk)
        call = Call.objects.create(
            user_id=user.pk,
            to_number=user.phone,
            variant_id=variant.pk if variant else None,
            agent_id=variant.agent_id if variant else default_agent_id(settings.CALL_PROVIDER),
            attempt=1,
            local_date=now.astimezone(tz).date(),
            status=CallStatus.QUEUED,
            scheduled_for=now,
            provider=variant.provider if variant else settings.CALL_PROVIDER,
            manual=True,
        )
        call_id = call.pk
        queues.on_commit(lambda: _enqueue_manual(call_id))
    logger.info("Call %s: manual call for user %s requested by %s", call.pk, user.pk, requested_by)
    return call


def _enqueue_manual(call_id: int) -> None:
    try:
        queues.enqueue_place_call(call_id)
    except RedisError as exc:
        logger.error(
            "Redis unreachable (%s): manual call %s will be enqueued by a tick", type(exc).__name__, call_id
        )
