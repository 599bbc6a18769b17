from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta

import django_rq
import pytest
import time_machine
from django.conf import settings

from calls.models import Call, CallStatus
from calls.placement import reset_placement_pool
from calls.policy import policy_cache_clear
from calls.providers import reset_provider_cache
from events.endpoints import endpoints_cache_clear
from notifications.wanted import notifications_wanted_clear
from tests.fakes import FakeCallKaro, FakeEventReceiver

_numbers = itertools.count(1)
# make_call's default slot: 20:30 IST (Asia/Kolkata, make_user's zone) on 2026-11-28.
CALL_SLOT = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def clean_redis():
    """Every test starts with an empty Redis database (REDIS_URL names a test-only DB)."""
    connection = django_rq.get_connection(settings.CALLS_QUEUE)
    connection.flushdb()
    yield connection
    connection.flushdb()


@pytest.fixture(autouse=True)
def fresh_provider():
    reset_provider_cache()
    policy_cache_clear()  # a policy row another test saved is not this test's
    endpoints_cache_clear()  # nor an events endpoint another test made
    notifications_wanted_clear()  # nor a person another test let hear from us
    yield
    reset_provider_cache()
    reset_placement_pool()


@pytest.fixture
def redis_conn(clean_redis):
    return clean_redis


@pytest.fixture
def make_user(db):
    from users.models import User

    def make(**fields) -> User:
        n = next(_numbers)
        fields.setdefault("username", f"user{n}")
        fields.setdefault("name", f"User {n}")
        fields.setdefault("phone", f"+9198765{n:05d}")
        fields.setdefault("local_tz", "Asia/Kolkata")
        fields.setdefault("call_time", time(20, 30))
        user = User(**fields)
        user.save()
        return user

    return make


@pytest.fixture
def make_call(db, make_user):
    def make(user=None, **fields) -> Call:
        user = user or make_user()
        fields.setdefault("to_number", user.phone or "")
        fields.setdefault("agent_id", "agent-test")
        fields.setdefault("local_date", date(2026, 11, 28))
        fields.setdefault("status", CallStatus.QUEUED)
        fields.setdefault("scheduled_for", CALL_SLOT)
        fields.setdefault("provider", "callkaro")
        return Call.objects.create(user=user, **fields)

    return make


@pytest.fixture
def on_the_calls_day():
    """The clock a minute into the window of make_call's default call (20:31 IST on
    2026-11-28), and moving: a worker dials that call, and a retry made "now" falls on its
    day. Tests that act "now" on make_call's calls want it (pytest.mark.usefixtures): at the
    real date those calls are past their window and day, so they are missed, not dialed,
    and get no retry."""
    with time_machine.travel(CALL_SLOT + timedelta(minutes=1), tick=True):
        yield


@pytest.fixture
def fake_callkaro(settings):
    """A fake CallKaro HTTP server on 127.0.0.1 that the provider is pointed at."""
    fake = FakeCallKaro().start()
    settings.CALL_PROVIDER = "callkaro"
    settings.CALLKARO_BASE_URL = fake.url
    settings.CALLKARO_READ_TIMEOUT = 2.0
    settings.CALLKARO_CONNECT_TIMEOUT = 1.0
    reset_provider_cache()
    yield fake
    fake.stop()
    reset_provider_cache()


# The notifications' fake Twilio on 127.0.0.1 (tests/notifications_support.py).
from tests.notifications_support import twilio  # noqa: E402,F401

# A Standard Webhooks secret for tests (whsec_ and 32 bytes of base64).
EVENTS_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo="


@pytest.fixture
def event_receiver(settings):
    """The product's app on 127.0.0.1, the environment's events endpoint pointed at it."""
    receiver = FakeEventReceiver().start()
    settings.EVENTS_WEBHOOK_URL = receiver.url
    settings.EVENTS_WEBHOOK_SECRET = EVENTS_SECRET
    settings.EVENTS_CONNECT_TIMEOUT = 1.0
    settings.EVENTS_READ_TIMEOUT = 2.0
    endpoints_cache_clear()
    yield receiver
    receiver.stop()
    endpoints_cache_clear()
