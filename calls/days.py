"""What the engine tells the product's app (events/): every attempt's end, and a user's local
day found reached or missed. Called by the services that change calls, inside the
transaction of that change (the outbox is written in it), never by signals.

With no endpoint wanting these events, each function returns at its first line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date

from django.db import connection, transaction
from django.db.models import QuerySet

from events.endpoints import endpoints_want
from events.models import EventType
from events.outbox import EventDraft, events_emit_many, events_emit_marking_days
from notifications.services import notify_missed_days
from notifications.wanted import notifications_wanted

from .bulk import array_cursor
from .models import TERMINAL_STATUSES, Call, CallStatus

# The user picked up: in progress is enough, it never moves back.
ANSWERED_STATUSES = frozenset({CallStatus.IN_PROGRESS, CallStatus.COMPLETED})
_CALL_FIELDS = (
    *("id", "user_id", "local_date", "attempt", "status", "provider"),
    *("end_reason", "duration_seconds", "manual", "outcome_inferred"),
)


def _days_on() -> bool:
    """Whether a day found missed or reached matters to anyone: an endpoint that wants day
    events, or a person who wants a message when a day is missed."""
    return (
        endpoints_want(EventType.DAY_REACHED)
        or endpoints_want(EventType.DAY_MISSED)
        or notifications_wanted()
    )


def _events_on() -> bool:
    return endpoints_want(EventType.CALL_ENDED) or _days_on()


def call_ended_draft(call: dict) -> EventDraft:
    """The call.ended event of a call row (a dict of _CALL_FIELDS)."""
    return EventDraft(
        type=EventType.CALL_ENDED,
        user_id=call["user_id"],
        local_date=call["local_date"],
        data={
            "call": {
                "id": call["id"],
                "attempt": call["attempt"],
                "status": str(call["status"]),
                "provider": call["provider"] or None,
                "end_reason": call["end_reason"] or None,
                "duration_seconds": call["duration_seconds"],
                "manual": call["manual"],
                # relevel decided this outcome (no webhook in time), not the provider.
                "inferred": call["outcome_inferred"],
            },
            # The call's normalised result (calls/results.py: summary, intents) goes here
            # once calls carry one; null until then, so receivers can already expect the key.
            "result": None,
        },
    )


def calls_ended(*, call_ids: Iterable[int], calls: Sequence[dict] | None = None) -> None:
    """A call.ended event for each call that just reached its final status, and their days
    settled (days_settle), all written in one statement. Run after any retry of theirs is
    inserted, in the same transaction. ``calls``: the rows, when the caller has them already
    (dicts of _CALL_FIELDS)."""
    if not _events_on():
        return
    if calls is None:
        calls = _call_rows(list(call_ids))
    calls = [call for call in calls if call["status"] in TERMINAL_STATUSES]
    if not calls:
        return
    ended = [call_ended_draft(call) for call in calls] if endpoints_want(EventType.CALL_ENDED) else []
    days_settle(calls=calls, with_events=ended)


def _call_rows(call_ids: list[int]) -> list[dict]:
    """The calls as dicts of _CALL_FIELDS; on PostgreSQL their ids go as one array bound in
    binary, not an IN list (a tick's batch ends up to a thousand calls at once)."""
    if connection.vendor != "postgresql" or not call_ids:
        return list(Call.objects.filter(pk__in=call_ids).values(*_CALL_FIELDS))
    columns = ", ".join(Call._meta.get_field(name).column for name in _CALL_FIELDS)
    with array_cursor(rows=len(call_ids)) as (cursor, a):
        cursor.execute(
            f"SELECT {columns} FROM {Call._meta.db_table} WHERE id = ANY({a}::bigint[])", [call_ids]
        )
        return [dict(zip(_CALL_FIELDS, row, strict=True)) for row in cursor.fetchall()]


def events_wanted_for(status: str) -> bool:
    """Whether a call moving to ``status`` makes an event (a final or answered status, and
    an endpoint that wants call or day events)."""
    return (status in TERMINAL_STATUSES or status in ANSWERED_STATUSES) and _events_on()


def call_changed(*, call: Call) -> None:
    """After one call's status moved (a provider's webhook): call.ended if it is final,
    and its day settled. Run after any retry of it is inserted, in the same transaction."""
    if not _events_on():
        return
    row = call_row(call)
    if row["status"] in TERMINAL_STATUSES:
        calls_ended(call_ids=(), calls=[row])
    elif row["status"] in ANSWERED_STATUSES:
        days_settle(calls=[row], with_events=[])


def calls_end(queryset: QuerySet, **values: object) -> int:
    """``queryset.update(**values)`` for an UPDATE that gives calls a final status (missed,
    canceled), with their call.ended events and days settled in the same transaction.
    With no events wanted it is that one UPDATE; with them, the rows are locked and read
    first, so that the events name exactly the calls it changed."""
    if not _events_on():
        return queryset.update(**values)
    with transaction.atomic():
        ids = list(queryset.select_for_update().values_list("pk", flat=True))
        changed = Call.objects.filter(pk__in=ids).update(**values)
        calls_ended(call_ids=ids)
    return changed


def call_row(call: Call) -> dict:
    """A Call as calls_ended and days_settle take it (deferred fields are read if needed)."""
    return {name: getattr(call, name) for name in _CALL_FIELDS}


def days_settle(*, calls: Sequence[dict], with_events: Sequence[EventDraft]) -> None:
    """THE place where a user's local day is found reached or missed (and only here); its
    events are written with ``with_events`` (the calls' own), in one statement.

    Reached: the first answered attempt of the day (in progress or completed). Missed: a
    final, unanswered attempt after which the day holds no attempt still to come and none
    answered (retries spent, a missed slot, a canceled call). Each is recorded once per
    user and day (the day marks of events.outbox), whoever finds it first.

    A day found missed also goes to the notifications app's notify_missed_day, once per user
    and day (the same mark), in the same transaction: its messages are sent after commit.
    """
    drafts = list(with_events)
    if _days_on():
        scheduled = [call for call in calls if not call["manual"]]  # a call now is outside the day
        reached = [call for call in scheduled if call["status"] in ANSWERED_STATUSES]
        unanswered = [
            call
            for call in scheduled
            if call["status"] in TERMINAL_STATUSES and call["status"] not in ANSWERED_STATUSES
        ]
        still_open = _days_still_open(unanswered)
        missed = [call for call in unanswered if (call["user_id"], call["local_date"]) not in still_open]
        candidates = {
            (call["user_id"], call["local_date"], EventType.DAY_REACHED): call for call in reached
        } | {(call["user_id"], call["local_date"], EventType.DAY_MISSED): call for call in missed}
        if candidates:
            # The marks and every event in one statement: each day event is written only if
            # its mark is new (events.outbox.events_emit_marking_days).
            marks = [(mark, _mark_draft(mark, candidates[mark])) for mark in sorted(candidates)]
            new_marks = events_emit_marking_days(drafts=drafts, marks=marks)
            notify_missed_days(
                days=[(mark[0], mark[1]) for mark in sorted(new_marks) if mark[2] == EventType.DAY_MISSED]
            )
            return
    if drafts:
        events_emit_many(drafts=drafts)


def _mark_draft(mark: tuple[int, date, str], call: dict) -> EventDraft | None:
    """The day event that goes with a new mark, or None if no endpoint wants it."""
    if not endpoints_want(mark[2]):
        return None
    if mark[2] == EventType.DAY_REACHED:
        return _day_draft(EventType.DAY_REACHED, call, {"call_id": call["id"], "attempt": call["attempt"]})
    return _day_draft(
        EventType.DAY_MISSED,
        call,
        {
            "reason": _missed_reason(call),
            "last_call_id": call["id"],
            "attempts": call["attempt"],
            "last_status": str(call["status"]),
        },
    )


def _day_draft(type: str, call: dict, data: dict) -> EventDraft:
    return EventDraft(type=type, user_id=call["user_id"], local_date=call["local_date"], data=data)


def _days_still_open(calls: Sequence[dict]) -> set[tuple[int, date]]:
    """The (user, local date) of ``calls`` whose day has an attempt answered or still to
    come, other than these calls: one query for all of them."""
    if not calls:
        return set()
    open_statuses = [*ANSWERED_STATUSES, *(set(CallStatus.values) - TERMINAL_STATUSES)]
    if connection.vendor != "postgresql":
        return {
            (call["user_id"], call["local_date"])
            for call in calls
            if Call.objects.filter(user_id=call["user_id"], local_date=call["local_date"], manual=False)
            .exclude(pk=call["id"])
            .filter(status__in=open_statuses)
            .exists()
        }
    table = Call._meta.db_table
    with array_cursor(rows=len(calls)) as (cursor, a):
        cursor.execute(
            f"SELECT DISTINCT c.user_id, c.local_date FROM {table} c"
            f" JOIN unnest({a}::bigint[], {a}::date[], {a}::bigint[]) AS v(user_id, local_date, call_id)"
            " ON c.user_id = v.user_id AND c.local_date = v.local_date AND c.id <> v.call_id"
            f" WHERE NOT c.manual AND c.status = ANY({a}::text[])",
            [
                [call["user_id"] for call in calls],
                [call["local_date"] for call in calls],
                [call["id"] for call in calls],
                [str(status) for status in open_statuses],
            ],
        )
        return set(cursor.fetchall())


def _missed_reason(call: dict) -> str:
    if call["status"] == CallStatus.MISSED:
        return "missed"  # its window closed before it could be dialed
    if call["status"] == CallStatus.CANCELED:
        return "canceled"
    return "retries_spent"
