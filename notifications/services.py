"""Writes of notifications: a missed day becomes at most one message per channel, each sent
by a job inside the user's calling hours, at most once.

The engine calls notify_missed_day when a user's local day ends with no answered call. It
runs in the engine's transaction and does no I/O beyond its INSERTs: the sends are RQ jobs
(notifications.jobs), enqueued when that transaction commits, on a queue of their own, so a
slow Twilio or mail server never holds up a tick or a webhook, and a channel failing never
blocks the other (each message is a job of its own).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from redis.exceptions import RedisError

from calls import queues
from calls.bulk import array_cursor
from calls.policy import policy_current
from calls.slots import zone_or_none
from users.models import User

from . import email as email_channel
from . import sms_twilio
from .errors import ChannelNotConfigured, RecipientOptedOut, SendFailed
from .masking import mask_recipient
from .models import Channel, Kind, Notification, NotificationStatus, SmsOptOut
from .quiet_hours import hours_open_at
from .rendering import TemplateInvalid, message_context, message_render, template_for
from .sms_opt_outs import sms_opt_out

logger = logging.getLogger("relevel.notifications")

SEND_JOB = "notifications.jobs.send_notification"
_USER_FIELDS = (
    "id",
    "name",
    "first_name",
    "phone",
    "email",
    "local_tz",
    "external_id",
    "notify_sms",
    "notify_email",
)


def notification_job_id(notification_id: int) -> str:
    return f"notify-{notification_id}"


def _max_delay() -> timedelta:
    return timedelta(hours=settings.NOTIFY_MAX_DELAY_HOURS)


def _wanted_channels(user: User) -> list[str]:
    return [
        channel
        for channel, wanted in ((Channel.SMS, user.notify_sms), (Channel.EMAIL, user.notify_email))
        if wanted
    ]


def _address(user: User, channel: str) -> str:
    return (user.phone if channel == Channel.SMS else user.email) or ""


def why_not_sendable(*, user: User, channel: str) -> str | None:
    """Why ``user`` cannot get a message on ``channel`` now, or None if they can."""
    if channel == Channel.SMS:
        if not user.notify_sms:
            return "The user turned SMS notifications off."
        if not user.phone:
            return "The user has no phone number."
        if SmsOptOut.objects.filter(user_id=user.pk, resumed_at__isnull=True).exists():
            return "The user replied STOP to our SMS."
        missing = sms_twilio.twilio_missing_settings()
        if missing:
            return f"Twilio is not configured: set {', '.join(missing)}."
        return None
    if not user.notify_email:
        return "The user turned e-mail notifications off."
    if not user.email:
        return "The user has no e-mail address."
    return None


def _too_late(*, missed_at: datetime, send_at: datetime) -> str | None:
    if send_at - missed_at <= _max_delay():
        return None
    return (
        f"Not sent: the calling hours open at {send_at:%Y-%m-%d %H:%M} UTC, more than "
        f"{settings.NOTIFY_MAX_DELAY_HOURS} h after the day was missed."
    )


def notify_missed_day(*, user_id: int, local_date: date, now: datetime | None = None) -> list[int]:
    """The engine's one way in: ``user_id``'s local day ``local_date`` ended with no answered
    call. Records one message per channel the user wants (SMS, e-mail) and enqueues its send
    when the caller's transaction commits; returns the ids of the messages this call made.

    At most one per user, day and channel, whatever happens (a second tick, a replay, two
    callers at once): the INSERT meets the unique constraint and the later caller makes
    nothing. A message that cannot be sent (no address, STOP, Twilio not configured) or
    would wait more than NOTIFY_MAX_DELAY_HOURS for the calling hours is recorded as
    skipped or dropped, with the reason, so that operators see it."""
    now = now or timezone.now()
    user = User.objects.only(*_USER_FIELDS).filter(pk=user_id).first()
    if user is None:
        return []
    tz = zone_or_none(user.local_tz)
    created: list[int] = []
    for channel in _wanted_channels(user):
        status, error, due_at = NotificationStatus.PENDING, "", now
        reason = why_not_sendable(user=user, channel=channel)
        if reason is not None:
            status, error = NotificationStatus.SKIPPED, reason
        elif tz is None:
            status, error = NotificationStatus.SKIPPED, f"The user's time zone {user.local_tz!r} is unknown."
        else:
            due_at = hours_open_at(now=now, tz=tz, policy=policy_current())
            late = _too_late(missed_at=now, send_at=due_at)
            if late is not None:
                status, error = NotificationStatus.DROPPED, late
        try:
            # A savepoint: the caller's transaction goes on after a conflict.
            with transaction.atomic():
                notification = Notification.objects.create(
                    user_id=user.pk,
                    kind=Kind.DAY_MISSED,
                    channel=channel,
                    local_date=local_date,
                    status=status,
                    due_at=due_at,
                    error=error,
                    recipient=mask_recipient(channel=channel, address=_address(user, channel)),
                )
        except IntegrityError:
            logger.info(
                "Day missed of user %s on %s: the %s message exists already", user.pk, local_date, channel
            )
            continue
        created.append(notification.pk)
        logger.info(
            "Day missed of user %s on %s: %s message %s %s%s",
            user.pk,
            local_date,
            channel,
            notification.pk,
            status,
            f" ({error})" if error else f", due {due_at:%Y-%m-%d %H:%M} UTC",
        )
        if status == NotificationStatus.PENDING:
            notification_id = notification.pk
            queues.on_commit(
                lambda notification_id=notification_id, due_at=due_at: _enqueue(notification_id, at=due_at)
            )
    return created


def notify_missed_days(*, days: Sequence[tuple[int, date]], now: datetime | None = None) -> list[int]:
    """notify_missed_day for many (user id, local date) at once, as a tick finds a rush slot
    missed: one query finds the few of those users who want a message on some channel, and
    only they are worked out one by one (a query per user was 90% of such a tick's time)."""
    if not days:
        return []
    ids = list({user_id for user_id, _ in days})
    if connection.vendor == "postgresql":
        # The ids as one array bound in binary, not an IN list of a thousand placeholders.
        with array_cursor() as (cursor, a):
            cursor.execute(
                f"SELECT id FROM {User._meta.db_table} WHERE id = ANY({a}::bigint[]) "
                "AND (notify_sms OR notify_email)",
                [ids],
            )
            wanting = {row[0] for row in cursor.fetchall()}
    else:
        wanting = set(
            User.objects.filter(Q(notify_sms=True) | Q(notify_email=True), pk__in=ids).values_list(
                "pk", flat=True
            )
        )
    created: list[int] = []
    for user_id, local_date in days:
        if user_id in wanting:
            created += notify_missed_day(user_id=user_id, local_date=local_date, now=now)
    return created


def _enqueue(notification_id: int, *, at: datetime | None = None) -> None:
    """The send job, now or at ``at``. A Redis that does not answer loses nothing: the
    sweep (notifications_sweep) finds every message still waiting after its time."""
    queue = queues.queue_named(settings.NOTIFICATIONS_QUEUE)
    options = dict(
        job_id=notification_job_id(notification_id),
        job_timeout=settings.NOTIFY_JOB_TIMEOUT,
        result_ttl=settings.JOB_RESULT_TTL,
        failure_ttl=settings.JOB_FAILURE_TTL,
        description=f"Send notification {notification_id}",
    )
    try:
        if at is None or at <= timezone.now():
            queue.enqueue(SEND_JOB, notification_id, **options)
        else:
            # RQ's scheduler releases by whole seconds, truncated: round up, never early.
            at = at.replace(microsecond=0) + timedelta(seconds=1) if at.microsecond else at
            queue.enqueue_at(at, SEND_JOB, notification_id, **options)
    except RedisError as exc:
        logger.warning(
            "Notification %s: Redis unreachable (%s); the sweep sends it", notification_id, type(exc).__name__
        )


def _finish(notification_id: int, *, status: str, error: str = "", now: datetime, **fields) -> int:
    """Move a message out of ``from_status`` (pending or sending) to ``status``: a
    conditional UPDATE, so two workers never both decide its fate."""
    from_status = fields.pop("from_status", NotificationStatus.SENDING)
    return Notification.objects.filter(pk=notification_id, status=from_status).update(
        status=status, error=error, updated_at=now, **fields
    )


def notification_send(*, notification_id: int, now: datetime | None = None) -> str:
    """Send one waiting message if it may go now; what happened, in a few words.

    Outside the user's calling hours it waits for them (a delayed job); more than
    NOTIFY_MAX_DELAY_HOURS after the day was missed it is dropped. The send is claimed
    first (pending -> sending, a conditional UPDATE), so a repeated or concurrent job sends
    nothing; a send that fails where nothing reached the service waits and tries again,
    up to NOTIFY_SEND_MAX_ATTEMPTS, and one that may have reached it is never repeated."""
    now = now or timezone.now()
    notification = Notification.objects.filter(pk=notification_id).first()
    if notification is None:
        return "gone"
    if notification.status != NotificationStatus.PENDING:
        return f"already {notification.status}"
    if notification.due_at > now:
        _enqueue(notification_id, at=notification.due_at)
        return "not due yet"
    pending = {"from_status": NotificationStatus.PENDING}
    late = _too_late(missed_at=notification.created_at, send_at=now)
    if late is not None:
        _finish(notification_id, status=NotificationStatus.DROPPED, error=late, now=now, **pending)
        logger.info("Notification %s dropped: %s", notification_id, late)
        return "dropped"
    user = User.objects.only(*_USER_FIELDS).get(pk=notification.user_id)
    tz = zone_or_none(user.local_tz)
    if tz is not None:
        opens = hours_open_at(now=now, tz=tz, policy=policy_current())
        if opens > now:
            late = _too_late(missed_at=notification.created_at, send_at=opens)
            if late is not None:
                _finish(notification_id, status=NotificationStatus.DROPPED, error=late, now=now, **pending)
                logger.info("Notification %s dropped: %s", notification_id, late)
                return "dropped"
            Notification.objects.filter(pk=notification_id, status=NotificationStatus.PENDING).update(
                due_at=opens, updated_at=now
            )
            _enqueue(notification_id, at=opens)
            logger.info(
                "Notification %s waits for the calling hours: %s UTC",
                notification_id,
                f"{opens:%Y-%m-%d %H:%M}",
            )
            return "waits for the calling hours"
    reason = why_not_sendable(user=user, channel=notification.channel)
    if reason is not None:
        _finish(notification_id, status=NotificationStatus.SKIPPED, error=reason, now=now, **pending)
        logger.info("Notification %s skipped: %s", notification_id, reason)
        return "skipped"
    claimed = Notification.objects.filter(pk=notification_id, status=NotificationStatus.PENDING).update(
        status=NotificationStatus.SENDING, attempts=F("attempts") + 1, updated_at=now
    )
    if not claimed:
        return "taken by another worker"
    return _deliver(notification, user=user, now=now)


def _deliver(notification: Notification, *, user: User, now: datetime) -> str:
    channel = notification.channel
    address = _address(user, channel)
    masked = mask_recipient(channel=channel, address=address)
    try:
        subject, body = template_for(kind=notification.kind, channel=channel)
        message = message_render(
            subject=subject, body=body, context=message_context(user=user, local_date=notification.local_date)
        )
        if channel == Channel.SMS:
            provider_id = sms_twilio.sms_send(to=address, body=message.body)
        else:
            provider_id = email_channel.email_send(to=address, subject=message.subject, body=message.body)
    except (TemplateInvalid, ChannelNotConfigured) as exc:
        _finish(notification.pk, status=NotificationStatus.FAILED, error=str(exc), now=now, recipient=masked)
        logger.error("Notification %s to %s failed: %s", notification.pk, masked, exc)
        return "failed"
    except RecipientOptedOut as exc:
        _finish(notification.pk, status=NotificationStatus.FAILED, error=str(exc), now=now, recipient=masked)
        sms_opt_out(user_id=user.pk, source="twilio", keyword="", message_sid="", now=now)
        logger.info(
            "Notification %s to %s: the number opted out with Twilio; SMS off for user %s",
            notification.pk,
            masked,
            user.pk,
        )
        return "failed"
    except SendFailed as exc:
        attempts = notification.attempts + 1
        if exc.transient and attempts < settings.NOTIFY_SEND_MAX_ATTEMPTS:
            retry_at = now + timedelta(seconds=settings.NOTIFY_RETRY_DELAY_SECONDS * attempts)
            _finish(
                notification.pk,
                status=NotificationStatus.PENDING,
                error=str(exc),
                now=now,
                due_at=retry_at,
                recipient=masked,
            )
            queues.on_commit(lambda: _enqueue(notification.pk, at=retry_at))
            logger.warning(
                "Notification %s to %s: %s; trying again at %s UTC",
                notification.pk,
                masked,
                exc,
                f"{retry_at:%H:%M:%S}",
            )
            return "will retry"
        _finish(notification.pk, status=NotificationStatus.FAILED, error=str(exc), now=now, recipient=masked)
        logger.error("Notification %s to %s failed: %s", notification.pk, masked, exc)
        return "failed"
    _finish(
        notification.pk,
        status=NotificationStatus.SENT,
        now=now,
        sent_at=timezone.now(),
        provider_message_id=provider_id[:255],
        recipient=masked,
    )
    logger.info("Notification %s sent: %s to %s", notification.pk, channel, masked)
    return "sent"


def notifications_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """What the cron's sweep does every few minutes: enqueue again every message still
    waiting a minute after its time (Redis lost its job: flushed, restarted, unreachable
    when it was enqueued), and fail the ones a worker claimed and never finished (it died
    mid-send), without sending them again: it may have gone."""
    now = now or timezone.now()
    overdue = list(
        Notification.objects.filter(
            status=NotificationStatus.PENDING, due_at__lte=now - timedelta(seconds=60)
        )
        .order_by("due_at")
        .values_list("pk", flat=True)[: settings.NOTIFY_SWEEP_BATCH]
    )
    for notification_id in overdue:
        _enqueue(notification_id)
    stale = Notification.objects.filter(
        status=NotificationStatus.SENDING,
        updated_at__lte=now - timedelta(seconds=settings.NOTIFY_SENDING_STALE_SECONDS),
    ).update(
        status=NotificationStatus.FAILED,
        error="The worker stopped while sending; not sent again, as the message may have gone.",
        updated_at=now,
    )
    if overdue or stale:
        logger.info("Notifications sweep: %s enqueued again, %s failed mid-send", len(overdue), stale)
    return {"enqueued": len(overdue), "failed_mid_send": stale}
