"""Forms for users: the admin's (the usual auth forms plus the daily-call fields), and the
one that validates a user for the users API and the CSV import."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from datetime import date, time
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from calls.models import MAX_DELAY_MINUTES, MAX_RETRIES

from .call_days import CALL_DAYS_MESSAGE, WEEKDAY_NAMES, WEEKDAYS, call_days_mask, call_days_names
from .models import ALL_CALL_DAYS, User
from .upsert import username_for_person
from .validators import (
    CALL_TIME_INVALID,
    iana_time_zones,
    phone_to_e164,
    validate_context,
    validate_external_id,
    validate_iana_time_zone,
)

DAILY_CALL_FIELDS = (
    "name",
    "external_id",
    "phone",
    "local_tz",
    "call_enabled",
    "call_time",
    "max_retries",
    "retry_delay_minutes",
    "context",
    "call_days",
    "pause_until",
)
# Whether the user hears from us when a day is missed (notifications/); the address is
# AbstractUser's email, in "Personal info".
NOTIFY_FIELDS = ("notify_sms", "notify_email")


class PhoneNumberField(forms.CharField):
    """A phone typed as people write it ("+49 30 1234 56789"), stored as E.164.

    The model's column holds E.164 (at most 16 characters), but what people type is longer,
    so the input has no maxlength at all: a browser cuts a paste at maxlength without a
    word, and the cut number may well be valid, and somebody else's. Whatever is typed is
    read whole; if it is not a valid number, the error quotes it.
    """

    def __init__(self, *, max_length: int | None = None, **kwargs) -> None:
        # max_length is the model column's (E.164's 16), which says nothing about input.
        super().__init__(**kwargs)

    def widget_attrs(self, widget):
        return {**super().widget_attrs(widget), "inputmode": "tel", "autocomplete": "off"}

    def to_python(self, value):
        value = super().to_python(value)
        if value in self.empty_values:
            return value
        return phone_to_e164(value)


class TimeZoneInput(forms.TextInput):
    """A text box that suggests every IANA zone as you type (an HTML datalist).

    A text box rather than a <select> of ~600 zones: typing "Kolk" is quicker than
    scrolling, and a wrong name still reaches the model validator, whose message says
    what a valid name looks like.
    """

    def __init__(self, attrs=None):
        super().__init__(
            {"class": "vTextField", "autocomplete": "off", "spellcheck": "false", **(attrs or {})}
        )

    def render(self, name, value, attrs=None, renderer=None):
        attrs = dict(attrs or {})
        list_id = f"{attrs.get('id') or 'id_' + name}_zones"
        attrs["list"] = list_id
        text_input = super().render(name, value, attrs, renderer)
        options = format_html_join("", '<option value="{}">', ((zone,) for zone in sorted(iana_time_zones())))
        return format_html('{}<datalist id="{}">{}</datalist>', text_input, list_id, options)


class CallTimeInput(forms.TimeInput):
    """A plain text box for a call time. Not the admin's time widget: its "Now" and clock
    would set a person's call time from the operator's own clock, in the operator's zone."""

    def __init__(self, attrs=None):
        super().__init__({"class": "call-time", "size": "8", "placeholder": "20:30", **(attrs or {})})


class CallTimeField(forms.TimeField):
    """The admin's call time ("20:30" or "20:30:05"), whose error says what a time is."""

    widget = CallTimeInput
    default_error_messages = {"invalid": CALL_TIME_INVALID}


class CallDaysCheckboxes(forms.MultipleChoiceField):
    """The admin's call days: a check box per weekday, stored as the mask (users/calendar.py)."""

    widget = forms.CheckboxSelectMultiple

    def __init__(self, **kwargs) -> None:
        kwargs.pop("max_value", None)
        kwargs.pop("min_value", None)
        kwargs.pop("max_length", None)
        kwargs.setdefault("label", "Call days")
        kwargs.setdefault(
            "help_text",
            "The weekdays the person may be called on, in their own time zone; none checked: every day.",
        )
        kwargs["required"] = False
        super().__init__(choices=list(zip(WEEKDAYS, WEEKDAY_NAMES, strict=True)), **kwargs)

    def prepare_value(self, value: Any) -> Any:
        return call_days_names(value) if isinstance(value, int) else value

    def clean(self, value: Any) -> int:
        # None checked is every day, as an empty CSV cell: calls off is "calls enabled".
        return call_days_mask(super().clean(value)) or ALL_CALL_DAYS

    def has_changed(self, initial: Any, data: Any) -> bool:
        initial_names = call_days_names(initial) if isinstance(initial, int) else list(initial or [])
        return set(initial_names) != set(data or [])


class PauseDateInput(forms.DateInput):
    """A plain date box (YYYY-MM-DD): the admin's calendar widget's "Today" is the operator's."""

    input_type = "date"

    def __init__(self, attrs=None):
        super().__init__({"class": "pause-until", **(attrs or {})}, format="%Y-%m-%d")


class DailyCallFieldsMixin:
    """Shared by the add and change forms: no phone and no external id are NULL (many users
    may have none of either); a phone another user has names that user."""

    def clean_phone(self) -> str | None:
        phone = self.cleaned_data.get("phone") or None
        if phone:
            owner = User.objects.filter(phone=phone).exclude(pk=self.instance.pk).first()
            if owner is not None:
                # Checked here rather than left to the unique constraint, whose message
                # ("User with this Phone already exists.") does not say who.
                page = "admin:users_operator_change" if owner.is_operator else "admin:users_user_change"
                url = reverse(page, args=[owner.pk])
                raise ValidationError(
                    format_html(
                        'This phone number belongs to <a href="{}">{}</a> (user {}).', url, owner, owner.pk
                    ),
                    code="phone_taken",
                )
        return phone

    def clean_external_id(self) -> str | None:
        return self.cleaned_data.get("external_id") or None


class UserAdminCreationForm(DailyCallFieldsMixin, forms.ModelForm):
    """Adding a person to call: what calling them needs, no login. The username is made for
    them (users.upsert.username_for_person) and the password is an unusable one: the
    people relevel calls never log in. (An operator's login: the Operators page.)"""

    call_days = CallDaysCheckboxes(initial=ALL_CALL_DAYS)

    class Meta:
        model = User
        fields = (*DAILY_CALL_FIELDS, "email", *NOTIFY_FIELDS)
        field_classes = {"phone": PhoneNumberField, "call_time": CallTimeField}
        widgets = {"local_tz": TimeZoneInput, "pause_until": PauseDateInput}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # The one field that tells people apart in the lists (there is no username to type).
        self.fields["name"].required = True

    def save(self, commit: bool = True) -> User:
        user = super().save(commit=False)
        user.username = username_for_person(name=user.name, external_id=user.external_id)
        user.set_unusable_password()
        if commit:
            user.save()
            self.save_m2m()
        return user


class UserAdminChangeForm(DailyCallFieldsMixin, forms.ModelForm):
    """A person's page: the same fields as adding them (no login: see the Operators page)."""

    call_days = CallDaysCheckboxes()

    class Meta:
        model = User
        fields = (*DAILY_CALL_FIELDS, "email")
        field_classes = {"phone": PhoneNumberField, "call_time": CallTimeField}
        widgets = {"local_tz": TimeZoneInput, "pause_until": PauseDateInput}


# --- The users API and the CSV import ------------------------------------------------------

# What the users API and the CSV import set on a user, keyed by external_id.
PROFILE_FIELDS = (
    "phone",
    "name",
    "local_tz",
    "call_time",
    "call_enabled",
    "max_retries",
    "retry_delay_minutes",
    "email",
    "notify_sms",
    "notify_email",
    "context",
    "call_days",
    "pause_until",
)


class ContextField(forms.Field):
    """A user's context: a JSON object (the API's), or its JSON text (a CSV cell); empty is
    {}. At most MAX_CONTEXT_BYTES as JSON (users.validators)."""

    def to_python(self, value):
        if value is None or (isinstance(value, str) and not value.strip()):
            return {}
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ValidationError('must be a JSON object, such as {"goal": "walk 20 minutes"}') from None
        return value

    def validate(self, value):
        validate_context(value)


class CallDaysField(forms.Field):
    """Call days as the API sends them (["mon", "tue"], at least one) or a CSV cell holds them
    ("mon tue", commas allowed, any case; an empty cell is every day): the mask
    (users/calendar.py)."""

    default_error_messages = {"invalid": CALL_DAYS_MESSAGE}

    def to_python(self, value: Any) -> int | None:
        if isinstance(value, str):
            if not value.strip():
                return ALL_CALL_DAYS
            value = [part for part in re.split(r"[,\s]+", value.strip().lower()) if part]
        if not isinstance(value, list) or not value or not all(isinstance(name, str) for name in value):
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        if not set(value) <= set(WEEKDAYS) or len(set(value)) != len(value):
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        return call_days_mask(value)


class IsoDateField(forms.Field):
    """A date as YYYY-MM-DD, and nothing else (the API's and the CSV's shape)."""

    default_error_messages = {"invalid": 'Enter a date as YYYY-MM-DD, such as "2026-12-31".'}

    def to_python(self, value: Any) -> date | None:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
        raise ValidationError(self.error_messages["invalid"], code="invalid")


class StrictBooleanField(forms.Field):
    """true or false: JSON's booleans, or in a CSV true/false, 1/0, yes/no (any case).

    Django's BooleanField reads anything it does not know as False, so a typo ("ture")
    would turn a user's calls off without a word."""

    TRUE = frozenset({"true", "1", "yes"})
    FALSE = frozenset({"false", "0", "no"})
    default_error_messages = {"invalid": "Enter true or false."}

    def to_python(self, value):
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            word = value.strip().lower()
            if word in self.TRUE:
                return True
            if word in self.FALSE:
                return False
            if not word:
                return None
        raise ValidationError(self.error_messages["invalid"], code="invalid")

    def validate(self, value):
        if value is None and self.required:
            raise ValidationError(self.error_messages["required"], code="required")


class WallClockTimeField(forms.TimeField):
    """ "HH:MM" or "HH:MM:SS", read without strptime (a third of validating a row)."""

    _WALL = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
    default_error_messages = {"invalid": CALL_TIME_INVALID}

    def to_python(self, value):
        if isinstance(value, str):
            match = self._WALL.fullmatch(value.strip())
            if match:
                hour, minute, second = match.groups()
                try:
                    return time(int(hour), int(minute), int(second or 0))
                except ValueError:
                    pass
            if value.strip() in self.empty_values:
                return None
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(value)


class UserProfileForm(forms.Form):
    """One user's fields as the users API and the CSV import take them, validated without a
    query (uniqueness is checked for a whole request or file at once: users.services).

    Only the fields given (the keys of a JSON object, the columns of a CSV file) are
    validated and set: a field left out keeps its value (a new user gets the default).
    Given, ``local_tz``, ``call_time`` and ``call_enabled`` must have a value; an empty
    ``phone`` removes the number, empty ``max_retries``/``retry_delay_minutes`` mean the
    call policy's, an empty ``email`` removes the address, empty ``notify_sms`` /
    ``notify_email`` are false, an empty ``pause_until`` ends the pause; ``call_days`` needs at
    least one day (users/calendar.py)."""

    external_id = forms.CharField(max_length=128, strip=False, validators=[validate_external_id])
    phone = PhoneNumberField(required=False)
    name = forms.CharField(max_length=150, required=False)
    local_tz = forms.CharField(max_length=64, validators=[validate_iana_time_zone])
    call_time = WallClockTimeField()
    call_enabled = StrictBooleanField()
    max_retries = forms.IntegerField(min_value=0, max_value=MAX_RETRIES, required=False)
    retry_delay_minutes = forms.IntegerField(min_value=1, max_value=MAX_DELAY_MINUTES, required=False)
    # Empty removes the address (AbstractUser's email is "" rather than NULL).
    email = forms.EmailField(max_length=254, required=False)
    # Off unless turned on: an empty CSV cell is false (the JSON API takes true or false only).
    notify_sms = StrictBooleanField(required=False)
    notify_email = StrictBooleanField(required=False)
    context = ContextField(required=False)
    # Given, at least one day (an empty CSV cell: every day; calls off is call_enabled).
    call_days = CallDaysField(required=False)
    # Empty: no pause.
    pause_until = IsoDateField(required=False)

    def __init__(self, data: dict[str, Any], *, given: Iterable[str]) -> None:
        super().__init__(data)
        given = set(given)
        for name in PROFILE_FIELDS:
            if name not in given:
                del self.fields[name]

    def clean_phone(self) -> str | None:
        return self.cleaned_data.get("phone") or None

    def clean_email(self) -> str:
        return self.cleaned_data.get("email") or ""

    def clean_notify_sms(self) -> bool:
        return bool(self.cleaned_data.get("notify_sms"))

    def clean_notify_email(self) -> bool:
        return bool(self.cleaned_data.get("notify_email"))

    def error_dict(self) -> dict[str, str]:
        """{field: one line}, the users API's and the import's shape."""
        return {field: " ".join(messages) for field, messages in self.errors.items()}

    @classmethod
    def clean_row(
        cls, data: dict[str, Any], *, given: Iterable[str]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """What ``form.is_valid()`` gives, as (cleaned_data, {}) or ({}, error_dict()), without
        making a form: a form deep-copies its fields when it is made, which is most of the
        cost of validating a row, and 100,000 rows of an import would spend seconds on it.
        The fields (stateless while cleaning) and the clean_<field> hooks are the form's
        own; tests/test_users_api.py holds the two ways to the same answers."""
        given = set(given)
        cleaned: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for name, field, hook in cls._fields_and_hooks():
            if name != "external_id" and name not in given:
                continue
            try:
                value = field.clean(data.get(name, ""))
                cleaned[name] = value if hook is None else hook(_Cleaned({name: value}))
            except ValidationError as exc:
                errors[name] = " ".join(exc.messages)
        return ({}, errors) if errors else (cleaned, {})

    @classmethod
    @functools.cache
    def _fields_and_hooks(cls) -> tuple[tuple[str, forms.Field, Any], ...]:
        return tuple(
            (name, field, getattr(cls, f"clean_{name}", None)) for name, field in cls.base_fields.items()
        )


class _Cleaned:
    """Stands in for a form in a clean_<field> hook (UserProfileForm.clean_row)."""

    def __init__(self, cleaned_data: dict[str, Any]) -> None:
        self.cleaned_data = cleaned_data


# JSON types the users API accepts per key (None: null). Checked before the form, which
# would read a number as a name or an id.
_JSON_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "external_id": ((str,), "a string"),
    "phone": ((str, type(None)), "a string or null"),
    "name": ((str, type(None)), "a string or null"),
    "local_tz": ((str,), "a string, such as Asia/Kolkata"),
    "call_time": ((str,), 'a string, such as "20:30"'),
    "call_enabled": ((bool,), "true or false"),
    "max_retries": ((int, type(None)), "a whole number or null"),
    "retry_delay_minutes": ((int, type(None)), "a whole number or null"),
    "email": ((str, type(None)), "a string or null"),
    "notify_sms": ((bool,), "true or false"),
    "notify_email": ((bool,), "true or false"),
    "context": ((dict, type(None)), 'a JSON object, such as {"goal": "walk 20 minutes"}, or null'),
    "call_days": ((list,), 'a list of weekdays, such as ["mon", "tue", "wed", "thu", "fri"]'),
    "pause_until": ((str, type(None)), 'a date "YYYY-MM-DD" or null'),
}


def profile_from_json(item: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """A user as the users API received it -> (cleaned fields, {}) or ({}, {field: error}).
    Unknown keys and values of the wrong JSON type are errors naming the key."""
    if not isinstance(item, dict):
        return {}, {"user": "must be a JSON object"}
    errors = {}
    for key, value in item.items():
        if key not in _JSON_TYPES:
            errors[key] = f"unknown field; the fields are external_id, {', '.join(PROFILE_FIELDS)}"
            continue
        types, expected = _JSON_TYPES[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            errors[key] = f"must be {expected}"
    if "external_id" not in item:
        errors.setdefault("external_id", "This field is required.")
    if errors:
        return {}, errors
    data = {key: ("" if value is None else value) for key, value in item.items()}
    return UserProfileForm.clean_row(data, given=item.keys())
