"""The engine tells the notifications app when a person's day is missed (calls/days.py
days_settle -> notifications.services.notify_missed_day): once per person and day, from the
provider's webhook or the tick, and never while the day still has a call to come."""

from __future__ import annotations

import pytest

from calls import outcomes
from calls.models import Call, CallStatus
from calls.providers.base import CallEvent
from events.models import DayMark
from notifications.models import Channel, Notification
from notifications.wanted import notifications_wanted_clear
from tests.notifications_support import twilio  # noqa: F401 - a fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("on_the_calls_day")]


def webhook(provider_call_id: str, status: str):
    return outcomes.call_apply_event(event=CallEvent(provider_call_id=provider_call_id, status=status))


def person(make_user, **fields):
    user = make_user(notify_email=True, email="asha@example.com", **fields)
    notifications_wanted_clear()  # as a worker sees it within seconds
    return user


def test_a_last_unanswered_attempt_makes_one_message_for_the_day(make_user, make_call, redis_conn):
    user = person(make_user, max_retries=0)
    make_call(user=user, status=CallStatus.RINGING, provider_call_id="ck-1")
    webhook("ck-1", CallStatus.NO_ANSWER)
    webhook("ck-1", CallStatus.NO_ANSWER)  # the provider's retry of its webhook
    [message] = Notification.objects.filter(user=user)
    assert (message.channel, message.local_date.isoformat()) == (Channel.EMAIL, "2026-11-28")


def test_no_message_while_a_retry_is_to_come_nor_after_an_answer(make_user, make_call, redis_conn):
    user = person(make_user, max_retries=1)
    make_call(user=user, status=CallStatus.RINGING, provider_call_id="ck-2")
    assert webhook("ck-2", CallStatus.NO_ANSWER).retry_scheduled
    assert not Notification.objects.exists()
    retry = Call.objects.get(user=user, attempt=2)
    Call.objects.filter(pk=retry.pk).update(status=CallStatus.RINGING, provider_call_id="ck-3")
    webhook("ck-3", CallStatus.COMPLETED)
    assert not Notification.objects.exists()


def test_nobody_asked_for_messages_so_the_webhook_does_no_day_bookkeeping(make_user, make_call, redis_conn):
    user = make_user(max_retries=0)  # notifications off for everyone
    notifications_wanted_clear()
    make_call(user=user, status=CallStatus.RINGING, provider_call_id="ck-4")
    webhook("ck-4", CallStatus.NO_ANSWER)
    assert not Notification.objects.exists()
    assert not DayMark.objects.exists()
