"""Placing calls: take them (queued -> dialing, under a row lock), dial (one HTTP request,
no database), record the provider's answer.

A batch takes all its calls in one transaction, dials them on a thread pool, and records
each answer as it arrives, all on the job's own database connection: a worker process
holds one connection, however many calls it has in flight, and the threads do nothing but
wait on the provider.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError, transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone
from redis.exceptions import RedisError
from rq.timeouts import JobTimeoutException

from users.calendar import user_day_off_reason, users_skipped_on
from users.models import Consent
from users.suppression import numbers_suppressed

from . import bulk, days, queues, selectors
from .context import call_variables_for
from .logsafe import mask_phone, redact_phones
from .models import STATUS_RANK, Call, CallStatus
from .outcomes import REUSED_ID_KEY, call_finish, call_schedule_retry
from .policy import Policy, policy_current
from .providers import default_agent_id, provider_named
from .providers.base import (
    PlaceCallRequest,
    PlacedCall,
    ProviderError,
    ProviderMaybePlacedError,
    ProviderPermanentError,
    agent_variables,
)
from .providers.http import threads_per_process
from .slots import zone_or_none

logger = logging.getLogger("relevel.calls")
User = get_user_model()

# A scheduled call that finds its user on another call (a manual one) is looked at again
# this often, and for the last time this long before its window closes.
USER_BUSY_RECHECK_SECONDS = 30
USER_BUSY_MARGIN_SECONDS = 2


def _reason_not_to_dial(
    call: Call,
    *,
    now: datetime,
    rules: Policy,
    skips: Iterable[date] | None = None,
    suppressed: frozenset[str] | set[str] = frozenset(),
    answered: set[tuple[int, date]] | None = None,
    live_calls: dict[int, set[int]] | None = None,
) -> tuple[str, str]:
    """Why a queued call must not be dialed at ``now``, as (the status it takes, the
    reason), or ("", "") to dial it. QUEUED means "not yet": it stays queued.

    The window is checked here, where the call is taken, because only here is it known
    how late the job really ran (workers down while Redis kept their jobs, a scheduler that
    released a retry late): a first attempt is dialed only inside [slot, slot + window), a
    retry only inside its own window and on the local day it belongs to.

    ``skips``: the person's skipped dates among this call's; ``answered``: the (user id,
    local date) pairs answered among the batch's retries'; ``live_calls``: the live calls'
    ids of the batch's call-backs' users (each read for the whole batch, else here).
    """
    user = call.user
    if user.opted_out_at is not None:
        return CallStatus.CANCELED, "User opted out of calls."
    if not user.call_enabled:
        return CallStatus.CANCELED, "User disabled calls before this call was placed."
    if not user.phone:
        return CallStatus.CANCELED, "User has no phone number."
    if user.phone in suppressed:
        return CallStatus.CANCELED, "Number suppressed: it is on the do-not-call list."
    if rules.require_consent and user.consented_at is None:
        return CallStatus.CANCELED, "No consent recorded, and the call policy requires one."
    if not (call.manual or call.callback):
        # A day that became off after the call was claimed (a skip, a new pause or policy
        # skip date): users/calendar.py. A manual call is the operator's own request, a
        # call-back the person's.
        off = user_day_off_reason(user=user, local_date=call.local_date, rules=rules, skips=skips)
        if off:
            return CallStatus.CANCELED, f"Day off: {off}"
    if call.callback:
        # Asked for on an answered call; never while another call of the user is live.
        if live_calls is None:
            live_calls = selectors.live_calls_of_users(user_ids=[user.pk])
        if live_calls.get(user.pk, set()) - {call.pk}:
            return CallStatus.CANCELED, "Call-back not placed: another call to the user was live."
    elif call.attempt > 1:
        if answered is None:
            answered = selectors.users_answered_on(pairs=[(user.pk, call.local_date)])
        if (user.pk, call.local_date) in answered:
            return CallStatus.CANCELED, "User already answered a call today."
    tz = zone_or_none(user.local_tz)
    if tz is None:
        return CallStatus.CANCELED, f"User's time zone {user.local_tz!r} is not one this host knows."
    if rules.paused:
        # Held, not dialed: the tick's sweep enqueues it again on resume if its window is
        # still open, and records it missed ("paused") once it is not.
        return CallStatus.QUEUED, "Calls are paused."
    if now < call.scheduled_for:
        # Only a clock running ahead gets here: the tick sends it again once it is due.
        return CallStatus.QUEUED, f"Not due until {call.scheduled_for.astimezone(tz):%Y-%m-%d %H:%M:%S %Z}."
    opens = call.scheduled_for.astimezone(tz)
    closes = (call.scheduled_for + rules.window).astimezone(tz)
    taken = now.astimezone(tz)
    if now >= closes:
        return CallStatus.MISSED, (
            f"Its window, {opens:%Y-%m-%d %H:%M} to {closes:%H:%M %Z}, had closed when a worker "
            f"took it at {taken:%Y-%m-%d %H:%M %Z}."
        )
    if call.attempt > 1 and taken.date() != call.local_date:
        return CallStatus.MISSED, (
            f"Its local day, {call.local_date}, was over when a worker took it at {taken:%Y-%m-%d %H:%M %Z}."
        )
    if not rules.allows_hour(now, tz):
        said = f"{taken:%H:%M %Z} is outside the calling hours ({rules.describe_hours()})."
        # A retry outside the hours is dropped; a first attempt's slot is recorded missed.
        return (
            (CallStatus.CANCELED, f"Retry not placed: {said}")
            if call.attempt > 1
            else (CallStatus.MISSED, said)
        )
    return "", ""


# The dial record's columns, written with the move to dialing (docs/operating/consent.md).
DIAL_RECORD = ("dial_local_time", "dial_calling_hours", "dial_consent_id", "dial_suppression_checked")


def _current_consent_id() -> Subquery:
    # The person's current consent (users.consent.user_consent_current), read with the
    # locked calls: one index probe per call on consent_user_given_idx.
    return Subquery(
        Consent.objects.filter(user_id=OuterRef("user_id"), given_at=OuterRef("user__consented_at"))
        .order_by("-pk")
        .values("pk")[:1]
    )


def _write_dial_record(call: Call, *, now: datetime, rules: Policy) -> None:
    """What allowed this dial, as it was at this instant: the person's wall clock (zone and
    offset), the calling hours in force, their consent and the suppression check (passed,
    or the call would have been canceled)."""
    tz = zone_or_none(call.user.local_tz)
    local = now.astimezone(tz) if tz is not None else now
    call.dial_local_time = f"{local.isoformat(timespec='seconds')} {call.user.local_tz}"[:64]
    call.dial_calling_hours = rules.describe_hours()[:64]
    call.dial_consent_id = getattr(call, "current_consent_id", None)
    call.dial_suppression_checked = True


def provider_for(call: Call) -> str:
    """The provider that will place this call: a variant's call keeps its variant's; any
    other goes to CALL_PROVIDER, which may have changed since the call was queued (the new
    provider places it, with its own agent)."""
    if call.variant_id is None and (call.provider != settings.CALL_PROVIDER or not call.agent_id):
        return settings.CALL_PROVIDER
    return call.provider


def _wait_for_user(call: Call, live: tuple[int, str], *, now: datetime, rules: Policy):
    """What becomes of a dialable call whose user is on another call (``live``: its id and
    status): (status, reason, when to look again). A manual call is not placed (call now
    is refused while a call is live; this one lost a race with the scheduled call). A
    scheduled one waits, looked at again shortly, while its window (and, for a retry, its
    local day) lasts; missed, saying why, once it is over."""
    live_id, live_status = live
    if call.manual:
        reason = f"Not placed: the user was on call {live_id} when a worker took it."
        return CallStatus.CANCELED, reason, None
    closes = call.scheduled_for + rules.window
    tz = zone_or_none(call.user.local_tz)
    if call.attempt > 1 and tz is not None:
        day_ends = datetime.combine(call.local_date + timedelta(days=1), datetime.min.time(), tzinfo=tz)
        closes = min(closes, day_ends)
    again = min(
        now + timedelta(seconds=USER_BUSY_RECHECK_SECONDS),
        closes - timedelta(seconds=USER_BUSY_MARGIN_SECONDS),
    )
    if again <= now:
        return (
            CallStatus.MISSED,
            f"Its window closed while the user was on another call (call {live_id}, {live_status}).",
            None,
        )
    return CallStatus.QUEUED, f"Waiting for the user's call {live_id} to end.", again


class TakenCalls(NamedTuple):
    """What take_calls_for_dialing did: the requests to send, a count of what happened to
    the other calls, and the calls left queued because their user was on another call
    ({call id: when a job of its own looks at it again})."""

    requests: list[PlaceCallRequest]
    others: Counter
    waiting_for_user: dict[int, datetime]


def take_calls_for_dialing(call_ids: list[int], *, provider: str | None = None) -> TakenCalls:
    """Move the dialable calls among ``call_ids`` from queued to dialing, in one transaction;
    cancel the ones whose user can no longer be called, and mark missed the ones whose
    window (or local day) is over.

    A user never has two calls live at once (models.LIVE_STATUSES): a call whose user is on
    another is not dialed (_wait_for_user). Taking is serialised per user on the user's row,
    so two workers taking a user's scheduled call and a manual call at the same moment each
    see the other's call dialing, never both only queued.

    ``provider``: the calls were taken from that provider's waiting set, holding its lines:
    they are placed through it, whatever CALL_PROVIDER says now (calls.dispatch)."""
    now = timezone.now()
    rules = policy_current()
    requests: list[PlaceCallRequest] = []
    dialing: list[Call] = []
    waiting: list[Call] = []
    waiting_for_user: dict[int, datetime] = {}
    others: Counter = Counter()
    with transaction.atomic():
        user_ids = sorted(
            set(
                Call.objects.filter(pk__in=call_ids, status=CallStatus.QUEUED).values_list(
                    "user_id", flat=True
                )
            )
        )
        # Users first, then calls, in id order: the order call now and profile changes lock
        # in (no deadlock). NO KEY UPDATE: a webhook's retry may still insert a call of the
        # user meanwhile; the tick's claim skips a locked user (it is not due: its day's
        # call exists).
        list(
            User.objects.select_for_update(no_key=True)
            .filter(pk__in=user_ids)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        live = selectors.calls_live_of_users(user_ids=user_ids, now=now)
        calls = {
            call.pk: call
            for call in Call.objects.select_for_update(of=("self",))
            .select_related("user")
            .annotate(current_consent_id=_current_consent_id())
            .filter(pk__in=call_ids)
            .order_by("pk")
        }
        skipped = users_skipped_on([(call.user_id, call.local_date) for call in calls.values()])
        # The do-not-call list, for the numbers these calls would dial now: one query.
        suppressed = numbers_suppressed(numbers=[call.user.phone for call in calls.values()])
        # Whether a retry's day was answered, whether a call-back's person is on a call: one
        # query each for the batch (none for a batch of first attempts).
        queued = [call for call in calls.values() if call.status == CallStatus.QUEUED]
        answered = selectors.users_answered_on(
            pairs=[
                (call.user_id, call.local_date) for call in queued if call.attempt > 1 and not call.callback
            ]
        )
        live_calls = selectors.live_calls_of_users(
            user_ids=[call.user_id for call in queued if call.callback]
        )
        for call_id in call_ids:
            call = calls.get(call_id)
            if call is None:
                # A first attempt claimed ahead and released by a schedule change since.
                logger.info("Call %s does not exist (released, or deleted); nothing to place", call_id)
                others["missing"] += 1
                continue
            if call.status != CallStatus.QUEUED:
                # A repeated job (re-enqueued, RQ retry after a kill): someone already took it.
                logger.info("Call %s is %s, not queued; not placing it again", call.pk, call.status)
                others["skipped"] += 1
                continue
            user = call.user
            name = user.name or user.get_username()
            if call.attempt > 1:
                logger.info(
                    "Processing user call for %s (retry %s/%s)",
                    name,
                    call.attempt - 1,
                    user.max_retries if user.max_retries is not None else rules.max_retries,
                )
            else:
                logger.info("Processing user call for %s", name)
            status, reason = _reason_not_to_dial(
                call,
                now=now,
                rules=rules,
                skips=skipped.get(call.user_id, ()),
                suppressed=suppressed,
                answered=answered,
                live_calls=live_calls,
            )
            if not status and user.pk in live:
                status, reason, again = _wait_for_user(call, live[user.pk], now=now, rules=rules)
                if again is not None:
                    call.error = reason
                    call.job_id = queues.user_busy_job_id(call.pk, at=again)
                    waiting.append(call)
                    waiting_for_user[call.pk] = again
                    logger.info("Call %s left queued: %s", call.pk, reason)
                    others["waiting_for_user"] += 1
                    continue
            if status == CallStatus.QUEUED:
                logger.warning("Call %s left queued, not dialed: %s", call.pk, reason)
                others["paused" if rules.paused else "early"] += 1
                continue
            if status:
                call_finish(call, status=status, error=reason, now=now)
                days.calls_ended(call_ids=(), calls=[days.call_row(call)])
                logger.info("Call %s %s: %s", call.pk, status, reason)
                others[str(status)] += 1
                continue
            if provider is not None:
                if call.provider != provider:  # (admitted before its provider was fixed)
                    call.provider, call.agent_id = provider, default_agent_id(provider)
            elif call.variant_id is None and (call.provider != settings.CALL_PROVIDER or not call.agent_id):
                call.provider = provider_for(call)
                call.agent_id = default_agent_id(call.provider)
            call.status = CallStatus.DIALING
            call.dialed_at = now  # taken; the real send time is recorded with the answer
            call.to_number = user.phone
            _write_dial_record(call, now=now, rules=rules)
            dialing.append(call)
            live[user.pk] = (call.pk, CallStatus.DIALING)  # a second call of theirs in this batch waits
            requests.append(
                PlaceCallRequest(
                    call_id=call.pk,
                    user_id=user.pk,
                    to_number=call.to_number,
                    agent_id=call.agent_id,
                    name=name,
                    provider=call.provider,
                    disclosure=rules.disclosure_text,
                )
            )
        # One statement for the whole batch: a row per call would cost a round trip each, and
        # bulk_update's CASE WHEN per row and column was most of a worker's CPU (bulk.py).
        bulk.update_columns(
            dialing, ["status", "dialed_at", "to_number", "provider", "agent_id", *DIAL_RECORD]
        )
        if waiting:
            bulk.update_columns(waiting, ["error", "job_id"])
            jobs = {call.pk: (call.job_id, waiting_for_user[call.pk]) for call in waiting}
            queues.on_commit(lambda: _enqueue_after_user_call(jobs))
        # The agent's variables (context and memory), for the whole batch in one query.
        variables = call_variables_for(calls=dialing)
    requests = [
        dataclasses.replace(
            request,
            # The disclosure line travels with the context and memory, as one more variable.
            variables={**variables.get(request.call_id, {}), **agent_variables(request)},
            voicemail_message=rules.voicemail_message,
        )
        for request in requests
    ]
    return TakenCalls(requests, others, waiting_for_user)


def _enqueue_after_user_call(jobs: dict[int, tuple[str, datetime]]) -> None:
    """Each call waiting for its user's other call gets a job of its own to look again (its
    row names it, so the tick's stranded sweep sees it live; if Redis is down, that sweep
    enqueues the call again)."""
    try:
        for call_id, (job_id, at) in jobs.items():
            queues.enqueue_place_call(call_id, at=at, job_id=job_id)
    except RedisError as exc:
        logger.error(
            "Redis unreachable (%s): calls waiting for their user will be enqueued by a tick",
            type(exc).__name__,
        )


@dataclass(frozen=True)
class DialResult:
    result: PlacedCall | ProviderError
    # When the request really went out: a call may wait in the pool long after it was taken.
    sent_at: datetime


def dial(request: PlaceCallRequest) -> DialResult:
    """The provider's answer, or the error it gave: no database work (runs on a pool thread)."""
    sent_at = timezone.now()
    try:
        result: PlacedCall | ProviderError = provider_named(request.provider).place_call(request)
    except ProviderError as exc:
        result = exc
    return DialResult(result=result, sent_at=sent_at)


def record_dial_result(request: PlaceCallRequest, dialed: DialResult, *, is_last_try: bool) -> str:
    """Store what the provider said about one call; returns what happened, in a word."""
    result = dialed.result
    masked = mask_phone(request.to_number)
    # A provider's message may quote the number ("91… is not reachable"): not in our logs.
    # ProviderError masks its own text; this also covers any other text we are handed.
    said = redact_phones(str(result))
    if isinstance(result, ProviderPermanentError):
        # A wrong number or a bad API key is no better in 30 minutes: no retry of any kind.
        _record_dial_failure(call_id=request.call_id, error=said, schedule_retry=False)
        logger.error("Call %s to %s failed permanently: %s", request.call_id, masked, said)
        return "failed"
    if isinstance(result, ProviderMaybePlacedError):
        # Sent, answer lost: the provider may be ringing the user right now. Never sent
        # again from here; the webhook (found by our call id) or the unconfirmed sweep
        # settles it.
        Call.objects.filter(pk=request.call_id, status=CallStatus.DIALING).update(
            status=CallStatus.UNCONFIRMED,
            error=said,
            dialed_at=dialed.sent_at,
            last_status_at=timezone.now(),
        )
        logger.warning(
            "Call %s to %s unconfirmed, waiting for the provider's webhook: %s", request.call_id, masked, said
        )
        return "unconfirmed"
    if isinstance(result, ProviderError):
        if not is_last_try:
            Call.objects.filter(pk=request.call_id, status=CallStatus.DIALING).update(
                status=CallStatus.QUEUED, error=said
            )
            logger.warning("Call %s to %s: not sent (%s), will try again", request.call_id, masked, said)
            return "transient"
        _record_dial_failure(call_id=request.call_id, error=said, schedule_retry=True)
        logger.error("Call %s to %s failed, provider unreachable: %s", request.call_id, masked, said)
        return "failed"
    with transaction.atomic():
        call = Call.objects.select_for_update().get(pk=request.call_id)
        call.provider_payloads = [*call.provider_payloads, {"placed": result.raw}]
        call.dialed_at = dialed.sent_at
        fields = ["provider_payloads", "dialed_at"]
        reused_by = _call_with_provider_call_id(call, result.provider_call_id)
        if reused_by is None:
            call.provider_call_id = result.provider_call_id
            fields.append("provider_call_id")
        # A fast webhook may already have moved the call further on (and said why it
        # failed): never move it back, nor wipe what it recorded.
        if STATUS_RANK[call.status] < STATUS_RANK[CallStatus.RINGING]:
            call.status = CallStatus.RINGING
            call.last_status_at = timezone.now()
            call.error = ""  # an earlier transient error, now overcome
            fields += ["status", "last_status_at", "error"]
        if reused_by is not None:
            # Placed all the same (ringing, so never dialed again), without the id; its
            # webhook finds it by our own id.
            call.error = (
                f"The provider reused call id {result.provider_call_id[:64]} (already call {reused_by})."
            )
            call.provider_payloads = [*call.provider_payloads, {REUSED_ID_KEY: result.provider_call_id}]
            fields.append("error")
            logger.error("Call %s: %s", call.pk, call.error)
        call.save(update_fields=list(dict.fromkeys(fields)))
    logger.info(
        "Call %s initiated to %s (provider call %s)", request.call_id, masked, result.provider_call_id
    )
    return "placed"


def record_dial_results(dialed: list[tuple[PlaceCallRequest, DialResult]], *, is_last_try: bool) -> list[str]:
    """Record a group of answers, as record_dial_result does for each; the calls the
    provider accepted (nearly all) in one transaction of three statements, whatever their
    number. Returns what happened to each, in order."""
    placed = [(request, answer) for request, answer in dialed if isinstance(answer.result, PlacedCall)]
    outcomes: dict[int, str] = {}
    if len(placed) > 1:
        try:
            _record_placed(placed)
            outcomes.update((request.call_id, "placed") for request, _ in placed)
        except JobTimeoutException:
            raise
        except Exception:  # noqa: BLE001 - recorded one by one below, as a lone call is
            logger.exception(
                "Recording %s placed calls at once failed; recording them one by one", len(placed)
            )
    for request, answer in dialed:
        if request.call_id in outcomes:
            continue
        try:
            outcomes[request.call_id] = record_dial_result(request, answer, is_last_try=is_last_try)
        except JobTimeoutException:
            raise
        except Exception:  # noqa: BLE001 - one bad call must not sink the batch
            logger.exception("Call %s: unexpected error while recording its placement", request.call_id)
            outcomes[request.call_id] = salvage_placed(request, answer)
    return [outcomes[request.call_id] for request, _ in dialed]


def _record_placed(placed: list[tuple[PlaceCallRequest, DialResult]]) -> None:
    """record_dial_result's "placed" branch for many calls: lock them all, look up reused
    provider ids in one query, write them all in one statement."""
    answers = {request.call_id: answer for request, answer in placed}
    now = timezone.now()
    with transaction.atomic():
        calls = list(
            Call.objects.select_for_update()
            .filter(pk__in=list(answers))
            .only(
                "pk", "status", "provider", "provider_payloads", "error", "provider_call_id", "last_status_at"
            )
            .order_by("pk")
        )
        wanted = {(call.provider, answers[call.pk].result.provider_call_id) for call in calls}
        holders: dict[tuple[str, str], int] = {
            (provider, provider_call_id): pk
            for pk, provider, provider_call_id in Call.objects.filter(
                provider__in={provider for provider, _ in wanted},
                provider_call_id__in={provider_call_id for _, provider_call_id in wanted},
            )
            .exclude(pk__in=list(answers))
            .values_list("pk", "provider", "provider_call_id")
        }
        for call in calls:
            result = answers[call.pk].result
            call.provider_payloads = [*call.provider_payloads, {"placed": result.raw}]
            call.dialed_at = answers[call.pk].sent_at
            reused_by = holders.setdefault((call.provider, result.provider_call_id), call.pk)
            if reused_by == call.pk:
                call.provider_call_id = result.provider_call_id
            if STATUS_RANK[call.status] < STATUS_RANK[CallStatus.RINGING]:
                call.status = CallStatus.RINGING
                call.last_status_at = now
                call.error = ""
            if reused_by != call.pk:
                call.error = (
                    f"The provider reused call id {result.provider_call_id[:64]} (already call {reused_by})."
                )
                call.provider_payloads = [*call.provider_payloads, {REUSED_ID_KEY: result.provider_call_id}]
                logger.error("Call %s: %s", call.pk, call.error)
        bulk.update_columns(
            calls, ["provider_payloads", "dialed_at", "provider_call_id", "status", "last_status_at", "error"]
        )
    for request, answer in placed:
        logger.info(
            "Call %s initiated to %s (provider call %s)",
            request.call_id,
            mask_phone(request.to_number),
            answer.result.provider_call_id,
        )


def _call_with_provider_call_id(call: Call, provider_call_id: str) -> int | None:
    """Another call of the same provider that already has this provider id (a provider
    that hands out an id twice), or None."""
    return (
        Call.objects.filter(provider=call.provider, provider_call_id=provider_call_id)
        .exclude(pk=call.pk)
        .values_list("pk", flat=True)
        .first()
    )


def _record_dial_failure(*, call_id: int, error: str, schedule_retry: bool) -> None:
    now = timezone.now()
    with transaction.atomic():
        call = Call.objects.select_for_update().filter(pk=call_id, status=CallStatus.DIALING).first()
        if call is None:
            return
        call_finish(call, status=CallStatus.FAILED, error=error, now=now)
        if schedule_retry:
            call_schedule_retry(call=call, now=now)
        days.calls_ended(call_ids=(), calls=[days.call_row(call)])


def salvage_placed(request: PlaceCallRequest, dialed: DialResult) -> str:
    """Recording an answer failed (a database blip): keep at least the provider's id, so a
    call the provider accepted is not later taken for lost and dialed again."""
    result = dialed.result
    if not isinstance(result, PlacedCall):
        # Still dialing: once its job is over, the tick's sweep takes it for unconfirmed
        # (sent or not, nobody knows) and the webhook or the unconfirmed timeout settles it.
        return "error"
    try:
        Call.objects.filter(pk=request.call_id, status=CallStatus.DIALING).update(
            provider_call_id=result.provider_call_id, status=CallStatus.RINGING, last_status_at=timezone.now()
        )
    except DatabaseError:
        logger.error(
            "Call %s was accepted by the provider (call %s) but could not be recorded",
            request.call_id,
            result.provider_call_id,
        )
    return "error"


def call_place(*, call_id: int, is_last_try: bool = True) -> str:
    """Place one queued call through the provider; returns what happened, in a word.

    Raises ProviderNotSentError when the request did not reach the provider and another try
    is left (the caller, an RQ job, is then retried with backoff). An answer that was lost
    after sending is never retried here: the call is left unconfirmed.
    """
    requests, others, _ = take_calls_for_dialing([call_id])
    if not requests:
        return next(iter(others))
    dialed = dial(requests[0])
    outcome = record_dial_result(requests[0], dialed, is_last_try=is_last_try)
    if outcome == "transient":
        raise dialed.result
    return outcome


# How long the first answer of a round waits for the others before they are recorded.
GATHER_SECONDS = 0.03

_pool: ThreadPoolExecutor | None = None
_pool_pid: int | None = None
_pool_lock = threading.Lock()


def placement_pool() -> ThreadPoolExecutor:
    # One pool per process, kept across jobs so that the provider's keep-alive connections
    # are reused. Rebuilt after a fork.
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(max_workers=threads_per_process(), thread_name_prefix="place-call")
            _pool_pid = os.getpid()
        return _pool


def reset_placement_pool() -> None:
    """Drop this process's pool so the next batch sizes a new one from settings (tests)."""
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=True)
        _pool = None


def calls_place_batch(*, call_ids: list[int]) -> dict[str, int]:
    """Place a tick's batch of calls concurrently, each exactly as call_place does alone.

    Each call gets its first try here. One that meets a transient provider error moves to a
    job of its own that RQ retries with the same backoff a lone call gets (2 s, then 4 s), so
    per-call states, errors and retries are the engine's, whatever the batch size.
    """
    intervals = list(settings.CALL_PLACE_RETRY_INTERVALS)
    requests, counts, _ = take_calls_for_dialing(call_ids)
    futures = {placement_pool().submit(dial, request): request for request in requests}
    transient: list[int] = []
    try:
        # Answers are recorded as they arrive, on this thread's connection, while the pool
        # is still waiting on the others: those that arrived together, together. RQ's
        # timeout (or shutdown) arrives as an exception in this thread and ends the job.
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            if pending:
                # A batch's requests went out together and their answers come back within
                # milliseconds of each other: a moment's wait records them in one group.
                more, pending = wait(pending, timeout=GATHER_SECONDS)
                done |= more
            arrived = [(futures[future], future.result()) for future in done]
            for (request, _), outcome in zip(
                arrived, record_dial_results(arrived, is_last_try=not intervals), strict=True
            ):
                counts[outcome] += 1
                if outcome == "transient":
                    transient.append(request.call_id)
    finally:
        # The job was cut short (its timeout, a shutdown): calls not yet sent go back to the
        # queue, where the next tick re-enqueues them; only calls really sent stay dialing.
        unsent = [request.call_id for future, request in futures.items() if future.cancel()]
        if unsent:
            Call.objects.filter(pk__in=unsent, status=CallStatus.DIALING).update(status=CallStatus.QUEUED)
            logger.warning("Batch cut short: %s calls not sent, back in the queue", len(unsent))
    now = timezone.now()
    for call_id in transient:
        first_delay, later = intervals[0], intervals[1:]
        at = now + timedelta(seconds=first_delay) if first_delay else None
        queues.enqueue_place_call(call_id, at=at, retry_intervals=later)
    logger.info("Placed a batch of %s calls: %s", len(call_ids), dict(counts))
    return dict(counts)
