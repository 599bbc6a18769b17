"""Admin forms for users: the usual auth forms plus the daily-call fields."""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.utils.html import format_html, format_html_join

from .models import User
from .validators import iana_time_zones, phone_to_e164

DAILY_CALL_FIELDS = (
    "name",
    "external_id",
    "phone",
    "local_tz",
    "call_enabled",
    "call_time",
    "max_retries",
    "retry_delay_minutes",
)


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


class DailyCallFieldsMixin:
    """Shared by the add and change forms: no phone and no external id are NULL (many users
    may have none of either)."""

    def clean_phone(self) -> str | None:
        return self.cleaned_data.get("phone") or None

    def clean_external_id(self) -> str | None:
        return self.cleaned_data.get("external_id") or None


class UserAdminCreationForm(DailyCallFieldsMixin, AdminUserCreationForm):
    class Meta(AdminUserCreationForm.Meta):
        model = User
        fields = ("username", "email", *DAILY_CALL_FIELDS)
        field_classes = {**AdminUserCreationForm.Meta.field_classes, "phone": PhoneNumberField}
        widgets = {"local_tz": TimeZoneInput}


class UserAdminChangeForm(DailyCallFieldsMixin, UserChangeForm):
    class Meta(UserChangeForm.Meta):
        model = User
        field_classes = {**UserChangeForm.Meta.field_classes, "phone": PhoneNumberField}
        widgets = {"local_tz": TimeZoneInput}
