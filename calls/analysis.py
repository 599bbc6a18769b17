"""The analysis of an ended call, run by a job after the webhook has committed (never in it):
the normalised result (calls.results), then what relevel does about what it heard, an
opt-out or a call-back (docs/conversation.md)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from . import queues
from .intents import callback_heard, callback_time, opt_out_heard
from .models import TERMINAL_STATUSES, Call, CallResult, CallStatus
from .policy import policy_current
from .providers.base import as_iso_datetime
from .results import result_normalise, result_store
from .selectors import ANY_KIND
from .slots import zone_or_none

logger = logging.getLogger("relevel.calls")
User = get_user_model()

_TRUE_WORDS = {"true", "yes", "y", "1"}


def _flag(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in _TRUE_WORDS)


def call_analyse(*, call_id: int, call: Call | None = None) -> str:
    """Compute and store a final call's result, then act on an opt-out or a call-back heard
    in it. Idempotent: run again (a later payload), it refreshes the result and acts at most
    once (the opt-out and the call-back are recorded on the result, and a call-back is one
    row a day by constraint). ``call``: the call with its user, if the caller read it."""
    if call is None:
        call = Call.objects.select_related("user").filter(pk=call_id).first()
    if call is None:
        return f"call {call_id} does not exist"
    if call.status not in TERMINAL_STATUSES:
        return f"call {call_id} is {call.status}, not final: not analysed"
    normalised = result_normalise(provider=call.provider, payloads=call.provider_payloads, status=call.status)
    fields = normalised.fields
    with transaction.atomic():
        result = result_store(call=call, result=normalised)
        result = CallResult.objects.select_for_update().get(pk=result.pk)
        actions = []
        if fields.answered_by == "voicemail" and call.status == CallStatus.COMPLETED:
            if _completed_to_voicemail(call):
                actions.append("voicemail")
        if fields.cost_amount is not None and policy_current().monthly_budget is not None:
            from .budget import budget_check

            if budget_check():
                actions.append("budget reached")
        if fields.answered_by != "voicemail":
            user_turns = [turn["text"] for turn in fields.turns if turn.get("role") == "user"]
            wants_out = _flag(fields.data.get(settings.CALL_OPT_OUT_FIELD)) or opt_out_heard(
                user_turns=user_turns, extra_phrases=settings.CALL_OPT_OUT_PHRASES
            )
            if wants_out and not result.opt_out_heard:
                result.opt_out_heard = True
                result.save(update_fields=["opt_out_heard", "updated_at"])
                user_opt_out_from_call(user_id=call.user_id, call_id=call.pk)
                actions.append("opt-out")
            elif not wants_out and not result.callback_note:
                note = _callback_consider(call=call, result=result, data=fields.data, user_turns=user_turns)
                if note:
                    actions.append("call-back")
    logger.info(
        "Call %s analysed: %s, answered by %s, sentiment %s%s",
        call.pk,
        "summary" if fields.summary else "no summary",
        fields.answered_by,
        fields.sentiment or "none",
        f"; {', '.join(actions)}" if actions else "",
    )
    return f"call {call_id} analysed{': ' + ', '.join(actions) if actions else ''}"


NOTED_PER_RUN = 20_000


def noted_calls_dispatch() -> str:
    """The calls the webhooks noted, handed to workers in batch jobs (at most NOTED_PER_RUN a
    run; the next run takes the rest)."""
    call_ids = queues.analysis_take_noted(limit=NOTED_PER_RUN)
    jobs = queues.enqueue_analysis(call_ids)
    return f"{len(call_ids)} calls to analyse in {jobs} jobs"


def calls_analyse(*, call_ids: list[int]) -> dict[str, int]:
    """call_analyse for each; one call's failure is logged and does not stop the others.
    The calls and their users are read in one query (one each was two-fifths of the job)."""
    done = failed = 0
    calls = Call.objects.select_related("user").in_bulk(call_ids)
    analysed_users: set[int] = set()
    for call_id in call_ids:
        call = calls.get(call_id)
        if call is not None and call.user_id in analysed_users:
            # An earlier call of the batch may have changed the person (an opt-out): read
            # them again rather than act on what the batch's read saw.
            call = None
        elif call is not None:
            analysed_users.add(call.user_id)
        try:
            call_analyse(call_id=call_id, call=call)
            done += 1
        except Exception:
            logger.exception("Call %s: analysis failed", call_id)
            failed += 1
    return {"analysed": done, "failed": failed}


def _completed_to_voicemail(call: Call) -> bool:
    """A call recorded completed that the provider's analysis says reached voicemail
    (Retell's call_analysis.in_voicemail, which comes after call_ended): it becomes a
    voicemail, not reached, and is retried as the policy says. Conditional, so two runs
    move it once; inside the caller's transaction, as the retry must be."""
    from .outcomes import call_schedule_retry

    now = timezone.now()
    moved = Call.objects.filter(pk=call.pk, status=CallStatus.COMPLETED).update(
        status=CallStatus.VOICEMAIL, last_status_at=now
    )
    if not moved:
        return False
    call.status = CallStatus.VOICEMAIL
    logger.info("Call %s: the provider's analysis says voicemail; recorded as voicemail", call.pk)
    if CallStatus.VOICEMAIL in policy_current().retry_statuses:
        call_schedule_retry(call=call, now=now)
    return True


def user_opt_out_from_call(*, user_id: int, call_id: int) -> None:
    """Opt the user out because they asked on call ``call_id``: users.consent's service,
    the one place an opt-out is recorded, when this deployment has it."""
    try:
        from users.consent import user_opt_out  # type: ignore[import-not-found]
    except ImportError:
        _opt_out_without_consent_app(user_id=user_id, call_id=call_id)
    else:
        user_opt_out(user_id=user_id, source="call", call_id=call_id)
    logger.info("User %s opted out on call %s", user_id, call_id)


def _opt_out_without_consent_app(*, user_id: int, call_id: int) -> None:
    # Until users.consent lands: calls off, and every call still waiting canceled with why.
    now = timezone.now()
    User.objects.filter(pk=user_id).update(call_enabled=False, next_call_at=None)
    Call.objects.filter(ANY_KIND, user_id=user_id, status=CallStatus.QUEUED).update(
        status=CallStatus.CANCELED,
        error=f"The user asked not to be called again on call {call_id}.",
        last_status_at=now,
        completed_at=now,
    )


def _callback_consider(*, call: Call, result: CallResult, data: dict, user_turns: list[str]) -> str:
    """Record (and schedule, when it may be) the call-back the user asked for; "" if none."""
    user = call.user
    tz = zone_or_none(user.local_tz)
    if tz is None:
        return ""
    now = timezone.now()
    at: datetime | None = None
    structured = data.get(settings.CALL_CALLBACK_FIELD)
    if isinstance(structured, str) and structured.strip():
        at = as_iso_datetime(structured.strip())
        if at is None:
            words = structured.strip()
            at = callback_time(words=words, now_local=now.astimezone(tz))
        asked = True
    else:
        asked, words = callback_heard(user_turns=user_turns)
        if asked:
            at = callback_time(words=words, now_local=now.astimezone(tz))
    if not asked:
        return ""
    note = (
        callback_schedule(call=call, at=at, now=now)
        if at is not None
        else ("Not scheduled: no time relevel understands was given.")
    )
    result.callback_requested_for = at
    result.callback_note = note
    result.save(update_fields=["callback_requested_for", "callback_note", "updated_at"])
    logger.info("Call %s: call-back asked for; %s", call.pk, note)
    return note


def callback_schedule(*, call: Call, at: datetime, now: datetime) -> str:
    """One extra attempt on the call's local day at ``at``, if it is still to come, inside
    the calling hours, and the user has no call-back that day yet; the reason otherwise.
    Runs inside the caller's transaction: the job is enqueued when it commits."""
    user = call.user
    tz = zone_or_none(user.local_tz)
    local = at.astimezone(tz)
    rules = policy_current()
    if call.manual:
        return "Not scheduled: the call was a manual call."
    if not user.is_callable:
        return "Not scheduled: the user can no longer be called."
    if at <= now:
        return f"Not scheduled: {local:%H:%M %Z} has passed."
    if local.date() != call.local_date:
        return f"Not scheduled: {local:%Y-%m-%d %H:%M %Z} is not on the call's day, {call.local_date}."
    if not rules.allows_hour(at, tz):
        return f"Not scheduled: {local:%H:%M %Z} is outside the calling hours ({rules.describe_hours()})."
    day = Call.objects.filter(user_id=call.user_id, local_date=call.local_date, manual=False)
    if day.filter(callback=True).exists():
        return "Not scheduled: the user already has a call-back today (one a day at most)."
    attempt = (day.aggregate(last=Max("attempt"))["last"] or 0) + 1
    try:
        with transaction.atomic():
            callback = Call.objects.create(
                user_id=call.user_id,
                to_number=user.phone,
                agent_id=call.agent_id,
                variant_id=call.variant_id,
                provider=call.provider or settings.CALL_PROVIDER,
                attempt=attempt,
                local_date=call.local_date,
                callback=True,
                status=CallStatus.QUEUED,
                scheduled_for=at,
            )
    except IntegrityError:
        return "Not scheduled: another call of that day was created at the same moment."
    callback_id = callback.pk
    queues.on_commit(lambda: queues.enqueue_place_call(callback_id, at=at))
    return f"Call-back {callback_id} scheduled for {local:%H:%M %Z}."
