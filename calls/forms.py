"""Validation of what operators type: the call policy, in the admin and through /api/policy.

The admin shows plain inputs (the delays as "30, 60", the retried outcomes as check boxes)
and, under each, the value in force when the field is left blank; /api/policy sends JSON
through the same form (calls.policy._form_data), so both are validated alike.
"""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

import holidays
from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from .models import MAX_DELAY_MINUTES, MAX_RETRIES, RETRY_STATUSES, CallPolicy, CallStatus

MAX_WINDOW_MINUTES = 12 * 60
DELAYS_MESSAGE = (
    f"whole minutes between 1 and {MAX_DELAY_MINUTES}, one per retry, separated by commas, such as 30, 60"
)
# The outcomes an operator may have retried, in the order a person reads them.
RETRYABLE = [CallStatus.NO_ANSWER, CallStatus.BUSY, CallStatus.FAILED]
STATUSES_MESSAGE = f'a list of statuses among {", ".join(sorted(RETRY_STATUSES))}, such as ["no_answer"]'


def minutes(seconds: float) -> str:
    return f"{seconds / 60:g} minute{'' if seconds == 60 else 's'}"


class MinutesListField(forms.CharField):
    """Minutes as a person types them ("30, 60"); also the API's JSON list ("[30, 60]")."""

    def to_python(self, value: Any) -> list[int] | None:
        text = super().to_python(value).strip()
        if not text:
            return None
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                raise ValidationError(DELAYS_MESSAGE) from None
        else:
            parsed = [int(part) if part.isdigit() else part for part in re.split(r"[,\s]+", text)]
        if not isinstance(parsed, list) or not parsed:
            raise ValidationError(DELAYS_MESSAGE)
        whole = all(isinstance(m, int) and not isinstance(m, bool) for m in parsed)
        if not whole or not all(1 <= m <= MAX_DELAY_MINUTES for m in parsed):
            raise ValidationError(DELAYS_MESSAGE)
        return parsed

    def prepare_value(self, value: Any) -> Any:
        return ", ".join(str(m) for m in value) if isinstance(value, list) else value


MAX_SKIP_DATES = 366
SKIP_DATES_MESSAGE = (
    f"dates as YYYY-MM-DD, at most {MAX_SKIP_DATES}, separated by commas (or a JSON list), "
    'such as ["2026-12-25", "2027-01-01"]'
)
COUNTRIES_MESSAGE = (
    "ISO 3166 country codes the holidays package knows, separated by commas (or a JSON list), "
    'such as ["US", "IN"]'
)


def _text_list(text: str, message: str) -> list[Any]:
    """A list typed as "a, b" or sent as JSON ("[...]"), as a list."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            raise ValidationError(message) from None
    else:
        parsed = [part for part in re.split(r"[,\s]+", text) if part]
    if not isinstance(parsed, list) or not all(isinstance(item, str) for item in parsed):
        raise ValidationError(message)
    return parsed


class DateListField(forms.CharField):
    """Local dates as a person types them ("2026-12-25, 2027-01-01") or as JSON; stored as a
    sorted list of ISO dates."""

    def to_python(self, value: Any) -> list[str]:
        parsed = _text_list(super().to_python(value), SKIP_DATES_MESSAGE)
        try:
            days = {date.fromisoformat(item) for item in parsed if len(item) == 10}
        except ValueError:
            raise ValidationError(SKIP_DATES_MESSAGE) from None
        if len(days) != len(set(parsed)) or len(days) > MAX_SKIP_DATES:
            raise ValidationError(SKIP_DATES_MESSAGE)
        return [day.isoformat() for day in sorted(days)]

    def prepare_value(self, value: Any) -> Any:
        return ", ".join(value) if isinstance(value, list) else value


class CountryListField(forms.CharField):
    """Country codes ("US, IN", any case) or JSON; stored upper case, in the order given."""

    def to_python(self, value: Any) -> list[str]:
        parsed = [code.upper() for code in _text_list(super().to_python(value), COUNTRIES_MESSAGE)]
        known = holidays.list_supported_countries()
        unknown = [code for code in parsed if code not in known]
        if unknown:
            raise ValidationError(f"unknown country code {', '.join(unknown)}: {COUNTRIES_MESSAGE}")
        return list(dict.fromkeys(parsed))

    def prepare_value(self, value: Any) -> Any:
        return ", ".join(value) if isinstance(value, list) else value


class RetryStatusesField(forms.MultipleChoiceField):
    """Check boxes for the retried outcomes. Blank in the database (None) means the default,
    all three: shown checked, and kept blank while all three stay checked."""

    widget = forms.CheckboxSelectMultiple

    def to_python(self, value: Any) -> list[str] | None:
        if value in (None, ""):  # the API's null (the form's check boxes send a list)
            return None
        if not isinstance(value, list | tuple) or not all(isinstance(s, str) for s in value):
            raise ValidationError(STATUSES_MESSAGE)
        return list(value)

    def validate(self, value: Any) -> None:
        if value is not None and not all(self.valid_value(s) for s in value):
            raise ValidationError(STATUSES_MESSAGE)

    def prepare_value(self, value: Any) -> Any:
        return sorted(RETRY_STATUSES) if value is None else value

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            value = self.to_python(data)
        except ValidationError:
            return True

        def as_set(statuses: Any) -> frozenset[str]:
            return frozenset(RETRY_STATUSES) if statuses is None else frozenset(statuses)

        return as_set(initial) != as_set(value)


# A sentence or two the agent says; providers cap their variables' size.
MAX_DISCLOSURE_CHARS = 500


class CallPolicyForm(forms.ModelForm):
    retry_delays_minutes = MinutesListField(label="Retry delays (minutes)", required=False)
    retry_statuses = RetryStatusesField(
        label="Outcomes retried", required=False, choices=[(s.value, s.label) for s in RETRYABLE]
    )
    skip_dates = DateListField(label="Skip dates", required=False)
    holiday_countries = CountryListField(label="Holiday countries", required=False)

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
            "skip_dates",
            "holiday_countries",
            "require_consent",
            "disclosure_text",
        )
        labels = {"max_retries": "Retries a day", "window_minutes": "Window (minutes)"}
        # Plain HH:MM inputs: the admin's clock widget and its "Now" (the operator's own
        # clock) mean nothing for hours in each person's own time.
        widgets = {
            name: forms.TimeInput(format="%H:%M", attrs={"placeholder": "HH:MM", "size": 6})
            for name in ("calling_hours_start", "calling_hours_end")
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # What a blank field means here, in this deployment's values (not its settings' names).
        default_delay = minutes(settings.CALL_RETRY_DELAY_SECONDS)
        help_texts = {
            "max_retries": f"Retries per person per day. Blank: {settings.CALL_MAX_RETRIES}, "
            "this deployment's default.",
            "retry_delays_minutes": "Minutes before each retry, separated by commas (30, 60: the first "
            "retry 30 minutes after the call, the second 60 after the first); the last repeats for later "
            f"retries. Blank: {default_delay} before every retry, this deployment's default.",
            "retry_statuses": "A call that ends so is tried again, up to the retries a day. None checked: "
            "no call is retried.",
            "window_minutes": "How long after a person's call time the call may still be placed. "
            f"Blank: {settings.CALL_TIME_WINDOW_MINUTES} minutes, this deployment's default.",
            "calling_hours_start": "In each person's local time, such as 09:00. Blank (with the end): "
            "any hour.",
            "calling_hours_end": "In each person's local time, not included; an end before the start runs "
            "overnight.",
            "skip_dates": "Dates on which nobody is called, in each person's local date, separated by "
            "commas, such as 2026-12-25, 2027-01-01. Blank: none.",
            "holiday_countries": "Nobody is called on the public holidays of these countries (ISO codes such "
            "as US, IN, DE), in each person's local date. Blank: none.",
        }
        for name, text in help_texts.items():
            self.fields[name].help_text = text
        self.fields["skip_dates"].widget.attrs.update(placeholder="2026-12-25, 2027-01-01", size=40)
        self.fields["holiday_countries"].widget.attrs.update(placeholder="US, IN", size=20)
        self.fields["retry_delays_minutes"].widget.attrs.update(
            placeholder=f"{settings.CALL_RETRY_DELAY_SECONDS / 60:g}", size=20
        )
        for name, default in (
            ("max_retries", settings.CALL_MAX_RETRIES),
            ("window_minutes", settings.CALL_TIME_WINDOW_MINUTES),
        ):
            self.fields[name].widget.attrs.setdefault("placeholder", str(default))

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

    def clean_disclosure_text(self) -> str:
        value = self.cleaned_data.get("disclosure_text") or ""
        if len(value) > MAX_DISCLOSURE_CHARS:
            raise ValidationError(f"at most {MAX_DISCLOSURE_CHARS} characters")
        return value.strip()

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

    def clean_retry_statuses(self) -> list[str] | None:
        value = self.cleaned_data.get("retry_statuses")
        if "retry_statuses" not in self.changed_data:
            return self.instance.retry_statuses  # as stored: blank stays blank (the default)
        return None if value is None else sorted(set(value))

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
