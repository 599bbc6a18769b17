"""Outcomes: record what the provider reports about a call, finish calls, schedule retries."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError

from . import bulk, queues
from .models import RETRY_STATUSES, STATUS_RANK, TERMINAL_STATUSES, Call, CallStatus
from .providers.base import CallEvent
from .slots import zone_or_none

logger = logging.getLogger("relevel.calls")
User = get_user_model()


def humanize_delay(seconds: int) -> str:
    if seconds and seconds % 60 == 0:
        minutes = seconds // 60
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def insert_calls_ignoring_conflicts(calls: list[Call]) -> list[int]:
    """The conditional insert that claims: the ids of the rows really inserted."""
    return bulk.insert_ignoring_conflicts(calls, conflict_fields=["user", "local_date", "attempt"])


def call_finish(call: Call, *, status: str, error: str = "", now: datetime) -> None:
    """Move a locked call to ``status``, keeping the error it already has unless given one."""
    call.status = status
    call.error = error or call.error
    call.last_status_at = now
    if status in TERMINAL_STATUSES:
        call.completed_at = now
    call.save(update_fields=["status", "error", "last_status_at", "completed_at"])


class CallNotFound(LookupError):
    pass


@dataclass(frozen=True)
class EventResult:
    call: Call
    applied: bool
    retry_scheduled: bool


def call_apply_event(*, event: CallEvent) -> EventResult:
    """Record a provider status report. Status only moves forward; terminal is final.

    Concurrent deliveries of one event are serialised on the call row, and the retry they
    may trigger is a conditional insert, so the same outcome delivered twice schedules one
    retry.
    """
    now = timezone.now()
    with transaction.atomic():
        call = Call.objects.select_for_update().filter(provider_call_id=event.provider_call_id).first()
        if call is None and event.our_call_id is not None:
            call = Call.objects.select_for_update().filter(pk=event.our_call_id).first()
            if call is not None and call.provider_call_id not in (None, "", event.provider_call_id):
                call = None  # our id, but another provider call: not this call's event
        if call is None:
            raise CallNotFound(f"no call with call_id {event.provider_call_id[:64]}")

        if call.is_terminal or STATUS_RANK[event.status] <= STATUS_RANK[call.status]:
            logger.info(
                "Call %s: ignoring %s webhook, call is already %s", call.pk, event.status, call.status
            )
            return EventResult(call=call, applied=False, retry_scheduled=False)

        call.provider_call_id = event.provider_call_id
        call.status = event.status
        call.last_status_at = now
        call.provider_payloads = [*call.provider_payloads, event.raw]
        # Only what this event changes: the webhook is the hottest write, and rewriting
        # every column (the transcript, all payloads) is most of its cost.
        fields = ["provider_call_id", "status", "last_status_at", "provider_payloads"]
        for field, value in (
            ("transcript", event.transcript),
            ("recording_url", event.recording_url),
            ("duration_seconds", event.duration_seconds),
            ("error", event.error_message),
        ):
            if value not in (None, ""):
                setattr(call, field, value)
                fields.append(field)
        if call.status in TERMINAL_STATUSES:
            call.completed_at = now
            fields.append("completed_at")
        call.save(update_fields=fields)
        logger.info("[Webhook:%s] Updated call %s: %s", call.provider or "provider", call.pk, call.status)
        retry_scheduled = False
        if call.status in RETRY_STATUSES:
            retry_scheduled = call_schedule_retry(call=call, now=now)
    return EventResult(call=call, applied=True, retry_scheduled=retry_scheduled)


def call_schedule_retry(*, call: Call, now: datetime) -> bool:
    """Schedule the next attempt of a failed/unanswered call; True if this call created it.

    Must run inside the transaction that recorded the outcome: the job is enqueued when it
    commits, and the insert is conditional, so a repeated outcome creates nothing.
    """
    max_retries = settings.CALL_MAX_RETRIES
    if call.attempt > max_retries:
        logger.info("Call %s - max retries (%s) reached", call.pk, max_retries)
        return False
    user = User.objects.only("id", "phone", "call_enabled", "local_tz").get(pk=call.user_id)
    if not user.is_callable:
        logger.info("Call %s: no retry, the user can no longer be called", call.pk)
        return False
    delay = settings.CALL_RETRY_DELAY_SECONDS
    # A retry belongs to its call's local day: one that would fall on the next (a late
    # evening call, or a stuck call the tick only finds the next morning) is not made.
    tz = zone_or_none(user.local_tz)
    if tz is None:
        logger.info("Call %s: no retry, the user's time zone %r is unknown", call.pk, user.local_tz)
        return False
    due = (now + timedelta(seconds=delay)).astimezone(tz)
    if due.date() != call.local_date:
        logger.info(
            "Call %s: no retry, %s is past its local day, %s",
            call.pk,
            f"{due:%Y-%m-%d %H:%M %Z}",
            call.local_date,
        )
        return False
    retry = Call(
        user_id=call.user_id,
        to_number=user.phone,
        agent_id=call.agent_id,
        attempt=call.attempt + 1,
        local_date=call.local_date,
        retry_of_id=call.pk,
        status=CallStatus.QUEUED,
        scheduled_for=now + timedelta(seconds=delay),
        provider=settings.CALL_PROVIDER,
    )
    inserted = insert_calls_ignoring_conflicts([retry])
    if not inserted:
        return False
    retry_id, due = inserted[0], retry.scheduled_for
    queues.on_commit(lambda: _schedule_retry_job(retry_id, due))
    logger.info(
        "Scheduled retry %s/%s for call %s in %s", call.attempt, max_retries, call.pk, humanize_delay(delay)
    )
    return True


def _schedule_retry_job(call_id: int, due: datetime) -> None:
    try:
        queues.enqueue_place_call(call_id, at=due)
    except RedisError as exc:
        # The retry row is committed and queued; the first tick after it is due finds it
        # without a job and enqueues it.
        logger.error(
            "Redis unreachable (%s): retry call %s will be enqueued by a tick", type(exc).__name__, call_id
        )
