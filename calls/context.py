"""What the agent knows when it calls (docs/conversation.md, "Variables"): the product's own
context for the user and a memory relevel keeps, as flat string variables that each
provider sends its documented way (Vapi ``assistantOverrides.variableValues``, Retell
``retell_llm_dynamic_variables``, CallKaro ``metadata``).

Built for a whole batch of calls in one query, where the calls are taken for dialing.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, timedelta

from users.calendar import day_off_reason
from users.selectors import RECORD_DAYS, CallDay, DayOutcome, answered_streak, day_outcome

from .models import Call
from .policy import Policy, policy_current

MEMORY_DAYS = 3
# The memory's outcome words, as a prompt reads them.
OUTCOME_WORDS = {
    "answered": "answered",
    "not_reached": "not reached",
    "missed": "missed",
    "in_progress": "in progress",
    "due": "not called yet",
    "not_scheduled": "no call",
    "skipped": "a day off",
}


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def call_variables_for(*, calls: Sequence[Call]) -> dict[int, dict[str, str]]:
    """Each call's variables, by call id; ``call.user`` must be loaded. One query for all."""
    if not calls:
        return {}
    user_ids = {call.user_id for call in calls}
    first = min(call.local_date for call in calls) - timedelta(days=RECORD_DAYS)
    last = max(call.local_date for call in calls)
    by_user_day: dict[int, dict[date, list[Call]]] = defaultdict(lambda: defaultdict(list))
    earlier = (
        Call.objects.filter(user_id__in=user_ids, local_date__gte=first, local_date__lte=last)
        .select_related("result")
        .only("id", "user_id", "local_date", "status", "attempt", "manual", "result__summary")
        .order_by("local_date", "manual", "attempt", "pk")
    )
    for call in earlier:
        by_user_day[call.user_id][call.local_date].append(call)
    rules = policy_current()
    # The record of days without a call, shared by the batch's calls of one local date whose
    # people have the same calendar (nearly all of a batch): RECORD_DAYS days built for each
    # call were most of a worker's CPU for this.
    empty_records: dict[tuple, list[CallDay]] = {}
    return {
        call.pk: call_variables(
            call=call, days_of_user=by_user_day[call.user_id], rules=rules, empty_records=empty_records
        )
        for call in calls
    }


def call_variables(
    *,
    call: Call,
    days_of_user: dict[date, list[Call]],
    rules: Policy | None = None,
    empty_records: dict[tuple, list[CallDay]] | None = None,
) -> dict[str, str]:
    """``empty_records``: the records of days without a call already built for the batch."""
    user = call.user
    rules = rules or policy_current()
    empty_records = {} if empty_records is None else empty_records
    key = (user.call_days, user.pause_until, call.local_date)
    empty = empty_records.get(key)
    if empty is None:
        empty = empty_records[key] = [
            CallDay(local_date, day_outcome((), off=_is_off(user, local_date, rules)), ())
            for local_date in (
                call.local_date - timedelta(days=offset) for offset in range(RECORD_DAYS, 0, -1)
            )
        ]
    days = list(empty)  # the days before this call's, oldest first
    for local_date, day_calls in days_of_user.items():
        index = RECORD_DAYS - (call.local_date - local_date).days
        if 0 <= index < RECORD_DAYS and day_calls:
            off = _is_off(user, local_date, rules)
            days[index] = CallDay(local_date, day_outcome(day_calls, off=off), tuple(day_calls))
    memory = []
    for day in reversed(days[-MEMORY_DAYS:]):  # newest first
        summaries = [c.result.summary for c in day.calls if _has_result(c) and c.result.summary]
        memory.append(
            {"date": day.local_date.isoformat(), "outcome": str(day.outcome), "summary": " ".join(summaries)}
        )
    context = user.context if isinstance(user.context, dict) else {}
    variables = {
        "name": user.name or user.get_username(),
        "local_date": call.local_date.isoformat(),
        "attempt": str(call.attempt),
        # This call's day is not over: it neither counts nor breaks the streak.
        "streak": str(answered_streak([*days, CallDay(call.local_date, DayOutcome.DUE, ())])),
        "last_days": "\n".join(
            f"{day['date']}: {OUTCOME_WORDS.get(day['outcome'], day['outcome'])}"
            + (f". {day['summary']}" if day["summary"] else "")
            for day in memory
        ),
        "last_days_json": _text(memory),
        "context": _text(context),
    }
    for key, value in context.items():
        variables[f"context_{key}"] = _text(value)
    return variables


def _is_off(user, local_date: date, rules: Policy) -> bool:
    # A day off (the person's call days and pause, the policy's days off; a skipped day is
    # left to the record, which reads them) neither counts for nor breaks the streak.
    return (
        day_off_reason(
            call_days=user.call_days,
            pause_until=user.pause_until,
            skips=(),
            local_date=local_date,
            rules=rules,
        )
        is not None
    )


def _has_result(call: Call) -> bool:
    # select_related on a reverse one-to-one: a call without a result raises on access.
    try:
        return call.result is not None
    except Call.result.RelatedObjectDoesNotExist:
        return False
