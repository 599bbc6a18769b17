"""Forgetting a person (GDPR erasure): ``forget_person`` removes their personal data at
once, everywhere, by calling each app's own eraser, and records that it did.

Why a tombstone rather than deleting the user or moving their calls to a placeholder: the
call rows stay for counting, and the dashboard counts them by the user's time zone (the
calls by local hour) and per user (users reached by attempt). Keeping the user's row, with
everything that identifies them blanked, keeps those numbers exactly as they were; a shared
placeholder would merge every forgotten person into one user and one zone, and change them.
What stays on the tombstone: its id, the time zone, the call time, the opt-out's time and
source, the dates the account was made. Its username becomes ``forgotten-<id>``.

The erasers are listed by dotted path (an app's eraser is one line here): each takes
``user_id``, ``identifiers`` (the phone, name, e-mail and username, for scrubbing free text
that quotes them) and ``now``, runs in forget_person's transaction and returns how many rows
it changed. The dashboard's rollups hold no person and are not touched.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.module_loading import import_string

from .models import Consent, ConsentSource, Erasure, Suppression, User
from .suppression import number_hash

logger = logging.getLogger("relevel.users")

PERSON_ERASERS: tuple[tuple[str, str], ...] = (
    ("calls", "calls.erasure.calls_erase_person"),
    ("notifications", "notifications.erasure.notifications_erase_person"),
    ("events", "events.erasure.events_erase_person"),
)
TOMBSTONE_FIELDS = (
    "username",
    "name",
    "first_name",
    "last_name",
    "email",
    "phone",
    "external_id",
    "call_enabled",
    "is_active",
    "password",
    "notify_sms",
    "notify_email",
    "context",
)


class CannotForget(Exception):
    """The user is an operator (their login is not a person's data to erase here)."""


def forget_person(*, user_id: int, actor: str, now: datetime | None = None) -> Erasure:
    """Erase everything that identifies user ``user_id``, in one transaction, and record the
    erasure (when, by whom, which id). A number that had opted out, or was on the
    do-not-call list, stays on it as its keyed hash only. Forgetting someone already
    forgotten strips their calls and messages again (an outcome that came in since) and
    returns the first record."""
    now = now or timezone.now()
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user_id)
        if user.is_operator:
            raise CannotForget(f"user {user_id} is an operator, not a person relevel calls")
        earlier = Erasure.objects.filter(user_id=user_id).first()
        if earlier is not None:
            # Again: strip what a call in flight at the first erasure wrote since (its
            # outcome's payload); the person's details are gone, so nothing more to scrub.
            for _, path in PERSON_ERASERS:
                import_string(path)(user_id=user_id, identifiers=[], now=now)
            return earlier
        identifiers = [v for v in (user.phone, user.name, user.email, user.username) if v]
        identifiers += [v for v in (user.first_name, user.last_name) if v]
        suppressed = _number_forget(phone=user.phone, opted_out=user.opted_out_at is not None)
        counts = {
            app: import_string(path)(user_id=user_id, identifiers=identifiers, now=now)
            for app, path in PERSON_ERASERS
        }
        # The consents' wording is the person's (what they agreed to, in their words or a
        # link naming them): the rows go, and with them the proof nothing is dialed anyway.
        counts["consents"], _ = Consent.objects.filter(user_id=user_id).delete()
        external_id = user.external_id or ""
        user.username = f"forgotten-{user.pk}"
        user.name = user.first_name = user.last_name = user.email = ""
        user.phone = None
        user.external_id = None
        user.call_enabled = user.is_active = False
        user.notify_sms = user.notify_email = False
        user.context = {}
        user.set_unusable_password()
        # Not users.services.user_save: the calls' eraser has already canceled what was
        # queued, saying why, and a forgotten person's schedule change is no event for the
        # product (user.schedule_changed). User.save still clears the next call.
        user.save(update_fields=TOMBSTONE_FIELDS)
        counts["users"] = 1
        erasure = Erasure.objects.create(
            user_id=user_id,
            external_id=external_id,
            erased_at=now,
            actor=actor[:150],
            counts=counts,
            suppressed=suppressed,
        )
    logger.info(
        "User %s forgotten by %s (%s)%s",
        user_id,
        actor,
        ", ".join(f"{app} {n}" for app, n in counts.items()),
        "; number kept as a hash on the suppression list" if suppressed else "",
    )
    return erasure


def _number_forget(*, phone: str | None, opted_out: bool) -> bool:
    """Keep ``phone`` on the do-not-call list (users.Suppression) as its hash only, if the
    person had opted out or the number was on the list already; True if it is there now.
    Either way no row keeps the number itself."""
    if not phone:
        return False
    hashed = number_hash(phone)
    on_the_list = Suppression.objects.filter(Q(number=phone) | Q(number_hash=hashed))
    if on_the_list.update(number=None):
        return True
    if not opted_out:
        return False
    Suppression.objects.create(
        number=None,
        number_hash=hashed,
        reason="opted out, then asked to be forgotten",
        source=ConsentSource.ADMIN,
        created_by="erasure",
    )
    return True
