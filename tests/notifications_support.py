"""Fixtures and helpers shared by the notifications tests (imported by name)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.conf import settings
from rq.registry import ScheduledJobRegistry

from calls import queues
from notifications import sms_twilio
from tests.notification_fakes import FakeTwilio

ACCOUNT_SID = "AC" + "a" * 32
AUTH_TOKEN = "twilio-auth-token-0123456789abcdef"
FROM_NUMBER = "+15017122661"


@pytest.fixture
def twilio(settings):
    """A fake Twilio on 127.0.0.1 that relevel's SMS channel is configured against."""
    fake = FakeTwilio().start()
    settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.TWILIO_FROM_NUMBER = FROM_NUMBER
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
    settings.TWILIO_API_BASE_URL = fake.url
    settings.TWILIO_CONNECT_TIMEOUT = 1.0
    settings.TWILIO_READ_TIMEOUT = 2.0
    sms_twilio._clients.clear()
    yield fake
    fake.stop()
    sms_twilio._clients.clear()


def notifications_queue():
    return queues.queue_named(settings.NOTIFICATIONS_QUEUE)


def queued_job_ids() -> list[str]:
    return notifications_queue().get_job_ids()


def scheduled_jobs() -> dict[str, datetime]:
    """{job id: when RQ's scheduler releases it} on the notifications queue."""
    queue = notifications_queue()
    registry = ScheduledJobRegistry(queue=queue)
    return {
        job_id: datetime.fromtimestamp(score, tz=UTC)
        for job_id, score in queue.connection.zrange(registry.key, 0, -1, withscores=True)
        for job_id in [job_id.decode()]
    }
