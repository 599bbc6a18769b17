"""Whether a person still wants our calls: one opt-out state per person, whatever asked for
it (the admin, the API, the person on a call, an SMS STOP), effective before the next dial.

An opt-out turns calls off and cancels what is queued in the same transaction, and a
database constraint keeps an opted-out person from being switched back on by any path (the
admin, the users API, a CSV import, a raw UPDATE): only user_opt_in, an explicit new opt-in,
undoes it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from calls.slots import zone_or_none
from events.models import EventType
from events.outbox import events_emit

from .models import Consent, ConsentSource, OptOutSource, User
from .services import user_save, users_cancel_pending_calls

__all__ = ["opted_out_message", "user_consent_current", "user_consent_record", "user_opt_in", "user_opt_out"]

logger = logging.getLogger("relevel.users")

OPT_OUT_FIELDS = ("opted_out_at", "opt_out_source", "opt_out_call_id", "call_enabled", "consented_at")


def opted_out_message(user: User) -> str:
    """Why an opted-out person is not called, for the admin, the API and the import."""
    when = user.opted_out_at.isoformat(timespec="seconds") if user.opted_out_at else "earlier"
    source = OptOutSource(user.opt_out_source).label if user.opt_out_source else "unknown"
    return (
        f"this person opted out of calls at {when} (source: {source}); "
        "record a new opt-in before calling them again"
    )


def user_opt_out(
    *, user_id: int, source: str, call_id: int | None = None, now: datetime | None = None
) -> bool:
    """Opt the person out of every call at once: calls off, no next call, every queued call
    canceled saying why, and the opt-out recorded with its time, source and (when heard on a
    call) that call. Returns False if they had already opted out (the first one stands)."""
    source = OptOutSource(source)
    now = now or timezone.now()
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user_id)
        if user.opted_out_at is not None:
            return False
        # Canceled first, saying why: user_save would otherwise cancel them as "User
        # disabled calls.", and says nothing when calls were already off. (Not itself a
        # schedule change: user_save reports calls turned off, once.)
        users_cancel_pending_calls(
            reasons={user.pk: f"The user opted out ({source.label})."}, now=now, schedule_changed=False
        )
        user.opted_out_at = now
        user.opt_out_source = source
        user.opt_out_call_id = call_id
        user.call_enabled = False
        # An opt-out withdraws the consent: only a new one (user_consent_record) calls again.
        user.consented_at = None
        user_save(user=user, update_fields=OPT_OUT_FIELDS)
        zone = zone_or_none(user.local_tz)
        # The product's app hears of it in the same transaction (docs/events.md).
        events_emit(
            type=EventType.USER_OPTED_OUT,
            user_id=user.pk,
            local_date=now.astimezone(zone).date() if zone else None,
            occurred_at=now,
            data={"source": str(source), "call_id": call_id},
        )
    logger.info(
        "User %s opted out of calls (source %s%s)", user_id, source, f", call {call_id}" if call_id else ""
    )
    return True


def user_opt_in(*, user_id: int, enable_calls: bool = True) -> bool:
    """An explicit new opt-in: the opt-out is cleared and, unless told otherwise, calls are
    turned back on. Returns False if the person had not opted out."""
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user_id)
        if user.opted_out_at is None:
            return False
        user.opted_out_at = None
        user.opt_out_source = ""
        user.opt_out_call_id = None
        user.call_enabled = enable_calls
        user_save(user=user, update_fields=OPT_OUT_FIELDS)
    logger.info("User %s opted in to calls again", user_id)
    return True


def user_consent_record(
    *,
    user_id: int,
    source: str,
    text: str,
    given_at: datetime,
    recorded_by: str,
    now: datetime | None = None,
) -> Consent:
    """Record a consent the person gave (a row of its history) and make the newest one
    current. A new consent is the explicit opt-in: it ends an opt-out (user_opt_in), which
    turns calls back on."""
    source = ConsentSource(source)
    now = now or timezone.now()
    if timezone.is_naive(given_at):
        raise ValueError("given_at must be an aware datetime")
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user_id)
        consent = Consent.objects.create(
            user_id=user.pk, given_at=given_at, source=source, text=text, recorded_by=recorded_by[:150]
        )
        if user.opted_out_at is not None:
            user_opt_in(user_id=user.pk)
        # The newest given_at is current: a consent backfilled from an older record does not
        # replace a newer one, but after an opt-out any new consent is current.
        current = user.consented_at if user.opted_out_at is None else None
        if current is None or given_at >= current:
            User.objects.filter(pk=user.pk).update(consented_at=given_at)
    logger.info("User %s consent %s recorded (source %s) by %s", user_id, consent.pk, source, recorded_by)
    return consent


def user_consent_current(*, user: User) -> Consent | None:
    """The person's current consent: the newest given, none after an opt-out."""
    if user.consented_at is None:
        return None
    return Consent.objects.filter(user_id=user.pk, given_at=user.consented_at).order_by("-pk").first()
