"""Reads: who is due, which calls need attention. No writes here."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Q, QuerySet

from users.models import PEOPLE

from .models import LIVE_STATUSES, Call, CallStatus

User = get_user_model()

# "Manual or not", which is every call, said so that PostgreSQL reads a user's calls from the
# two partial indexes that lead with the user (call_one_attempt_per_user_day, not manual;
# call_manual_user_day_idx, manual) in one BitmapOr. Without it no index applies, and a
# user's calls were a scan of the whole table.
ANY_KIND = Q(manual=False) | Q(manual=True)


def users_due_for_call(*, until: datetime) -> QuerySet:
    """Users whose next slot begins by ``until`` (the tick's claim horizon: now, or the next
    tick), oldest first: one range scan of the next_call_at index, however far ahead. Never
    an operator (users.models.OPERATORS), whose next_call_at stays empty anyway."""
    return User.objects.filter(PEOPLE, next_call_at__lte=until).order_by("next_call_at")


def calls_queued_before(*, before: datetime, after: tuple[datetime, int] | None = None) -> QuerySet:
    """Queued calls that were due before ``before``, a worker should have taken them, in
    (scheduled_for, id) order; ``after`` a (scheduled_for, id) resumes past that call.

    Keyset pages, not offsets: a rush slot is thousands of calls with one scheduled_for, and
    each page must move on from the last one whatever happened to the calls before it."""
    calls = Call.objects.filter(status=CallStatus.QUEUED, scheduled_for__lte=before)
    if after is not None:
        scheduled_for, pk = after
        # Both arms on the (status, scheduled_for) index: the rest of this instant's calls,
        # then the later instants.
        calls = calls.filter(Q(scheduled_for=scheduled_for, pk__gt=pk) | Q(scheduled_for__gt=scheduled_for))
    return calls.order_by("scheduled_for", "pk")


def calls_dialing_since(*, before: datetime, after_id: int = 0) -> QuerySet:
    """Calls a worker took before ``before`` and never finished (its worker died, or it still
    waits in a slow batch), in id order past ``after_id`` (keyset pages)."""
    return Call.objects.filter(status=CallStatus.DIALING, dialed_at__lte=before, pk__gt=after_id).order_by(
        "pk"
    )


def calls_unconfirmed_since(*, before: datetime, after_id: int = 0) -> QuerySet:
    """Calls sent whose answer was lost, still without a webhook since ``before``, in id
    order past ``after_id`` (keyset pages)."""
    return Call.objects.filter(
        status=CallStatus.UNCONFIRMED, last_status_at__lte=before, pk__gt=after_id
    ).order_by("pk")


def calls_without_outcome_since(*, before: datetime, after_id: int = 0) -> QuerySet:
    """Calls the provider reported as ringing or in progress before ``before`` and never
    finished (their final webhook was lost), in id order past ``after_id``."""
    return Call.objects.filter(
        status__in=[CallStatus.RINGING, CallStatus.IN_PROGRESS], last_status_at__lte=before, pk__gt=after_id
    ).order_by("pk")


def users_callable_without_next_call() -> QuerySet:
    """Callable users with no next call: only a raw UPDATE or a bulk insert makes these.
    Parked users (``schedule_error`` set) are left out: they wait for someone to fix them."""
    return (
        User.objects.filter(
            PEOPLE,
            next_call_at__isnull=True,
            call_enabled=True,
            phone__isnull=False,
            schedule_error__isnull=True,
        )
        .exclude(phone="")
        .order_by("pk")
    )


def users_answered_on(*, pairs: Iterable[tuple[int, date]]) -> set[tuple[int, date]]:
    """Those of the (user id, local date) pairs (a batch's retries) on which the user answered
    one of the day's scheduled calls (a manual call does not count: it never stands in for
    the day's call or its retries); one query."""
    wanted = set(pairs)
    if not wanted:
        return set()
    answered = Call.objects.filter(
        user_id__in={user_id for user_id, _ in wanted},
        local_date__in={day for _, day in wanted},
        manual=False,
        status__in=[CallStatus.IN_PROGRESS, CallStatus.COMPLETED],
    ).values_list("user_id", "local_date")
    return wanted & set(answered)


def live_calls_of_users(*, user_ids: Iterable[int]) -> dict[int, set[int]]:
    """The calls being dialed or under way (any kind, manual too) of ``user_ids`` (a batch's
    call-backs' people): {user id: their ids}; one query."""
    wanted = set(user_ids)
    live: dict[int, set[int]] = {}
    if wanted:
        rows = Call.objects.filter(user_id__in=wanted, status__in=LIVE_STATUSES).values_list("user_id", "pk")
        for user_id, pk in rows:
            live.setdefault(user_id, set()).add(pk)
    return live


def call_retry_chain(*, call: Call) -> list[Call]:
    """All attempts of the same user and local day, first attempt first (a manual call is a
    chain of its own)."""
    if call.manual:
        return [call]
    attempts = Call.objects.filter(user_id=call.user_id, local_date=call.local_date, manual=False)
    return list(attempts.order_by("attempt"))


def call_ids_matching_text(*, text: str) -> QuerySet:
    """The ids of calls whose result's summary or transcript matches ``text``: PostgreSQL's
    full-text search (English stemming, callresult_search_idx), else a plain contains."""
    from .models import CallResult

    text = text.strip()
    results = CallResult.objects.all()
    if connection.vendor == "postgresql":
        # The expression is the index's, word for word, or PostgreSQL would not use it.
        results = results.extra(
            where=["to_tsvector('english', summary || ' ' || transcript) @@ plainto_tsquery('english', %s)"],
            params=[text],
        )
    else:
        results = results.filter(Q(summary__icontains=text) | Q(transcript__icontains=text))
    return results.values("call_id")


def call_history(*, user_id: int, since: date) -> QuerySet:
    """The user's calls from local date ``since`` on, newest first, with their results (on
    the user's two indexes: ANY_KIND)."""
    return (
        Call.objects.filter(ANY_KIND, user_id=user_id, local_date__gte=since)
        .select_related("result")
        .order_by("-local_date", "-scheduled_for", "-pk")
    )


def calls_live_of_users(*, user_ids: list[int], now: datetime) -> dict[int, tuple[int, str]]:
    """The users among ``user_ids`` who have a call live now (models.LIVE_STATUSES, sent at
    most PROVIDER_LIVE_CALL_TIMEOUT_SECONDS ago): {user id: (call id, status)}."""
    if not user_ids:
        return {}
    since = now - timedelta(seconds=settings.PROVIDER_LIVE_CALL_TIMEOUT_SECONDS)
    live = (
        Call.objects.filter(user_id__in=user_ids, status__in=LIVE_STATUSES)
        .filter(Q(dialed_at__isnull=True) | Q(dialed_at__gt=since))
        .order_by("pk")
        .values_list("user_id", "pk", "status")
    )
    return {user_id: (pk, status) for user_id, pk, status in live}
