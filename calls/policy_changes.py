"""Changing the call policy, from the admin or the API: validated all or nothing, recorded
in the admin's history, and a tick at once when calls resume. (Reading it is policy.py.)"""

from __future__ import annotations

import json
import logging
from datetime import time
from decimal import Decimal
from typing import Any

from django.contrib.admin.models import CHANGE, LogEntry
from django.db import transaction
from redis.exceptions import RedisError

from . import queues
from .forms import CallPolicyForm
from .models import CallPolicy
from .policy import POLICY_FIELDS, policy_cache_clear, policy_row

logger = logging.getLogger("relevel.policy")


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
        if name == "retry_delays_minutes":
            data[name] = "" if value is None else json.dumps(value)
        elif name in DAYS_OFF_FIELDS:
            if value is not None and not isinstance(value, list):
                raise PolicyInvalid(
                    {
                        name: 'a list of dates, such as ["2026-12-25"]'
                        if name == "skip_dates"
                        else 'a list of country codes, such as ["US"]'
                    }
                )
            data[name] = json.dumps(value or [])
        elif name == "retry_statuses":  # the check boxes' list as it is; the field says if it is not one
            data[name] = "" if value is None else value
        elif name in ("paused", "voicemail_retry", "require_consent"):
            if not isinstance(value, bool):
                raise PolicyInvalid({name: "true or false"})
            if value:
                data[name] = "on"
        elif (
            name == "monthly_budget"
            and isinstance(value, int | float | Decimal)
            and not isinstance(value, bool)
        ):
            data[name] = str(value)
        elif name in ("voicemail_message", "budget_currency") and not isinstance(value, str | None):
            raise PolicyInvalid({name: "a string"})
        elif name == "disclosure_text":
            if not isinstance(value, str):
                raise PolicyInvalid({name: "a text"})
            data[name] = value
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


# The fields that change who is off on which date: everyone's next call is moved after them.
DAYS_OFF_FIELDS = ("skip_dates", "holiday_countries")

API_HISTORY_USERNAME = "relevel-api-token"


def _history_user_id(user_id: int | None) -> int:
    """Who a change is recorded under: the staff user, or, for a change made with the API
    token, a user standing for the token (inactive, no password: nobody logs in as it)."""
    if user_id is not None:
        return user_id
    from django.contrib.auth import get_user_model

    token_user, created = get_user_model().objects.get_or_create(
        username=API_HISTORY_USERNAME,
        # Staff, so an operator (users.models.OPERATORS): listed with the operators, never
        # among the people called; calls off as well. Inactive, so nobody logs in as it.
        defaults={"is_active": False, "is_staff": True, "name": "API token", "call_enabled": False},
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
    if "paused" in changed:
        _pause_record(row=row, user_id=user_id)
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
    if set(DAYS_OFF_FIELDS) & set(changed):
        transaction.on_commit(_reschedule_after_days_off)


def _pause_record(*, row: CallPolicy, user_id: int | None) -> None:
    """Who paused and when (the banner on every operator page says so); blank on resume."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    if row.paused:
        user = get_user_model().objects.filter(pk=user_id).first() if user_id is not None else None
        row.paused_at = timezone.now()
        row.paused_by = str(user) if user else "the API token"
    else:
        row.paused_at, row.paused_by = None, ""
    row.save(update_fields=["paused_at", "paused_by"])


def _reschedule_after_days_off() -> None:
    # A job, in bounded batches: a million people's next call is not moved in a request.
    try:
        queues.enqueue_calendar_reschedule()
    except RedisError:
        logger.error(
            "Days off changed; Redis unreachable: run `manage.py reschedule_calendars` to move next calls"
        )


def _tick_after_resume() -> None:
    try:
        queues.enqueue_tick()
    except RedisError:
        logger.warning("Calls resumed; Redis unreachable, the next scheduled tick places what is due")
