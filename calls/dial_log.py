"""The dial log (docs/operating/consent.md): every dial with what allowed it, for an
operator to show that no call went out at the wrong local time, without consent or to a
suppressed number. Read from the columns placement writes when it takes a call
(Call.dial_*), streamed: a month of a million people's dials never sits in memory."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import OuterRef, Subquery

from users.models import Consent

from .models import Call

DIAL_LOG_HEADER = (
    "call_id",
    "user_id",
    "external_id",
    "to_number",
    "dialed_at_utc",
    "local_time_at_dial",
    "calling_hours",
    "consent_id",
    "consent_source",
    "consent_given_at_utc",
    "suppression_checked",
    "attempt",
    "manual",
    "status",
    "provider",
)
# A call is created before it is dialed, and dialed within its window (at most 12 hours)
# after a retry delay (at most a day): so its creation lies in this margin before the dial,
# and the created_at index narrows the read to the days asked for plus this margin.
CREATED_BEFORE_DIAL = timedelta(days=3)
CHUNK_ROWS = 2000


def _utc(instant: datetime | None) -> str:
    return "" if instant is None else instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def dial_log_rows(*, first_day: date, last_day: date) -> Iterator[tuple]:
    """One row per dial (DIAL_LOG_HEADER's columns) from ``first_day`` to ``last_day``
    included, UTC days, in dial order."""
    start = datetime.combine(first_day, time(), tzinfo=UTC)
    end = datetime.combine(last_day + timedelta(days=1), time(), tzinfo=UTC)
    consent = Consent.objects.filter(pk=OuterRef("dial_consent_id"))
    calls = (
        Call.objects.filter(
            dialed_at__gte=start,
            dialed_at__lt=end,
            created_at__gte=start - CREATED_BEFORE_DIAL,
            created_at__lt=end,
        )
        .annotate(
            consent_source=Subquery(consent.values("source")[:1]),
            consent_given_at=Subquery(consent.values("given_at")[:1]),
        )
        .order_by("dialed_at", "pk")
        .values_list(
            "pk",
            "user_id",
            "user__external_id",
            "to_number",
            "dialed_at",
            "dial_local_time",
            "dial_calling_hours",
            "dial_consent_id",
            "consent_source",
            "consent_given_at",
            "dial_suppression_checked",
            "attempt",
            "manual",
            "status",
            "provider",
        )
    )
    for row in calls.iterator(chunk_size=CHUNK_ROWS):
        (pk, user_id, external_id, to_number, dialed_at, local, hours, consent_id, source, given_at,
         checked, attempt, manual, status, provider) = row  # fmt: skip
        yield (
            pk,
            user_id,
            external_id or "",
            to_number,
            _utc(dialed_at),
            local,
            hours,
            "" if consent_id is None else consent_id,
            source or "",
            _utc(given_at),
            "yes" if checked else "no",
            attempt,
            "yes" if manual else "no",
            status,
            provider,
        )
