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

from .models import OptOutSource, User
from .services import opted_out_message, user_save, users_cancel_pending_calls

__all__ = ["opted_out_message", "user_opt_in", "user_opt_out"]

logger = logging.getLogger("relevel.users")

OPT_OUT_FIELDS = ("opted_out_at", "opt_out_source", "opt_out_call_id", "call_enabled")


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
        # disabled calls.", and says nothing when calls were already off.
        users_cancel_pending_calls(reasons={user.pk: f"The user opted out ({source.label})."}, now=now)
        user.opted_out_at = now
        user.opt_out_source = source
        user.opt_out_call_id = call_id
        user.call_enabled = False
        user_save(user=user, update_fields=OPT_OUT_FIELDS)
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
