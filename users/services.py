"""Writes on users."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, time
from typing import Any

from django.db import connection, router, transaction
from django.utils import timezone

from calls import days
from calls.models import Call, CallStatus
from calls.selectors import ANY_KIND
from calls.slots import zone_or_none
from events.endpoints import endpoints_want
from events.models import EventType
from events.outbox import EventDraft, events_emit_many

from .models import SCHEDULE_FIELDS, User

logger = logging.getLogger("relevel.users")


def users_set_call_enabled(*, users: Iterable, enabled: bool) -> int:
    """Enable or disable calls for users, keeping each one's next call in step (and, when
    disabling, canceling their queued calls: user_save)."""
    changed = 0
    for user in users:
        if enabled and user.opted_out_at is not None:
            continue  # only an explicit opt-in turns an opted-out person back on
        if user.call_enabled != enabled:
            user.call_enabled = enabled
            user_save(user=user, update_fields=["call_enabled"])
            changed += 1
    return changed


def user_save(*, user: User, update_fields: Iterable[str] | None = None) -> str | None:
    """Save one user (the admin's forms and actions, the demo): a change of schedule cancels
    the calls queued for the old one, in the same transaction as the change (docs/scheduling.md,
    "Profile changes take effect at once"). Returns why calls were canceled, or None.

    The old values are read locked, not remembered from when the instance was loaded: an
    admin form open for an hour must not describe the change against stale values. The
    writes in bulk (the users API, the CSV import) apply the same rule themselves
    (users_write), since they never save one user at a time."""
    using = router.db_for_write(User, instance=user)
    if update_fields is not None and not SCHEDULE_FIELDS & set(update_fields):
        user.save(using=using, update_fields=update_fields)
        return None
    with transaction.atomic(using=using):
        before = None
        if not user._state.adding and user.pk is not None:
            before = (
                User._base_manager.using(using)
                .select_for_update()
                .filter(pk=user.pk)
                .values(*SCHEDULE_FIELDS)
                .first()
            )
        user.save(using=using, update_fields=update_fields)
        reason = schedule_change_reason(before=before, after=user) if before is not None else None
        if reason:
            users_cancel_pending_calls(reasons={user.pk: reason}, release=users_still_callable([user]))
    return reason


# --- Profile changes take effect at once --------------------------------------------------


def _wall(value: time) -> str:
    return f"{value:%H:%M:%S}" if value.second else f"{value:%H:%M}"


def _value(obj: Any, name: str) -> Any:
    return obj[name] if isinstance(obj, Mapping) else getattr(obj, name)


def schedule_change_reason(*, before: Any, after: Any) -> str | None:
    """Why the calls queued for a user's old schedule no longer stand, or None if they do.

    ``before`` and ``after`` hold the schedule fields (phone, local_tz, call_enabled,
    call_time), as a mapping or as attributes. Turning calls on or changing the number
    keeps them: a call is dialed to the number the user has when a worker takes it.
    """
    reasons = []
    if _value(before, "call_enabled") and not _value(after, "call_enabled"):
        reasons.append("User disabled calls.")
    if _value(before, "phone") and not _value(after, "phone"):
        reasons.append("User removed their phone number.")
    old_time, new_time = _value(before, "call_time"), _value(after, "call_time")
    if old_time != new_time:
        reasons.append(f"User changed call time from {_wall(old_time)} to {_wall(new_time)}.")
    old_tz, new_tz = _value(before, "local_tz"), _value(after, "local_tz")
    if old_tz != new_tz:
        reasons.append(f"User changed time zone from {old_tz} to {new_tz}.")
    return " ".join(reasons) or None


def users_cancel_pending_calls(
    *,
    reasons: Mapping[int, str],
    now: datetime | None = None,
    release: Collection[int] = (),
    schedule_changed: bool = True,
) -> int:
    """Cancel the calls still waiting to be dialed (status queued: a day's first attempt
    whose job has not taken it yet, or a retry waiting for its time) of the users in
    ``reasons`` ({user id: why}), each with its reason in the call's error. One UPDATE,
    run in the caller's transaction, the one that changes the users. Returns how many calls
    were canceled.

    For the users in ``release`` (those still callable after their change: see
    users_still_callable), a first attempt the tick claimed ahead of its time (up to a tick
    early, calls/claim.py) is released rather than canceled: deleted, so that its local day
    is free again and the new schedule (whose next call was computed without it:
    users.models.first_attempts) calls the person that day. Its batch job finds no row and
    moves on. For everyone else (calls off, no phone, an opt-out) it is canceled, and the
    row says why.

    A call already dialing or ringing is left alone: it cannot be taken back (a retry its
    outcome schedules is checked against the user again when a worker takes it).
    """
    if not reasons:
        return 0
    now = now or timezone.now()
    released = [user_id for user_id in release if user_id in reasons]
    if released:
        _release_early_first_attempts(released, now=now)
    if schedule_changed:  # the user.schedule_changed events (an opt-out reports its own)
        users_schedule_changed(reasons=reasons, now=now)
    if len(reasons) == 1:
        [(user_id, reason)] = reasons.items()
        canceled = days.calls_end(
            # ANY_KIND: from the user's indexes, not every queued call of a rush.
            Call.objects.filter(ANY_KIND, user_id=user_id, status=CallStatus.QUEUED),
            status=CallStatus.CANCELED,
            error=reason,
            last_status_at=now,
            completed_at=now,
        )
        if canceled:
            logger.info("User %s: %s queued call(s) canceled: %s", user_id, canceled, reason)
        return canceled
    if connection.vendor == "postgresql" and not days.events_wanted_for(CallStatus.CANCELED):
        canceled = _cancel_with_unnest(reasons, now=now)
    else:
        canceled = 0
        by_reason: dict[str, list[int]] = {}
        for user_id, reason in reasons.items():
            by_reason.setdefault(reason, []).append(user_id)
        for reason, user_ids in by_reason.items():
            canceled += days.calls_end(
                Call.objects.filter(ANY_KIND, user_id__in=user_ids, status=CallStatus.QUEUED),
                status=CallStatus.CANCELED,
                error=reason,
                last_status_at=now,
                completed_at=now,
            )
    if canceled:
        logger.info("Profile changes of %s users: %s queued call(s) canceled", len(reasons), canceled)
    return canceled


def users_still_callable(users: Iterable[User]) -> set[int]:
    """The ids of these (changed, saved) users who may still be called: whose early-claimed
    first attempt a schedule change releases rather than cancels."""
    return {user.pk for user in users if user.pk is not None and user.is_callable}


def _release_early_first_attempts(user_ids: list[int], *, now: datetime) -> int:
    early = Call.objects.filter(
        user_id__in=user_ids, attempt=1, manual=False, status=CallStatus.QUEUED, scheduled_for__gt=now
    )
    # Nothing points at a first attempt still queued (a retry follows an outcome, a result
    # an answer), so the rows go in one DELETE, without the collector's reads and updates.
    released = early._raw_delete(early.db)
    if released:
        logger.info(
            "Schedule changes of %s user(s): %s call(s) claimed ahead released", len(user_ids), released
        )
    return released


def users_schedule_changed(*, reasons: Mapping[int, str], now: datetime) -> None:
    """The user.schedule_changed event of each user in ``reasons`` ({user id: what changed}),
    written in the transaction of the change, with the schedule as it now is."""
    if not endpoints_want(EventType.USER_SCHEDULE_CHANGED):
        return
    rows = User.objects.filter(pk__in=list(reasons)).values(
        "id", "local_tz", "call_time", "call_enabled", "next_call_at", "schedule_error"
    )
    drafts = []
    for row in rows:
        zone = zone_or_none(row["local_tz"])
        drafts.append(
            EventDraft(
                type=EventType.USER_SCHEDULE_CHANGED,
                user_id=row["id"],
                local_date=now.astimezone(zone).date() if zone else None,
                occurred_at=now,
                data={
                    "reason": reasons[row["id"]],
                    "schedule": {
                        "call_enabled": row["call_enabled"],
                        "call_time": _wall(row["call_time"]) if row["call_time"] else None,
                        "local_tz": row["local_tz"],
                        "next_call_at": row["next_call_at"].isoformat() if row["next_call_at"] else None,
                        "error": row["schedule_error"] or None,
                    },
                },
            )
        )
    events_emit_many(drafts=drafts)


def _cancel_with_unnest(reasons: Mapping[int, str], *, now: datetime) -> int:
    """One statement for any number of users, each with its own reason: the (user_id, ...)
    constraint's index finds each user's calls."""
    quote = connection.ops.quote_name
    field = Call._meta.get_field
    user_id_type = field("user").target_field.db_type(connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(Call._meta.db_table)} AS c SET {quote(field('status').column)} = %s, "
            f"{quote(field('error').column)} = v.reason, {quote(field('last_status_at').column)} = %s, "
            f"{quote(field('completed_at').column)} = %s "
            f"FROM unnest(%s::{user_id_type}[], %s::text[]) AS v(user_id, reason) "
            f"WHERE c.{quote(field('user').column)} = v.user_id AND c.{quote(field('status').column)} = %s",
            [CallStatus.CANCELED, now, now, list(reasons), list(reasons.values()), CallStatus.QUEUED],
        )
        return cursor.rowcount
