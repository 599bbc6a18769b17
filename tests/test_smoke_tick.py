from datetime import UTC, datetime, time

import pytest
import time_machine

from calls.models import Call, CallStatus
from calls.services import calls_schedule_due


@pytest.mark.django_db(transaction=True)
def test_a_due_user_gets_one_queued_call_and_a_job(make_user, redis_conn):
    with time_machine.travel(datetime(2026, 11, 28, 14, 55, tzinfo=UTC), tick=False):
        user = make_user(local_tz="Asia/Kolkata", call_time=time(20, 30))  # 15:00 UTC
    with time_machine.travel(datetime(2026, 11, 28, 15, 0, tzinfo=UTC), tick=False):
        summary = calls_schedule_due()
        again = calls_schedule_due()
    call = Call.objects.get(user=user)
    assert (summary.claimed, again.claimed) == (1, 0)
    assert call.status == CallStatus.QUEUED and call.attempt == 1
    assert redis_conn.exists(f"rq:job:call-{call.pk}")
