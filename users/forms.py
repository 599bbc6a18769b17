"""Admin forms for users: the usual auth forms plus the daily-call fields."""

from __future__ import annotations

import re

from django import forms
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.utils.html import format_html, format_html_join

from .models import User
from .validators import iana_time_zones

DAILY_CALL_FIELDS = ("name", "phone", "local_tz", "call_enabled", "call_time")

# Separators people paste from contact cards: "+91 98765-43210", "+1 (212) 555.0100".
_PHONE_SEPARATORS = re.compile(r"[\s\-.()]")


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
    """Shared by the add and change forms: the phone is tidied before the model validates it."""

    def clean_phone(self) -> str | None:
        phone = self.cleaned_data.get("phone")
        if phone and phone.startswith("+"):
            # Only separators are removed; anything else (a missing "+", letters) is left
            # for the E.164 validator to reject with its explanation.
            phone = _PHONE_SEPARATORS.sub("", phone)
        return phone or None


class UserAdminCreationForm(DailyCallFieldsMixin, AdminUserCreationForm):
    class Meta(AdminUserCreationForm.Meta):
        model = User
        fields = ("username", "email", *DAILY_CALL_FIELDS)
        widgets = {"local_tz": TimeZoneInput}


class UserAdminChangeForm(DailyCallFieldsMixin, UserChangeForm):
    class Meta(UserChangeForm.Meta):
        model = User
        widgets = {"local_tz": TimeZoneInput}
