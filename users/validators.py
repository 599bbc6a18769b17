"""Validators for the fields operators and integrations set on a user."""

from functools import lru_cache
from zoneinfo import available_timezones

import phonenumbers
from django.core.exceptions import ValidationError


@lru_cache(maxsize=1)
def iana_time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def validate_iana_time_zone(value: str) -> None:
    if value not in iana_time_zones():
        raise ValidationError(
            "%(value)s is not an IANA time zone; use a name such as Asia/Kolkata or America/New_York.",
            code="invalid_time_zone",
            params={"value": value},
        )


def validate_e164_phone(value: str) -> None:
    """Accept only a valid number already written in E.164 (+ and country code, digits only)."""
    message = "%(value)s is not a valid phone number in E.164 format, such as +919876543210."
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValidationError(message, code="invalid_phone", params={"value": value}) from None
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if e164 != value or not phonenumbers.is_valid_number(parsed):
        raise ValidationError(message, code="invalid_phone", params={"value": value})
