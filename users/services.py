"""Writes on users."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, time
from typing import Any

from django.db import connection
from django.utils import timezone

from calls.models import Call, CallStatus

logger = logging.getLogger("relevel.users")


def users_set_call_enabled(*, users: Iterable, enabled: bool) -> int:
    """Enable or disable calls for users, keeping each one's next call in step (and, when
    disabling, canceling their queued calls: User.save)."""
    changed = 0
    for user in users:
        if user.call_enabled != enabled:
            user.call_enabled = enabled
            user.save(update_fields=["call_enabled"])
            changed += 1
    return changed


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


def users_cancel_pending_calls(*, reasons: Mapping[int, str], now: datetime | None = None) -> int:
    """Cancel the calls still waiting to be dialed (status queued: a day's first attempt
    whose job has not taken it yet, or a retry waiting for its time) of the users in
    ``reasons`` ({user id: why}), each with its reason in the call's error. One UPDATE,
    run in the caller's transaction, the one that changes the users. Returns how many calls
    were canceled.

    A call already dialing or ringing is left alone: it cannot be taken back (a retry its
    outcome schedules is checked against the user again when a worker takes it).
    """
    if not reasons:
        return 0
    now = now or timezone.now()
    if len(reasons) == 1:
        [(user_id, reason)] = reasons.items()
        canceled = Call.objects.filter(user_id=user_id, status=CallStatus.QUEUED).update(
            status=CallStatus.CANCELED, error=reason, last_status_at=now, completed_at=now
        )
        if canceled:
            logger.info("User %s: %s queued call(s) canceled: %s", user_id, canceled, reason)
        return canceled
    if connection.vendor == "postgresql":
        canceled = _cancel_with_unnest(reasons, now=now)
    else:
        canceled = 0
        by_reason: dict[str, list[int]] = {}
        for user_id, reason in reasons.items():
            by_reason.setdefault(reason, []).append(user_id)
        for reason, user_ids in by_reason.items():
            canceled += Call.objects.filter(user_id__in=user_ids, status=CallStatus.QUEUED).update(
                status=CallStatus.CANCELED, error=reason, last_status_at=now, completed_at=now
            )
    if canceled:
        logger.info("Profile changes of %s users: %s queued call(s) canceled", len(reasons), canceled)
    return canceled


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
