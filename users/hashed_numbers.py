"""Numbers kept only as keyed hashes: a person who opted out and then asked to be forgotten
leaves no phone number behind, yet the number is never dialed again, for them or anyone who
carries it later.

The hash is HMAC-SHA256 of the E.164 number keyed by a pepper derived from SECRET_KEY
(Django's salted_hmac): without the server's key a list of hashes cannot be turned back into
numbers by hashing every possible phone number, which a plain sha256 of a 12-digit space
would allow in minutes. Rotating SECRET_KEY therefore forgets the list; docs/operating/
data-lifecycle.md says what to do (SECRET_KEY_FALLBACKS are not consulted on purpose).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.utils.crypto import salted_hmac

from .models import SuppressedNumberHash

DIGEST_SALT = "relevel.users.suppressed-number"
SUPPRESSED_MESSAGE = (
    "this number belonged to a person who opted out and asked to be forgotten; it is never called"
)


def phone_digest(phone: str) -> str:
    """The keyed hash of an E.164 number (64 hex digits)."""
    return salted_hmac(DIGEST_SALT, phone, algorithm="sha256").hexdigest()


def phones_suppressed(*, phones: Iterable[str]) -> set[str]:
    """Those of ``phones`` on the hashed suppression list, in one query."""
    by_digest = {phone_digest(phone): phone for phone in set(phones) if phone}
    if not by_digest:
        return set()
    found = SuppressedNumberHash.objects.filter(digest__in=list(by_digest)).values_list("digest", flat=True)
    return {by_digest[digest] for digest in found}


def phone_suppress(*, phone: str) -> None:
    """Put ``phone`` on the list (again: harmless)."""
    SuppressedNumberHash.objects.get_or_create(digest=phone_digest(phone))
