"""Validation of what operators type: the call policy, in the admin and through /api/policy."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from .models import MAX_DELAY_MINUTES, MAX_RETRIES, RETRY_STATUSES, CallPolicy

MAX_WINDOW_MINUTES = 12 * 60


class CallPolicyForm(forms.ModelForm):
    class Meta:
        model = CallPolicy
        fields = (
            "paused",
            "calling_hours_start",
            "calling_hours_end",
            "max_retries",
            "retry_delays_minutes",
            "retry_statuses",
            "window_minutes",
        )

    def clean_max_retries(self) -> int | None:
        value = self.cleaned_data.get("max_retries")
        if value is not None and value > MAX_RETRIES:
            raise ValidationError(f"at most {MAX_RETRIES} retries a day")
        return value

    def clean_window_minutes(self) -> int | None:
        value = self.cleaned_data.get("window_minutes")
        if value is not None and not 1 <= value <= MAX_WINDOW_MINUTES:
            raise ValidationError(f"between 1 and {MAX_WINDOW_MINUTES} minutes")
        # The spread must fit the window with a minute to spare, as settings requires of
        # CALL_TIME_WINDOW_MINUTES (a blank window is that one): its last step is released a
        # minute before the window closes (calls/slots.py SPREAD_END_MARGIN_SECONDS). A
        # narrower window was accepted and half of every slot missed; refusing it keeps the
        # spread the operator configured rather than shrinking it behind their back.
        spread = settings.CALL_SPREAD_MINUTES
        if value is not None and spread and value <= spread:
            raise ValidationError(
                f"at least {spread + 1} minutes: CALL_SPREAD_MINUTES spreads each slot's calls over "
                f"the first {spread} minutes of its window, and the last of them needs a minute to be dialed"
            )
        return value

    def clean_retry_delays_minutes(self) -> list[int] | None:
        value = self.cleaned_data.get("retry_delays_minutes")
        if value in (None, ""):
            return None
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(m, int) and not isinstance(m, bool) for m in value)
            or not all(1 <= m <= MAX_DELAY_MINUTES for m in value)
        ):
            raise ValidationError(
                f"a list of whole minutes between 1 and {MAX_DELAY_MINUTES}, one per retry, such as [30, 60]"
            )
        return value

    def clean_retry_statuses(self) -> list[str] | None:
        value = self.cleaned_data.get("retry_statuses")
        if value in (None, ""):
            return None
        allowed = sorted(RETRY_STATUSES)
        if not isinstance(value, list) or not all(isinstance(s, str) and s in allowed for s in value):
            raise ValidationError(f'a list of statuses among {", ".join(allowed)}, such as ["no_answer"]')
        return sorted(set(value))

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start, end = data.get("calling_hours_start"), data.get("calling_hours_end")
        if (start is None) != (end is None):
            raise ValidationError(
                {
                    "calling_hours_end"
                    if end is None
                    else "calling_hours_start": "give both a start and an end"
                }
            )
        if start is not None and start == end:
            raise ValidationError({"calling_hours_end": "the end must differ from the start"})
        return data
