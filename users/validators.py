"""Validators for the fields operators and integrations set on a user."""

import json
import re
from functools import lru_cache
from zoneinfo import available_timezones

import phonenumbers
from django.core.exceptions import ValidationError

# A call time that is not one, in the admin's forms, the users API and the CSV import alike
# ("25:00", "8pm"): "Enter a valid time." did not say what a valid one is.
CALL_TIME_INVALID = "Enter a time between 00:00 and 23:59, such as 20:30."


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


# What people paste from contact cards and signatures besides digits: "+49 30 1234 56789",
# "+1 (312) 555-0147", "+44 (0)20 7946 0958", "+91 98765-43210", "+33 1.23.45.67.89".
_TYPED_PHONE = re.compile(r"\+[0-9 \u00a0\-.()/]+")


def phone_to_e164(typed: str) -> str:
    """A phone as a person types it -> E.164, or a ValidationError that quotes ``typed``.

    The number must start with "+" and its country code (a number without one is
    somebody's in some country; guessing which would phone a stranger). Only digits and
    separators are accepted: phonenumbers would otherwise read letters as a keypad
    ("+1 800 FLOWERS"), or drop an extension or trailing words, and store a number
    other than the one typed.
    """
    if not _TYPED_PHONE.fullmatch(typed):
        raise _typed_phone_error(typed)
    try:
        parsed = phonenumbers.parse(typed, None)
    except phonenumbers.NumberParseException:
        raise _typed_phone_error(typed) from None
    if parsed.extension or not phonenumbers.is_valid_number(parsed):
        raise _typed_phone_error(typed)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _typed_phone_error(typed: str) -> ValidationError:
    # Made only when needed: a ValidationError costs as much as parsing the number, which
    # counts in an import of 100,000 rows.
    return ValidationError(
        "%(value)s is not a valid phone number: write it with + and its country code, "
        "such as +919876543210 or +91 98765 43210.",
        code="invalid_phone",
        params={"value": typed},
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


# The product's own id, as it appears in /api/users/<external_id>: URL-safe as it is, so
# that no client has to encode it. "." and ".." cannot be addressed (clients squash them
# out of a path), and "bulk" is the bulk endpoint's own name.
_EXTERNAL_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
RESERVED_EXTERNAL_IDS = frozenset({".", "..", "bulk"})


def validate_external_id(value: str) -> None:
    if not _EXTERNAL_ID.fullmatch(value):
        raise ValidationError(
            "%(value)s is not a valid external id: use 1 to 128 letters, digits and . _ : -",
            code="invalid_external_id",
            params={"value": value[:140]},
        )
    if value in RESERVED_EXTERNAL_IDS:
        raise ValidationError(
            "%(value)s cannot be an external id: it cannot be addressed in /api/users/<external_id>",
            code="reserved_external_id",
            params={"value": value},
        )


# The product's context for a user (users.models.User.context), sent with every call: small
# enough to ride in a provider's request and an agent's prompt.
MAX_CONTEXT_BYTES = 4096


def context_size(value: object) -> int:
    """Its size as compact JSON, in UTF-8 bytes."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def validate_context(value: object) -> None:
    if not isinstance(value, dict):
        raise ValidationError(
            'must be a JSON object, such as {"goal": "walk 20 minutes"}', code="invalid_context"
        )
    size = context_size(value)
    if size > MAX_CONTEXT_BYTES:
        raise ValidationError(
            "is %(size)s bytes as JSON; at most %(limit)s",
            code="context_too_large",
            params={"size": f"{size:,}", "limit": f"{MAX_CONTEXT_BYTES:,}"},
        )
