"""The call policy (README, "Call policy") and the rules that read it: the pause switch,
calling hours in the user's local time, retries and the calling window.

Selectors read the one CallPolicy row, merged with the deployment's settings for whatever
the operator left blank; the row is read again at most every POLICY_CACHE_SECONDS per
process, so a pause reaches every worker and scheduler within seconds, without a query per
call. Writes go through policy_update, which records who changed what in the admin's
history.
"""

from __future__ import annotations

import json
import logging
import threading
import time as monotonic_time
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.signals import setting_changed
from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone

from .forms import CallPolicyForm
from .models import RETRY_STATUSES, CallPolicy, CallStatus

logger = logging.getLogger("relevel.policy")

POLICY_CACHE_SECONDS = 2.0
POLICY_FIELDS = tuple(CallPolicyForm.Meta.fields)


@dataclass(frozen=True)
class Policy:
    """The rules in force: the operator's where set, the settings' otherwise."""

    paused: bool
    calling_hours: tuple[time, time] | None
    max_retries: int
    retry_delays_seconds: tuple[int, ...]
    retry_statuses: frozenset[str]
    window: timedelta
    voicemail_retry: bool = True
    voicemail_message: str = ""
    monthly_budget: Decimal | None = None
    budget_currency: str = "USD"
    # The monthly budget is reached: calls are paused (paused is True too).
    budget_reached: bool = False

    def retry_delay_seconds(self, *, retry_number: int) -> int:
        """The delay before retry ``retry_number`` (1 for the first); the last given delay
        repeats when there are more retries than delays."""
        return self.retry_delays_seconds[min(retry_number, len(self.retry_delays_seconds)) - 1]

    def allows_hour(self, instant: datetime, tz: ZoneInfo) -> bool:
        """Whether ``instant`` falls inside the calling hours on the user's wall clock
        (start included, end not; an end before the start runs past midnight)."""
        if self.calling_hours is None:
            return True
        start, end = self.calling_hours
        wall = instant.astimezone(tz).time().replace(tzinfo=None)
        if start < end:
            return start <= wall < end
        return wall >= start or wall < end

    def allows_call_time(self, call_time: time) -> bool:
        """Whether a daily call time lies inside the calling hours."""
        if self.calling_hours is None:
            return True
        start, end = self.calling_hours
        wall = call_time.replace(tzinfo=None)
        return start <= wall < end if start < end else (wall >= start or wall < end)

    def describe_hours(self) -> str:
        if self.calling_hours is None:
            return "any hour"
        start, end = self.calling_hours
        return f"{start:%H:%M}-{end:%H:%M} local time"


_cache: tuple[float, Policy] | None = None
_cache_lock = threading.Lock()


def policy_row() -> CallPolicy:
    """The policy row, created blank the first time it is asked for."""
    row, _ = CallPolicy.objects.get_or_create(pk=1)
    return row


def _from_row(row: CallPolicy) -> Policy:
    hours = None
    if row.calling_hours_start is not None and row.calling_hours_end is not None:
        hours = (row.calling_hours_start, row.calling_hours_end)
    delays = (
        tuple(minutes * 60 for minutes in row.retry_delays_minutes)
        if row.retry_delays_minutes
        else (settings.CALL_RETRY_DELAY_SECONDS,)
    )
    retry_statuses = frozenset(row.retry_statuses) if row.retry_statuses is not None else RETRY_STATUSES
    # voicemail_retry decides for voicemail, whatever retry_statuses lists.
    retry_statuses = (retry_statuses | {CallStatus.VOICEMAIL}) if row.voicemail_retry else (
        retry_statuses - {CallStatus.VOICEMAIL}
    )
    from .budget import reached_in_force

    budget_reached = reached_in_force(row, now=timezone.now())
    return Policy(
        paused=row.paused or budget_reached,
        calling_hours=hours,
        max_retries=row.max_retries if row.max_retries is not None else settings.CALL_MAX_RETRIES,
        retry_delays_seconds=delays,
        retry_statuses=retry_statuses,
        window=timedelta(minutes=row.window_minutes or settings.CALL_TIME_WINDOW_MINUTES),
        voicemail_retry=row.voicemail_retry,
        voicemail_message=row.voicemail_message,
        monthly_budget=row.monthly_budget,
        budget_currency=row.budget_currency or "USD",
        budget_reached=budget_reached,
    )


def policy_current() -> Policy:
    """The rules in force, at most POLICY_CACHE_SECONDS old."""
    global _cache
    now = monotonic_time.monotonic()
    with _cache_lock:
        if _cache is not None and now - _cache[0] < POLICY_CACHE_SECONDS:
            return _cache[1]
    row = CallPolicy.objects.filter(pk=1).first() or CallPolicy(pk=1)
    policy = _from_row(row)
    with _cache_lock:
        _cache = (now, policy)
    return policy


def policy_cache_clear() -> None:
    global _cache
    with _cache_lock:
        _cache = None


def policy_as_dict(row: CallPolicy | None = None) -> dict[str, Any]:
    """The stored values (None: the setting applies) and the rules in force."""
    row = row or policy_row()
    effective = _from_row(row)
    return {
        "paused": row.paused,
        "calling_hours": (
            {"start": f"{row.calling_hours_start:%H:%M}", "end": f"{row.calling_hours_end:%H:%M}"}
            if row.calling_hours_start is not None and row.calling_hours_end is not None
            else None
        ),
        "max_retries": row.max_retries,
        "retry_delays_minutes": row.retry_delays_minutes,
        "retry_statuses": row.retry_statuses,
        "window_minutes": row.window_minutes,
        "voicemail_retry": row.voicemail_retry,
        "voicemail_message": row.voicemail_message,
        "monthly_budget": str(row.monthly_budget) if row.monthly_budget is not None else None,
        "budget_currency": row.budget_currency,
        "updated_at": row.updated_at.isoformat() if row.updated_at else None,
        "effective": {
            "paused": effective.paused,
            "budget_reached": effective.budget_reached,
            "calling_hours": effective.describe_hours(),
            "max_retries": effective.max_retries,
            "retry_delays_minutes": [seconds / 60 for seconds in effective.retry_delays_seconds],
            "retry_statuses": sorted(effective.retry_statuses),
            "window_minutes": effective.window.total_seconds() / 60,
        },
    }


class PolicyInvalid(ValueError):
    """Bad changes: ``errors`` maps each offending key to its message."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{key}: {message}" for key, message in errors.items()))
        self.errors = errors


def policy_update(*, changes: dict[str, Any], user_id: int | None, actor: str) -> CallPolicy:
    """Apply ``changes`` (API names: calling_hours as {"start", "end"} or null) all or nothing.

    Every change is recorded in the admin's history (with the user, when there is one) and
    logged; resuming from a pause enqueues a tick at once, so calls still inside their
    window are placed without waiting for the next cron minute.
    """
    unknown = sorted(set(changes) - {*POLICY_FIELDS, "calling_hours"})
    if unknown:
        raise PolicyInvalid({key: "unknown key" for key in unknown})
    data = dict(changes)
    if "calling_hours" in data:
        hours = data.pop("calling_hours")
        if hours is None:
            data["calling_hours_start"] = data["calling_hours_end"] = None
        elif isinstance(hours, dict) and set(hours) == {"start", "end"}:
            data["calling_hours_start"], data["calling_hours_end"] = hours["start"], hours["end"]
        else:
            raise PolicyInvalid({"calling_hours": 'an object {"start": "HH:MM", "end": "HH:MM"}, or null'})
    with transaction.atomic():
        row = CallPolicy.objects.select_for_update().filter(pk=1).first() or policy_row()
        was_paused = row.paused
        initial = {name: getattr(row, name) for name in POLICY_FIELDS}
        form = CallPolicyForm(data=_form_data({**initial, **data}), instance=row)
        if not form.is_valid():
            raise PolicyInvalid(
                {
                    ("calling_hours" if key.startswith("calling_hours") else key): " ".join(messages)
                    for key, messages in form.errors.items()
                }
            )
        row = form.save()
        policy_changed(
            row=row, changed=form.changed_data, user_id=user_id, actor=actor, was_paused=was_paused
        )
    return row


def _form_data(values: dict[str, Any]) -> dict[str, Any]:
    """Values (the model's, or an API caller's JSON) as the form takes them: JSON fields as
    text, blank for None; the form then validates every one as the admin does."""
    data: dict[str, Any] = {}
    for name, value in values.items():
        if name in ("retry_delays_minutes", "retry_statuses"):
            data[name] = "" if value is None else json.dumps(value)
        elif name in ("paused", "voicemail_retry"):
            if not isinstance(value, bool):
                raise PolicyInvalid({name: "true or false"})
            if value:
                data[name] = "on"
        elif name == "monthly_budget" and isinstance(value, int | float | Decimal) and not isinstance(value, bool):
            data[name] = str(value)
        elif name in ("voicemail_message", "budget_currency") and not isinstance(value, str | None):
            raise PolicyInvalid({name: "a string"})
        elif isinstance(value, time):
            data[name] = f"{value:%H:%M:%S}"
        elif value is None:
            data[name] = ""
        elif isinstance(value, bool | list | dict | float):
            raise PolicyInvalid(
                {name: "a whole number" if not name.startswith("calling_hours") else "a time"}
            )
        else:
            data[name] = str(value)
    return data


API_HISTORY_USERNAME = "relevel-api-token"


def _history_user_id(user_id: int | None) -> int:
    """Who a change is recorded under: the staff user, or, for a change made with the API
    token, a user standing for the token (inactive, no password: nobody logs in as it)."""
    if user_id is not None:
        return user_id
    from django.contrib.auth import get_user_model

    token_user, created = get_user_model().objects.get_or_create(
        username=API_HISTORY_USERNAME, defaults={"is_active": False, "name": "API token"}
    )
    if created:
        token_user.set_unusable_password()
        token_user.save(update_fields=["password"])
    return token_user.pk


def policy_changed(
    *,
    row: CallPolicy,
    changed: list[str],
    user_id: int | None,
    actor: str,
    was_paused: bool,
    record_history: bool = True,
) -> None:
    """What every change of the policy does, from the admin or the API: history (the admin
    records its own), log, everyone's cached copy dropped, and a tick at once on resume."""
    if not changed:
        return
    if record_history:
        LogEntry.objects.log_actions(
            user_id=_history_user_id(user_id),
            queryset=[row],
            action_flag=CHANGE,
            change_message=[
                {"changed": {"fields": [CallPolicy._meta.get_field(n).verbose_name for n in changed]}}
            ],
            single_object=True,
        )
    logger.info(
        "Call policy changed by %s: %s", actor, ", ".join(f"{n}={getattr(row, n)!r}" for n in changed)
    )
    policy_cache_clear()
    if {"monthly_budget", "budget_currency"} & set(changed):
        from .budget import budget_check

        # Raised or cleared: calls resume at once if the month's cost is now under it.
        was_paused = was_paused or row.budget_reached_at is not None
        budget_check()
        row.refresh_from_db(fields=["budget_reached_at"])
    if was_paused and not row.paused and row.budget_reached_at is None:
        transaction.on_commit(_tick_after_resume)


def _tick_after_resume() -> None:
    from redis.exceptions import RedisError

    from . import queues

    try:
        queues.enqueue_tick()
    except RedisError:
        logger.warning("Calls resumed; Redis unreachable, the next scheduled tick places what is due")


@receiver(setting_changed)
def _settings_changed(**kwargs: Any) -> None:
    # The blank fields fall back to settings: a changed setting (tests) changes the rules.
    policy_cache_clear()
