"""Replies to our SMS (the inbound webhook's service) and the opt-outs they make.

Twilio's own rules, which these follow (docs/notifications.md has the sources): a reply
whose whole body is one of the opt-out keywords, in any case, puts the number on Twilio's
block list for our sender; an opt-in keyword takes it off. Twilio still passes the reply to
our webhook, which records it here, so that relevel stops queueing SMS the user would never
get and the admin shows when and how they asked. With a Messaging Service's Advanced
Opt-Out, Twilio names the kind of keyword in OptOutType (custom keywords included), which
wins over our list. "STOP CALLS" is ours: not a Twilio keyword (two words), so Twilio does
not block on it; it stops our SMS and the daily calls too.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from calls.logsafe import mask_phone
from users.consent import user_opt_out
from users.models import OptOutSource, User

from .sms_opt_outs import sms_opt_in, sms_opt_out

logger = logging.getLogger("relevel.notifications")

# Twilio's default keywords for long codes and toll-free numbers.
OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})
STOP_CALLS = "STOP CALLS"
STOP_CALLS_REPLY = "You will get no more calls or texts from us. Reply START to get texts again."


@dataclass(frozen=True)
class ReplyOutcome:
    action: str  # "opted_out", "opted_out_of_calls", "opted_in", "ignored", "unknown_number"
    user_id: int | None = None
    # What to answer the sender in TwiML, if anything (Twilio answers its own keywords).
    reply: str = ""


def reply_keyword(body: str) -> str:
    """The reply as a keyword: upper case, spaces collapsed, end punctuation dropped
    ("stop." and " Stop " are STOP, "stop  calls!" is STOP CALLS)."""
    return " ".join(re.sub(r"[.!?,;]+$", "", body.strip()).upper().split())


def sms_reply_receive(
    *, from_number: str, body: str, message_sid: str, opt_out_type: str = "", now: datetime | None = None
) -> ReplyOutcome:
    """Record what an inbound SMS asks for: STOP (and Twilio's other opt-out keywords)
    stops SMS to the user whose phone sent it, START resumes them, STOP CALLS stops SMS and
    calls. Anything else is left alone (logged without its text)."""
    now = now or timezone.now()
    keyword = reply_keyword(body)
    user_id = (
        User.objects.filter(phone=from_number).values_list("pk", flat=True).first() if from_number else None
    )
    if user_id is None:
        logger.info(
            "SMS reply %s from %s, which is no user's number: ignored", message_sid, mask_phone(from_number)
        )
        return ReplyOutcome("unknown_number")
    kind = opt_out_type.strip().upper()
    if keyword == STOP_CALLS:
        with transaction.atomic():
            sms_opt_out(
                user_id=user_id,
                source="sms",
                keyword=keyword,
                message_sid=message_sid,
                also_calls=True,
                now=now,
            )
            user_opt_out_of_calls(user_id=user_id)
        return ReplyOutcome("opted_out_of_calls", user_id, STOP_CALLS_REPLY)
    if kind == "STOP" or (not kind and keyword in OPT_OUT_KEYWORDS):
        sms_opt_out(user_id=user_id, source="sms", keyword=keyword, message_sid=message_sid, now=now)
        return ReplyOutcome("opted_out", user_id)
    if kind == "START" or (not kind and keyword in OPT_IN_KEYWORDS):
        sms_opt_in(user_id=user_id, keyword=keyword, now=now)
        return ReplyOutcome("opted_in", user_id)
    logger.info("SMS reply %s from user %s: not a keyword, ignored", message_sid, user_id)
    return ReplyOutcome("ignored", user_id)


def user_opt_out_of_calls(*, user_id: int) -> None:
    """The one place a reply turns a user's calls off: the person's consent record
    (users.consent), which the tick and the dialer read; the first opt-out stands."""
    user_opt_out(user_id=user_id, source=OptOutSource.SMS)  # it logs the change
