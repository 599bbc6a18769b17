"""Outcomes: record what the provider reports about a call, finish calls, schedule retries."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from redis.exceptions import RedisError

from . import bulk, capacity, days, queues, retry_buckets
from .models import STATUS_RANK, TERMINAL_STATUSES, Call, CallStatus
from .policy import policy_current
from .providers.base import CallEvent
from .slots import zone_or_none

logger = logging.getLogger("relevel.calls")
User = get_user_model()


def humanize_delay(seconds: int) -> str:
    if seconds and seconds % 60 == 0:
        minutes = seconds // 60
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def insert_calls_ignoring_conflicts(calls: list[Call]) -> list[int]:
    """The conditional insert that claims: the ids of the rows really inserted."""
    return bulk.insert_ignoring_conflicts(
        calls, conflict_fields=["user", "local_date", "attempt"], conflict_where=Q(manual=False)
    )


def call_finish(call: Call, *, status: str, error: str = "", now: datetime, inferred: bool = False) -> None:
    """Move a locked call to ``status``, keeping the error it already has unless given one.
    ``inferred``: relevel decided this outcome (a timeout), the provider did not report it."""
    call.status = status
    call.error = error or call.error
    call.last_status_at = now
    call.outcome_inferred = inferred
    fields = ["status", "error", "last_status_at", "outcome_inferred"]
    if status in TERMINAL_STATUSES:
        call.completed_at = now
        fields.append("completed_at")
    call.save(update_fields=fields)


# Recorded in a call's payloads when the provider answered with an id another call has.
REUSED_ID_KEY = "reused_provider_call_id"


def _event_details(event: CallEvent) -> list[tuple[str, object]]:
    """The Call fields an event gives a value for (an empty one never wipes what is stored)."""
    details = (
        ("transcript", event.transcript),
        ("recording_url", event.recording_url),
        ("duration_seconds", event.duration_seconds),
        ("error", event.error_message),
        ("end_reason", event.end_reason),
    )
    return [(field, value) for field, value in details if value not in (None, "")]


class CallNotFound(LookupError):
    pass


@dataclass(frozen=True)
class EventResult:
    call: Call
    applied: bool
    retry_scheduled: bool


def _locked_call_for(event: CallEvent, providers: tuple[str, ...]) -> Call:
    """The call ``event`` is about, locked; CallNotFound if it is not one of ours.

    A provider names the call by its own id, and echoes ours back in the metadata we sent.
    A call still unconfirmed has no provider id yet and is found by ours alone; when both
    are given they must agree, or the event is about another call (another deployment on
    the same provider account, say).
    """
    calls = Call.objects.select_for_update().filter(provider__in=providers)
    by_provider_id = None
    if event.provider_call_id:
        by_provider_id = calls.filter(provider_call_id=event.provider_call_id).first()
    not_found = CallNotFound(
        f"no call with call_id {event.provider_call_id[:64]}"
        if event.provider_call_id
        else f"no call {event.our_call_id}"
    )
    if event.our_call_id is None:
        if by_provider_id is None:
            raise not_found
        return by_provider_id
    if by_provider_id is not None:
        if by_provider_id.pk == event.our_call_id:
            return by_provider_id
        # Our id names a call the provider's id does not: the two are about different calls,
        # unless ours was placed under an id the provider had already given that other call
        # (placement records it on the call).
        ours = calls.filter(pk=event.our_call_id, provider_call_id__isnull=True).first()
        reused = ours is not None and any(
            isinstance(payload, dict) and payload.get(REUSED_ID_KEY) == event.provider_call_id
            for payload in ours.provider_payloads
        )
        if not reused:
            raise CallNotFound("the provider call id and our call id point at different calls")
        return ours
    call = calls.filter(pk=event.our_call_id).first()
    if call is None:
        raise not_found
    if call.provider_call_id and event.provider_call_id and call.provider_call_id != event.provider_call_id:
        raise CallNotFound(f"call {call.pk} was placed as another provider call")
    return call


def call_apply_event(*, event: CallEvent, providers: tuple[str, ...] | None = None) -> EventResult:
    """Record a provider status report about one of ``providers``' calls (any provider's
    when None; a webhook names its own, so that it never touches another's calls).

    Status only moves forward, and a final status reported by the provider is final. The
    exception is a final status relevel only inferred (no webhook in time): the provider's
    own word replaces it, and a retry that the inference scheduled and that has not been
    dialed yet is canceled if the real outcome needs none.

    An event that moves a call forward is one conditional UPDATE (``_advance_call``), and
    with no retry to schedule it runs on its own, outside a transaction. Concurrent
    deliveries of one event are serialised on the call row: the first moves it, the others
    find it already there. The retry an outcome may trigger is inserted in the same
    transaction as the outcome, and conditionally, so the same outcome delivered twice
    (CallKaro's account- and agent-level webhooks) schedules one retry. Everything else (a
    repeat, a late or unknown event, ids that need checking) takes the locked path.
    """
    now = timezone.now()
    if providers is None:
        from .providers import PROVIDER_CLASSES

        providers = tuple(PROVIDER_CLASSES)
    may_retry = event.retry and event.status in policy_current().retry_statuses
    # With events on, a final or answered status writes its event in the UPDATE's own
    # transaction (one INSERT more); with none wanted, this path stays one statement.
    if not may_retry and not days.events_wanted_for(event.status):
        call = _advance_call(event, providers, now=now)
        if call is not None:
            _applied(call)
            return EventResult(call=call, applied=True, retry_scheduled=False)
        with transaction.atomic():
            return _apply_locked(event, providers, now=now)
    with transaction.atomic():
        call = _advance_call(event, providers, now=now)
        if call is None:
            return _apply_locked(event, providers, now=now)
        _applied(call)
        retry_scheduled = call_schedule_retry(call=call, now=now) if may_retry else False
        days.call_changed(call=call)
        return EventResult(call=call, applied=True, retry_scheduled=retry_scheduled)


# What _advance_call reads back: what the log line, the answer and a retry need. The other
# fields of the Call it returns are deferred (loaded if asked for). In the model's field
# order, which Model.from_db expects.
_ADVANCED_NAMES = {
    *("id", "user", "status", "provider", "end_reason"),
    *("attempt", "local_date", "manual", "callback", "agent_id", "variant"),
    # For the call.ended event (calls.days), so that it reads nothing more.
    *("duration_seconds", "outcome_inferred"),
}
_ADVANCED_FIELDS = tuple(field for field in Call._meta.concrete_fields if field.name in _ADVANCED_NAMES)


def _advance_call(event: CallEvent, providers: tuple[str, ...], *, now: datetime) -> Call | None:
    """Apply ``event`` to its call in one conditional UPDATE ... RETURNING, if it moves a
    call that is not final yet forward; the call as it now is, else None.

    The call is found as _locked_call_for finds it when the ids agree: by the provider's
    id (and ours, if given, must be the same row's), or by ours alone. None covers every
    other case (no such call, a status that is not forward, a final status to replace,
    ids that point at different rows, a call whose provider id is not stored yet), which
    _apply_locked then decides. The condition on the status is what keeps concurrent
    deliveries from all applying: a second UPDATE waits for the first's row lock and then
    finds the status no longer among the earlier ones.

    Rather than a locked read and a save: no row travels to Python and back, and
    provider_payloads grows in place instead of being rebuilt, sent and parsed whole.
    """
    rank = STATUS_RANK[event.status]
    earlier = [status for status, status_rank in STATUS_RANK.items() if status_rank < rank]
    if not earlier or not (event.provider_call_id or event.our_call_id is not None):
        return None
    if connection.vendor == "postgresql":
        append = "provider_payloads || jsonb_build_array(%s::jsonb)"
    else:
        append = "json_insert(provider_payloads, '$[#]', json(%s))"
    assignments = ["status = %s", "last_status_at = %s", f"provider_payloads = {append}"]
    values: list = [event.status, connection.ops.adapt_datetimefield_value(now), json.dumps(event.raw)]
    for column, value in _event_details(event):
        assignments.append(f"{column} = %s")
        values.append(value)
    if event.status == CallStatus.COMPLETED and not event.error_message:
        assignments.append("error = ''")  # an earlier transient or inferred error, now overcome
    assignments.append("outcome_inferred = %s")
    values.append(False)
    if event.status in TERMINAL_STATUSES:
        assignments.append("completed_at = %s")
        values.append(connection.ops.adapt_datetimefield_value(now))
    conditions = [f"provider IN ({', '.join(['%s'] * len(providers))})"]
    values += providers
    conditions.append(f"status IN ({', '.join(['%s'] * len(earlier))})")
    values += earlier
    if event.provider_call_id:
        conditions.append("provider_call_id = %s")
        values.append(event.provider_call_id)
    if event.our_call_id is not None:
        conditions.append("id = %s")
        values.append(event.our_call_id)
    returning = ", ".join(field.column for field in _ADVANCED_FIELDS)
    # A few shapes (per status and details given), run on every webhook: prepared.
    with bulk.server_cursor(prepare=True) as (cursor, _):
        cursor.execute(
            f"UPDATE {Call._meta.db_table} SET {', '.join(assignments)} "
            f"WHERE {' AND '.join(conditions)} RETURNING {returning}",
            values,
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return Call.from_db(
        connection.alias,
        [field.attname for field in _ADVANCED_FIELDS],
        # to_python: SQLite returns dates as text and booleans as integers.
        [field.to_python(value) for field, value in zip(_ADVANCED_FIELDS, row, strict=True)],
    )


def _applied(call: Call) -> None:
    """What follows an event that moved ``call``: the log line, and a final status frees
    the provider's live-call slot once it is committed.

    The line is INFO for a call's outcome and DEBUG for the statuses on the way (ringing,
    in progress): one line per call in the web log rather than one per webhook, which at
    three webhooks a call was a tenth of the webhook's CPU (BENCHMARKS.md, issue 21). Every
    status stays in the call's payloads, on its admin page."""
    logger.log(
        logging.INFO if call.status in TERMINAL_STATUSES else logging.DEBUG,
        "[Webhook:%s] Updated call %s: %s%s",
        call.provider or "provider",
        call.pk,
        call.status,
        f" ({call.end_reason})" if call.end_reason else "",
    )
    if call.status in TERMINAL_STATUSES:
        provider, call_id = call.provider, call.pk
        queues.on_commit(lambda: _after_final_status(provider, call_id))


def _after_final_status(provider: str, call_id: int) -> None:
    capacity.live_call_ended(provider=provider, call_id=call_id)
    # The result and its analysis are computed by a job, off the webhook's path.
    queues.analysis_note(call_id)


def _apply_locked(event: CallEvent, providers: tuple[str, ...], *, now: datetime) -> EventResult:
    """call_apply_event for what _advance_call leaves: the call read under its row lock,
    then changed. Runs inside the caller's transaction."""
    call = _locked_call_for(event, providers)
    replaces_inference = call.is_terminal and call.outcome_inferred and event.status in TERMINAL_STATUSES
    if not replaces_inference and (call.is_terminal or STATUS_RANK[event.status] <= STATUS_RANK[call.status]):
        if _fill_in_details(call, event):
            return EventResult(call=call, applied=True, retry_scheduled=False)
        logger.info("Call %s: ignoring %s webhook, call is already %s", call.pk, event.status, call.status)
        return EventResult(call=call, applied=False, retry_scheduled=False)

    call.status = event.status
    call.last_status_at = now
    call.provider_payloads = [*call.provider_payloads, event.raw]
    # Only what this event changes: rewriting every column (the transcript, all payloads)
    # would cost more than the event.
    fields = ["status", "last_status_at", "provider_payloads"]
    if (
        event.provider_call_id
        and call.provider_call_id != event.provider_call_id
        # (Not when the provider had given that id to another call before.)
        and not Call.objects.filter(provider=call.provider, provider_call_id=event.provider_call_id)
        .exclude(pk=call.pk)
        .exists()
    ):
        call.provider_call_id = event.provider_call_id
        fields.append("provider_call_id")
    for field, value in _event_details(event):
        setattr(call, field, value)
        fields.append(field)
    if call.status == CallStatus.COMPLETED and not event.error_message and call.error:
        call.error = ""  # an earlier transient or inferred error, now overcome
        fields.append("error")
    if call.outcome_inferred:
        call.outcome_inferred = False
        fields.append("outcome_inferred")
    if call.status in TERMINAL_STATUSES:
        call.completed_at = now
        fields.append("completed_at")
    call.save(update_fields=list(dict.fromkeys(fields)))
    _applied(call)
    wants_retry = call.status in policy_current().retry_statuses and event.retry
    if replaces_inference and not wants_retry:
        _cancel_undialed_retry(call, now=now)
    retry_scheduled = call_schedule_retry(call=call, now=now) if wants_retry else False
    days.call_changed(call=call)
    return EventResult(call=call, applied=True, retry_scheduled=retry_scheduled)


def _fill_in_details(call: Call, event: CallEvent) -> bool:
    """A second report of the same final outcome that carries what the first lacked (Vapi's
    end-of-call-report after its status-update "ended", Retell's call_analyzed after
    call_ended): keep the transcript, recording and duration. A plain duplicate adds nothing
    and writes nothing."""
    if event.status != call.status:
        return False
    if event.final_report and event.raw not in call.provider_payloads:
        # New end-of-call data (an analysis, a cost): kept, and the call analysed again.
        _fill_in_fields(call, event, new_report=True)
        call_id = call.pk
        queues.on_commit(lambda: queues.analysis_note(call_id))
        return True
    return _fill_in_fields(call, event, new_report=False)


def _fill_in_fields(call: Call, event: CallEvent, *, new_report: bool) -> bool:
    fields = [
        field
        for field, value in (
            ("transcript", event.transcript),
            ("recording_url", event.recording_url),
            ("duration_seconds", event.duration_seconds),
        )
        if value not in (None, "") and getattr(call, field) in (None, "")
    ]
    if not fields and not new_report:
        return False
    for field in fields:
        setattr(call, field, getattr(event, field))
    call.provider_payloads = [*call.provider_payloads, event.raw]
    call.save(update_fields=[*fields, "provider_payloads"])
    logger.info(
        "[Webhook:%s] Call %s: %s added", call.provider, call.pk, ", ".join(fields) or "end-of-call data"
    )
    return True


def _cancel_undialed_retry(call: Call, *, now: datetime) -> None:
    undialed = Call.objects.filter(retry_of=call, status=CallStatus.QUEUED)
    canceled_ids = (
        list(undialed.values_list("pk", flat=True)) if days.events_wanted_for(CallStatus.CANCELED) else []
    )
    canceled = undialed.update(
        status=CallStatus.CANCELED,
        error=(
            f"The provider reported attempt {call.attempt} as {call.status} after relevel had given up on it."
        ),
        last_status_at=now,
        completed_at=now,
    )
    if canceled:
        logger.info("Call %s: its retry is canceled, the provider reported %s", call.pk, call.status)
        days.calls_ended(call_ids=canceled_ids)


_RETRY_USER_FIELDS = ("id", "phone", "call_enabled", "local_tz", "max_retries", "retry_delay_minutes")


def _retry_for(call: Call, *, user, rules, now: datetime) -> tuple[Call | None, int]:
    """The next attempt of a failed/unanswered call, timed from ``now`` (queued, or canceled
    saying why if it would fall outside the calling hours), and the user's retry limit; None
    if it gets none (saying why in the log)."""
    if call.manual or call.callback:
        logger.info("Call %s was a %s call: no retry", call.pk, "manual" if call.manual else "call-back")
        return None, 0
    if call.status not in rules.retry_statuses:
        logger.info("Call %s: no retry, %s is not retried (call policy)", call.pk, call.status)
        return None, 0
    # The user's own settings, where set, override the call policy's.
    max_retries = user.max_retries if user.max_retries is not None else rules.max_retries
    if call.attempt > max_retries:
        logger.info("Call %s - max retries (%s) reached", call.pk, max_retries)
        return None, max_retries
    if not user.is_callable:
        logger.info("Call %s: no retry, the user can no longer be called", call.pk)
        return None, max_retries
    if user.retry_delay_minutes is not None:
        delay = user.retry_delay_minutes * 60
    else:
        delay = rules.retry_delay_seconds(retry_number=call.attempt)
    # A retry belongs to its call's local day: one that would fall on the next (a late
    # evening call, or a stuck call the tick only finds the next morning) is not made.
    tz = zone_or_none(user.local_tz)
    if tz is None:
        logger.info("Call %s: no retry, the user's time zone %r is unknown", call.pk, user.local_tz)
        return None, max_retries
    due = (now + timedelta(seconds=delay)).astimezone(tz)
    if due.date() != call.local_date:
        logger.info(
            "Call %s: no retry, %s is past its local day, %s",
            call.pk,
            f"{due:%Y-%m-%d %H:%M %Z}",
            call.local_date,
        )
        return None, max_retries
    in_hours = rules.allows_hour(now + timedelta(seconds=delay), tz)
    retry = Call(
        user_id=call.user_id,
        to_number=user.phone,
        agent_id=call.agent_id,
        variant_id=call.variant_id,
        attempt=call.attempt + 1,
        local_date=call.local_date,
        retry_of_id=call.pk,
        status=CallStatus.QUEUED if in_hours else CallStatus.CANCELED,
        scheduled_for=now + timedelta(seconds=delay),
        # The provider of the attempt it retries: if CALL_PROVIDER changed meanwhile, the
        # worker that takes it switches provider and agent together.
        provider=call.provider or settings.CALL_PROVIDER,
    )
    if not in_hours:
        # Recorded, so operators see why nobody was called back, but never dialed.
        retry.error = (
            f"Not placed: its time, {due:%H:%M %Z}, is outside the calling hours ({rules.describe_hours()})."
        )
        retry.completed_at = retry.last_status_at = now
    return retry, max_retries


def _log_retry_scheduled(call: Call, retry: Call, *, max_retries: int, now: datetime) -> None:
    delay = int((retry.scheduled_for - now).total_seconds())
    logger.info(
        "Scheduled retry %s/%s for call %s in %s", call.attempt, max_retries, call.pk, humanize_delay(delay)
    )


def call_schedule_retry(*, call: Call, now: datetime) -> bool:
    """Schedule the next attempt of a failed/unanswered call; True if this call created it.

    Must run inside the transaction that recorded the outcome: the retry joins the batch of
    its instant (its time rounded up to RETRY_GATHER_SECONDS, calls/retries.py) when it
    commits, and the insert is conditional, so a repeated outcome creates nothing.
    """
    if call.manual or call.callback:
        logger.info("Call %s was a %s call: no retry", call.pk, "manual" if call.manual else "call-back")
        return False
    rules = policy_current()
    if call.status not in rules.retry_statuses:
        logger.info("Call %s: no retry, %s is not retried (call policy)", call.pk, call.status)
        return False
    user = User.objects.only(*_RETRY_USER_FIELDS).get(pk=call.user_id)
    retry, max_retries = _retry_for(call, user=user, rules=rules, now=now)
    if retry is None:
        return False
    if retry.status == CallStatus.CANCELED:
        canceled_ids = insert_calls_ignoring_conflicts([retry])
        if canceled_ids:
            logger.info("Call %s: retry canceled, %s", call.pk, retry.error)
            # Its own call.ended; the day it closes is settled by its caller (calls.days).
            days.calls_ended(call_ids=canceled_ids)
        return False
    # Released with the other retries of its instant (calls/retries.py): its row names the
    # bucket's job, which the tick's sweeps ask Redis about.
    bucket = retry_buckets.retry_bucket(retry.scheduled_for)
    retry.job_id = retry_buckets.retry_bucket_job_id(bucket)
    inserted = insert_calls_ignoring_conflicts([retry])
    if not inserted:
        return False
    retry_id = inserted[0]
    queues.on_commit(lambda: _gather_retries({bucket: [retry_id]}))
    _log_retry_scheduled(call, retry, max_retries=max_retries, now=now)
    return True


def calls_schedule_retries(*, calls: list[Call], failed_at: dict[int, datetime], now: datetime) -> int:
    """call_schedule_retry for many failed calls at once (the tick's sweep of stuck calls),
    each retry timed from its own call's ``failed_at`` (when it should have been failed),
    not from when the sweep reached it (``now``): one query for the users, one insert, and,
    once the caller's transaction commits, one Redis round trip per instant: they join the
    webhook's retries' buckets (retry_buckets). A retry whose window has closed by ``now``
    (the tick was down) is not made. Returns how many retries were scheduled."""
    rules = policy_current()
    users = User.objects.only(*_RETRY_USER_FIELDS).in_bulk({call.user_id for call in calls})
    made: list[tuple[Call, Call, int]] = []
    for call in calls:
        retry, max_retries = _retry_for(call, user=users[call.user_id], rules=rules, now=failed_at[call.pk])
        if retry is None:
            continue
        if retry.status == CallStatus.QUEUED and retry.scheduled_for + rules.window <= now:
            local = retry.scheduled_for.astimezone(zone_or_none(users[call.user_id].local_tz))
            logger.info(
                "Call %s: no retry, its time, %s, passed before the call was found stuck",
                call.pk,
                f"{local:%Y-%m-%d %H:%M %Z}",
            )
            continue
        made.append((call, retry, max_retries))
    inserted = set(insert_calls_ignoring_conflicts([retry for _, retry, _ in made]))
    due: dict[int, datetime] = {}
    canceled: list[int] = []
    if inserted:
        # Which retry is which: the inserted rows, by the call they retry.
        ids = dict(Call.objects.filter(pk__in=inserted).values_list("retry_of_id", "pk"))
        for call, retry, max_retries in made:
            retry_id = ids.get(call.pk)
            if retry_id is None:
                continue
            if retry.status == CallStatus.CANCELED:
                logger.info("Call %s: retry canceled, %s", call.pk, retry.error)
                canceled.append(retry_id)
                continue
            due[retry_id] = retry.scheduled_for
            _log_retry_scheduled(call, retry, max_retries=max_retries, now=failed_at[call.pk])
    if canceled:
        # Their own call.ended; the days they close are settled by the caller (calls.days).
        days.calls_ended(call_ids=canceled)
    if due:
        # Released with the other retries of their instant, as a webhook's retry is
        # (call_schedule_retry): each row names its bucket's job, for the stranded sweep.
        buckets: dict[int, list[int]] = {}
        for pk, when in sorted(due.items()):
            buckets.setdefault(retry_buckets.retry_bucket(when), []).append(pk)
        bulk.update_column(
            Call,
            "job_id",
            {pk: retry_buckets.retry_bucket_job_id(bucket) for bucket, pks in buckets.items() for pk in pks},
        )
        queues.on_commit(lambda: _gather_retries(buckets))
    return len(due)


def _gather_retries(buckets: dict[int, list[int]]) -> None:
    now = timezone.now()
    pending = list(buckets.items())
    for index, (bucket, call_ids) in enumerate(pending):
        try:
            retry_buckets.retries_gather(call_ids, bucket=bucket, now=now)
        except RedisError as exc:
            # The retry rows are committed and queued: the first tick after they are due
            # finds them without a live job and enqueues them. Their rows name their
            # bucket's job, which webhooks' retries may have scheduled and which will not
            # carry them: the name goes, or the tick would wait for that job to run first.
            # The buckets after this one are left too (Redis is down: each would cost a
            # timeout more).
            ids = [call_id for _, left in pending[index:] for call_id in left]
            Call.objects.filter(pk__in=ids, status=CallStatus.QUEUED).update(job_id="")
            which = f"retry call {ids[0]}" if len(ids) == 1 else f"{len(ids)} retries"
            logger.error("Redis unreachable (%s): %s will be enqueued by a tick", type(exc).__name__, which)
            return
