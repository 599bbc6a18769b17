"""A user's context and relevel's memory, sent with every call (docs/conversation.md)."""

from __future__ import annotations

import json
from datetime import date

import pytest

from calls.context import call_variables_for
from calls.models import CallResult, CallStatus
from tests.test_users_api import ASHA, put
from tests.test_users_import import import_csv
from users.models import User

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def api_token(settings):
    settings.QUEUE_API_TOKEN = "t" * 40


def test_the_users_api_sets_and_shows_the_context(client):
    response = put(client, "crm-42", {**ASHA, "context": {"goal": "walk 20 minutes", "coach": "Mia"}})

    assert response.status_code == 201
    assert response.json()["user"]["context"] == {"goal": "walk 20 minutes", "coach": "Mia"}
    got = client.get("/api/users/crm-42", HTTP_AUTHORIZATION="Bearer " + "t" * 40)
    assert got.json()["user"]["context"] == {"goal": "walk 20 minutes", "coach": "Mia"}


@pytest.mark.parametrize(
    ("context", "message"),
    [
        (["a list"], 'must be a JSON object, such as {"goal": "walk 20 minutes"}, or null'),
        ("text", 'must be a JSON object, such as {"goal": "walk 20 minutes"}, or null'),
        ({"notes": "x" * 4100}, "is 4,112 bytes as JSON; at most 4,096"),
    ],
)
def test_a_context_that_is_not_a_small_object_is_a_400_naming_the_field(client, context, message):
    response = put(client, "crm-42", {**ASHA, "context": context})

    assert response.status_code == 400
    assert response.json()["errors"] == {"context": message}
    assert not User.objects.filter(external_id="crm-42").exists()


def test_a_context_of_exactly_4096_bytes_is_accepted(client):
    filler = "x" * (4096 - len('{"notes":""}'))

    assert put(client, "crm-42", {**ASHA, "context": {"notes": filler}}).status_code == 201


def test_the_csv_import_reads_the_context_as_json_text(admin_client):
    text = (
        "external_id,name,phone,local_tz,call_time,context\n"
        'crm-7,Ana,+34 600 000 001,Europe/Madrid,09:00,"{""goal"": ""run""}"\n'
    )

    import_csv(admin_client, text)

    assert User.objects.get(external_id="crm-7").context == {"goal": "run"}


def test_the_memory_holds_the_last_three_days_their_summaries_and_the_streak(make_user, make_call):
    user = make_user(context={"goal": "walk"})
    for day, status in ((24, CallStatus.COMPLETED), (25, CallStatus.COMPLETED), (26, CallStatus.VOICEMAIL)):
        make_call(user=user, local_date=date(2026, 11, day), status=status)
    answered = make_call(user=user, local_date=date(2026, 11, 27), status=CallStatus.COMPLETED)
    CallResult.objects.create(call=answered, summary="Walked 20 minutes.")
    today = make_call(user=user, local_date=date(2026, 11, 28), attempt=2, status=CallStatus.DIALING)
    today.user = user

    variables = call_variables_for(calls=[today])[today.pk]

    assert variables["last_days"] == (
        "2026-11-27: answered. Walked 20 minutes.\n2026-11-26: not reached\n2026-11-25: answered"
    )
    assert json.loads(variables["last_days_json"])[0] == {
        "date": "2026-11-27",
        "outcome": "answered",
        "summary": "Walked 20 minutes.",
    }
    # The voicemail on the 26th broke the run: one answered day since.
    assert (variables["streak"], variables["attempt"]) == ("1", "2")
    assert (variables["context"], variables["context_goal"]) == ('{"goal":"walk"}', "walk")


def test_the_memory_counts_a_manual_call_with_the_days_scheduled_ones(make_user, make_call):
    # The earlier calls are read from two partial indexes (calls.selectors.ANY_KIND), manual
    # calls from one of their own: they are still part of the day they were made on.
    user = make_user()
    make_call(user=user, local_date=date(2026, 11, 27), status=CallStatus.NO_ANSWER)
    manual = make_call(user=user, local_date=date(2026, 11, 27), status=CallStatus.COMPLETED, manual=True)
    CallResult.objects.create(call=manual, summary="Called back from the app.")
    today = make_call(user=user, local_date=date(2026, 11, 28), attempt=2, status=CallStatus.DIALING)
    today.user = user

    variables = call_variables_for(calls=[today])[today.pk]

    assert variables["last_days"].split("\n")[0] == "2026-11-27: answered. Called back from the app."
    assert variables["streak"] == "1"
