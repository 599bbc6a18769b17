"""The do-not-call list: numbers never dialed, whoever carries them now or later.

A row keeps the number's peppered hash always, and the number itself unless the person asked
to be forgotten; a check matches a row by its number, or a forgotten row by its hash, so a
forgotten number stays stopped without the list saying what it is. The hash is SHA-256 with
a pepper derived from SECRET_KEY (which the database never holds): rotating SECRET_KEY
means re-adding the forgotten rows' numbers, if known, first (docs/operating/consent.md).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q

from calls.bulk import array_cursor
from calls.logsafe import mask_phone

from .models import ConsentSource, Suppression

logger = logging.getLogger("relevel.users")


def _pepper() -> bytes:
    return hashlib.sha256(b"relevel suppression list\0" + settings.SECRET_KEY.encode()).digest()


def number_hash(number: str, *, pepper: bytes | None = None) -> str:
    """The peppered one-way hash of an E.164 number, as the suppression list stores it:
    SHA-256 of a 32-byte secret and the number. (Not an HMAC: nothing here authenticates a
    message, and the plain hash is three times cheaper for a claiming batch's thousand.)"""
    return hashlib.sha256((pepper or _pepper()) + number.encode()).hexdigest()


def numbers_suppressed(*, numbers: Iterable[str | None]) -> set[str]:
    """Which of ``numbers`` are on the list (one query on the two unique indexes)."""
    wanted = {number for number in numbers if number}
    if not wanted:
        return set()
    pepper = _pepper()  # once for a claiming batch's thousand numbers
    hashes = {number_hash(number, pepper=pepper): number for number in wanted}
    found: set[str] = set()
    # Two arrays, not IN lists of a thousand parameters each: the claim asks this for every
    # batch of a rush, and the IN lists' parsing and planning cost more than the index probes.
    # Bound in binary (bulk.array_cursor): quoting 2,000 strings into the SQL text in Python
    # cost a claiming batch more than the lookup.
    if connection.vendor == "postgresql":
        table = Suppression._meta.db_table
        with array_cursor() as (cursor, array):
            cursor.execute(
                f"SELECT number, number_hash FROM {table} WHERE number = ANY({array}::text[]) "
                f"OR (number IS NULL AND number_hash = ANY({array}::text[]))",
                [list(wanted), list(hashes)],
            )
            rows = cursor.fetchall()
    else:  # SQLite (the zero-setup first run): IN lists, within its parameter limit
        rows = []
        numbers, hashed = sorted(wanted), sorted(hashes)
        for start in range(0, max(len(numbers), len(hashed)), 400):
            rows += Suppression.objects.filter(
                Q(number__in=numbers[start : start + 400])
                | Q(number__isnull=True, number_hash__in=hashed[start : start + 400])
            ).values_list("number", "number_hash")
    for number, hashed in rows:
        if number in wanted:
            found.add(number)
        if hashed in hashes:
            found.add(hashes[hashed])
    return found


def number_is_suppressed(*, number: str | None) -> bool:
    return bool(numbers_suppressed(numbers=[number]))


def suppression_add(
    *, number: str, reason: str = "", source: str = ConsentSource.ADMIN, created_by: str = ""
) -> tuple[Suppression, bool]:
    """Put ``number`` (valid E.164) on the list; returns the row and whether it is new. A
    number already there keeps its row; a new reason replaces the old one."""
    hashed = number_hash(number)
    with transaction.atomic():
        existing = (
            Suppression.objects.select_for_update().filter(Q(number=number) | Q(number_hash=hashed)).first()
        )
        if existing is not None:
            if reason and reason != existing.reason:
                existing.reason = reason
                existing.save(update_fields=["reason"])
            return existing, False
        try:
            with transaction.atomic():
                row = Suppression.objects.create(
                    number=number, number_hash=hashed, reason=reason, source=source, created_by=created_by
                )
        except IntegrityError:
            # Added by another request at the same moment: theirs stands.
            return Suppression.objects.get(number_hash=hashed), False
    logger.info("Number %s suppressed by %s (%s)", mask_phone(number), created_by or "-", source)
    return row, True


def suppression_remove(*, number: str, removed_by: str = "") -> bool:
    """Take ``number`` off the list (its hashed row too); False if it was not on it."""
    deleted, _ = Suppression.objects.filter(Q(number=number) | Q(number_hash=number_hash(number))).delete()
    if deleted:
        logger.info(
            "Number %s removed from the suppression list by %s", mask_phone(number), removed_by or "-"
        )
    return bool(deleted)


def suppression_forget_number(*, number: str) -> None:
    """Keep ``number`` on the list as its hash only (for an erasure: "forget me" after an
    opt-out). The erasure service calls this; nothing else shows the number afterwards."""
    hashed = number_hash(number)
    if not Suppression.objects.filter(Q(number=number) | Q(number_hash=hashed)).update(number=None):
        Suppression.objects.create(
            number=None, number_hash=hashed, source=ConsentSource.ADMIN, reason="forgotten"
        )
