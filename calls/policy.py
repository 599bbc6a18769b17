"""The call policy (docs/operating/call-policy.md) and the rules that read it: the pause switch,
calling hours in the user's local time, retries and the calling window.

Selectors read the one CallPolicy row, merged with the deployment's settings for whatever
the operator left blank; the row is read again at most every POLICY_CACHE_SECONDS per
process, so a pause reaches every worker and scheduler within seconds, without a query per
call. Writes go through policy_changes.policy_update, which records who changed what in
the admin's history.
"""

from __future__ import annotations

import functools
import logging
import threading
import time as monotonic_time
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import holidays
from django.conf import settings
from django.core.signals import setting_changed
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
    # Days off for everyone, in each person's local date (users/calendar.py).
    skip_dates: frozenset[date] = frozenset()
    holiday_countries: tuple[str, ...] = ()
    require_consent: bool = False
    disclosure_text: str = ""

    def day_off_reason(self, local_date: date) -> str | None:
        """Why nobody is called on ``local_date`` (a skip date, a public holiday of one of
        the countries), or None. Cheap: a set and a dict lookup per country."""
        if local_date in self.skip_dates:
            return f"{local_date} is a skip date of the call policy."
        for country in self.holiday_countries:
            name = holidays_of(country, local_date.year).get(local_date)
            if name is not None:
                return f"{local_date} is a public holiday in {country} ({name})."
        return None

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


@functools.lru_cache(maxsize=512)
def holidays_of(country: str, year: int) -> dict[date, str]:
    """{date: name} of a country's public holidays in a year, from the holidays package: worked
    out once per process and year (the package computes each year's dates on first use)."""
    return dict(holidays.country_holidays(country, years=year))


_cache: tuple[float, Policy] | None = None
_cache_lock = threading.Lock()


def policy_row() -> CallPolicy:
    """The policy row, created blank the first time it is asked for."""
    row, _ = CallPolicy.objects.get_or_create(pk=1)
    return row


# The monthly budget (calls/budget.py) pauses calls when reached: the policy reads that as a
# pause, from the row alone, so no hot path queries the month's cost.
def month_start(now: datetime) -> datetime:
    """The start of ``now``'s UTC month (costs and the budget are counted by UTC month)."""
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def reached_in_force(row: CallPolicy, *, now: datetime) -> bool:
    """Whether the budget pauses calls now: reached this month, and still set."""
    reached = row.budget_reached_at
    return bool(row.monthly_budget is not None and reached is not None and reached >= month_start(now))


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
    retry_statuses = (
        (retry_statuses | {CallStatus.VOICEMAIL})
        if row.voicemail_retry
        else (retry_statuses - {CallStatus.VOICEMAIL})
    )
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
        skip_dates=frozenset(date.fromisoformat(day) for day in row.skip_dates or ()),
        holiday_countries=tuple(row.holiday_countries or ()),
        require_consent=row.require_consent,
        disclosure_text=row.disclosure_text,
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
        "skip_dates": list(row.skip_dates or []),
        "holiday_countries": list(row.holiday_countries or []),
        "require_consent": row.require_consent,
        "disclosure_text": row.disclosure_text,
        "updated_at": row.updated_at.isoformat() if row.updated_at else None,
        "paused_at": row.paused_at.isoformat() if row.paused_at else None,
        "paused_by": row.paused_by or None,
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


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def policy_in_force_rows(row: CallPolicy | None = None) -> list[tuple[str, str, str]]:
    """The rules in force as a person reads them: (rule, value, where it comes from), for the
    policy page's table."""
    from .models import CallStatus

    row = row or policy_row()
    effective = _from_row(row)
    here, default = "set here", "this deployment's default"
    if effective.paused:
        who = f" by {row.paused_by}" if row.paused_by else ""
        utc = row.paused_at.astimezone(ZoneInfo("UTC")) if row.paused_at else None
        when = f" since {utc:%Y-%m-%d %H:%M:%S} UTC" if utc else ""
        calls = f"Paused{when}{who}: nobody is called"
    else:
        calls = "Running"
    delays = [seconds / 60 for seconds in effective.retry_delays_seconds[: max(effective.max_retries, 1)]]
    delay_text = ", ".join(
        f"{minutes:g} min before the {_ordinal(n)} retry" for n, minutes in enumerate(delays, start=1)
    )
    if effective.max_retries > len(delays):
        delay_text += f", {delays[-1]:g} min before each later one"
    labels = {status.value: status.label.lower() for status in CallStatus}
    retried = [labels[s] for s in ("no_answer", "busy", "failed") if s in effective.retry_statuses]
    return [
        ("Calls", calls, here),
        (
            "Calling hours",
            effective.describe_hours(),
            here if row.calling_hours_start is not None else f"{default} (none)",
        ),
        ("Retries a day", str(effective.max_retries), here if row.max_retries is not None else default),
        (
            "Delays",
            delay_text if effective.max_retries else "no retries",
            here if row.retry_delays_minutes else default,
        ),
        (
            "Outcomes retried",
            ", ".join(retried).capitalize() if retried else "None",
            here if row.retry_statuses is not None else default,
        ),
        (
            "Window",
            f"{effective.window.total_seconds() / 60:g} minutes after each person's call time",
            here if row.window_minutes else default,
        ),
        (
            "Days off",
            _days_off_text(effective),
            here if (row.skip_dates or row.holiday_countries) else f"{default} (none)",
        ),
    ]


def _days_off_text(rules: Policy) -> str:
    parts = []
    if rules.skip_dates:
        parts.append("skip dates " + ", ".join(f"{day}" for day in sorted(rules.skip_dates)))
    if rules.holiday_countries:
        parts.append("public holidays of " + ", ".join(rules.holiday_countries))
    return "; ".join(parts).capitalize() if parts else "None: every day may be a call day"


@receiver(setting_changed)
def _settings_changed(**kwargs: Any) -> None:
    # The blank fields fall back to settings: a changed setting (tests) changes the rules.
    policy_cache_clear()
