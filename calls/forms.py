"""Validation of what operators type: the call policy, in the admin and through /api/policy."""

from __future__ import annotations

from typing import Any

from django import forms
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
            "voicemail_retry",
            "voicemail_message",
            "monthly_budget",
            "budget_currency",
        )

    def clean_voicemail_message(self) -> str:
        value = (self.cleaned_data.get("voicemail_message") or "").strip()
        if len(value) > 1000:
            raise ValidationError("at most 1,000 characters")
        return value

    def clean_monthly_budget(self):
        value = self.cleaned_data.get("monthly_budget")
        if value is not None and value <= 0:
            raise ValidationError("a positive amount, or blank for no budget")
        return value

    def clean_budget_currency(self) -> str:
        value = (self.cleaned_data.get("budget_currency") or "USD").strip().upper()
        if len(value) != 3 or not value.isalpha():
            raise ValidationError("a three-letter ISO 4217 currency code, such as USD")
        return value

    def clean_max_retries(self) -> int | None:
        value = self.cleaned_data.get("max_retries")
        if value is not None and value > MAX_RETRIES:
            raise ValidationError(f"at most {MAX_RETRIES} retries a day")
        return value

    def clean_window_minutes(self) -> int | None:
        value = self.cleaned_data.get("window_minutes")
        if value is not None and not 1 <= value <= MAX_WINDOW_MINUTES:
            raise ValidationError(f"between 1 and {MAX_WINDOW_MINUTES} minutes")
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
