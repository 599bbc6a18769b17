"""The simulator runs the whole loop on one machine: placed, signed webhook, outcome, retry."""

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.utils import timezone
from rq import SimpleWorker

from calls import scheduling
from calls.models import Call, CallStatus
from calls.providers import get_provider
from calls.providers.simulator import parse_outcome_mix
from calls.queues import calls_queue
from tests.clock import midday_user_fields


@pytest.fixture
def simulator(settings, live_server):
    settings.CALL_PROVIDER = "simulator"
    settings.SIMULATOR_WEBHOOK_URL = f"{live_server.url}/api/webhooks/simulator"
    settings.SIMULATOR_DELAY_SECONDS = 0
    settings.CALL_RETRY_DELAY_SECONDS = 3600
    return settings


def run_worker_burst():
    queue = calls_queue()
    SimpleWorker([queue], connection=queue.connection).work(burst=True, with_scheduler=True)


@pytest.mark.django_db(transaction=True)
def test_a_simulated_call_is_answered_by_a_signed_webhook_and_retried(simulator, make_user):
    simulator.SIMULATOR_OUTCOMES = "no_answer:1"
    user = make_user(**midday_user_fields(timezone.now()))  # its retry stays on the call's day
    scheduling.calls_schedule_due()
    run_worker_burst()  # places the call; the simulator schedules its webhook
    run_worker_burst()  # delivers the webhook to our own endpoint

    first = Call.objects.get(user=user, attempt=1)
    assert first.provider_call_id.startswith("sim-")
    assert first.status == CallStatus.NO_ANSWER
    # CallKaro's real envelope, as https://docs.callkaro.ai/webhook/call-ended documents it.
    webhook = first.provider_payloads[-1]
    assert webhook["event"] == "call_ended"
    assert webhook["data"]["call_metadata"]["call_id"] == str(first.pk)
    assert (webhook["data"]["hangup_reason"], first.end_reason) == ("USER_UNAVAILABLE", "USER_UNAVAILABLE")
    assert webhook["data"]["to"] == user.phone.lstrip("+")
    retry = Call.objects.get(user=user, attempt=2)
    assert (retry.status, retry.retry_of_id) == (CallStatus.QUEUED, first.pk)


@pytest.mark.django_db(transaction=True)
def test_a_completed_simulated_call_carries_a_transcript_and_recording(simulator, make_user):
    simulator.SIMULATOR_OUTCOMES = "completed:1"
    make_user(**midday_user_fields(timezone.now()))
    scheduling.calls_schedule_due()
    run_worker_burst()
    run_worker_burst()
    call = Call.objects.get()
    assert call.status == CallStatus.COMPLETED
    assert call.transcript and call.recording_url and call.duration_seconds
    assert not Call.objects.filter(attempt=2).exists()


def test_the_simulator_signs_its_webhooks_like_callkaro(settings):
    from calls.providers.base import WebhookAuth

    settings.CALL_PROVIDER = "simulator"
    provider = get_provider()
    body = json.dumps({"event": "call_ended", "data": {"callSid": "sim-1"}}).encode()
    signature = hmac.new(settings.CALLKARO_WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    signed = {"X-Callkaro-Signature": signature}
    assert provider.authenticate_webhook(body=body, headers=signed, query={}) is WebhookAuth.OK
    assert provider.authenticate_webhook(body=body + b" ", headers=signed, query={}) is WebhookAuth.DENIED


def test_the_outcome_mix_is_parsed_and_validated():
    assert parse_outcome_mix("completed:70, no_answer:30") == [("completed", 70), ("no_answer", 30)]
    for bad in ("answered:5", "completed", "completed:x", "completed:0"):
        with pytest.raises(ValueError):
            parse_outcome_mix(bad)


def test_a_bad_outcome_mix_fails_the_system_checks(settings):
    settings.CALL_PROVIDER = "simulator"
    settings.SIMULATOR_OUTCOMES = "completed:70,hangup:30"
    with pytest.raises(SystemCheckError, match="SIMULATOR_OUTCOMES is invalid"):
        call_command("check")


# --- Scripted outcomes (SIMULATOR_SCRIPT): the demo users' ---------------------------------


@pytest.mark.django_db
def test_a_scripted_number_gets_its_outcome_per_attempt_and_others_the_mix(settings, make_call):
    from calls.providers.base import PlaceCallRequest
    from calls.providers.simulator import SimulatorProvider

    settings.SIMULATOR_SCRIPT = {"+12025550143": ("no_answer", "completed")}
    settings.SIMULATOR_OUTCOMES = "busy:1"
    provider = SimulatorProvider.from_settings()
    calls = {attempt: make_call(attempt=attempt, to_number="+12025550143") for attempt in (1, 2, 3)}
    other = make_call(to_number="+919876500009")

    def outcome(call):
        request = PlaceCallRequest(
            call_id=call.pk, user_id=call.user_id, to_number=call.to_number, agent_id="a", name="n"
        )
        return provider.pick_outcome(request)

    assert [outcome(calls[n]) for n in (1, 2, 3)] == ["no_answer", "completed", "completed"]
    assert outcome(other) == "busy"


def test_the_script_is_read_from_the_environment_and_a_bad_one_stops_start_up():
    from django.core.exceptions import ImproperlyConfigured

    from calls.providers.simulator import HANGUP_REASON_OF
    from relevel.settings import SIMULATOR_OUTCOME_NAMES, _simulator_script

    assert set(SIMULATOR_OUTCOME_NAMES) == set(HANGUP_REASON_OF)
    assert _simulator_script(" +1202=no_answer, completed ; +8190=busy;") == {
        "+1202": ("no_answer", "completed"),
        "+8190": ("busy",),
    }
    for bad in ("+1202=hangup", "1202=busy", "+1202=", "+1202"):
        with pytest.raises(ImproperlyConfigured, match="SIMULATOR_SCRIPT must be"):
            _simulator_script(bad)


@pytest.mark.django_db(transaction=True)
def test_every_first_run_shows_each_outcome_and_a_retry_within_five_minutes(simulator, live_server):
    """The demo users as `dev.py start` seeds them, through the tick, a worker and the
    simulator's signed webhooks, half a minute at a time (dev.py's demo ticks every minute)."""
    import time_machine

    from relevel.management.commands.runall import Command, demo_simulator_script, demo_users_seed
    from relevel.settings import _simulator_script

    # 06:00 UTC: daytime or night, but never near midnight, in every demo user's zone.
    start = datetime(2026, 11, 28, 6, 0, 20, tzinfo=UTC)
    with time_machine.travel(start, tick=False):
        users = demo_users_seed(now=start)
    env = Command().child_env(port=8000, redis_url="redis://unused:1/0", demo_users=users)
    assert env["SIMULATOR_SCRIPT"] == demo_simulator_script(users)
    simulator.SIMULATOR_SCRIPT = _simulator_script(env["SIMULATOR_SCRIPT"])
    simulator.CALL_RETRY_DELAY_SECONDS = 3600  # the demo users' own 1-minute delay must win

    for step in range(1, 11):
        with time_machine.travel(start + timedelta(seconds=30 * step), tick=False):
            scheduling.calls_schedule_due()
            for _ in range(3):  # place, deliver the webhook, release a retry that is due
                run_worker_burst()

    outcomes = {
        user.username: [
            (call.status, call.end_reason) for call in Call.objects.filter(user=user).order_by("attempt")
        ]
        for user in users
    }
    assert outcomes == {
        "demo-maria": [("no_answer", "USER_UNAVAILABLE"), ("completed", "CLIENT_INITIATED")],
        "demo-asha": [("completed", "CLIENT_INITIATED")],
        "demo-kenji": [("busy", "USER_REJECTED")],
        "demo-lucas": [("voicemail", "VOICEMAIL_DETECTED")],
        "demo-olivia": [("failed", "USER_UNRESPONSIVE")],
    }
    retry = Call.objects.get(user__username="demo-maria", attempt=2)
    assert retry.scheduled_for - retry.retry_of.last_status_at <= timedelta(minutes=1, seconds=1)
