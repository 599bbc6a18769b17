"""The simulator runs the whole loop on one machine: placed, signed webhook, outcome, retry."""

import hashlib
import hmac
import json

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
