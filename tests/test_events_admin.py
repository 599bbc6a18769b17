"""Events in the admin: endpoints, each event with its delivery attempts, replay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from events import delivery
from events.models import Delivery, DeliveryStatus, Endpoint, Event, EventType
from events.outbox import events_emit
from tests.conftest import EVENTS_SECRET

pytestmark = pytest.mark.django_db


def emitted(user, n: int = 1) -> list[int]:
    with transaction.atomic():
        return [
            events_emit(
                type=EventType.USER_OPTED_OUT, user_id=user.pk, local_date=None, data={"source": "api"}
            )
            for _ in range(n)
        ]


def test_an_events_page_shows_each_delivery_try_with_status_latency_and_excerpt(
    admin_client, event_receiver, make_user
):
    event_receiver.status = lambda n: 500 if n == 1 else 200
    [pk] = emitted(make_user())
    [delivery_id] = delivery.events_fan_out(event_ids=[pk])
    delivery.delivery_attempt(delivery_id=delivery_id)
    Delivery.objects.filter(pk=delivery_id).update(next_attempt_at=timezone.now())
    delivery.delivery_attempt(delivery_id=delivery_id)

    listing = admin_client.get(reverse("admin:events_event_changelist"))
    assert listing.status_code == 200 and b"user.opted_out" in listing.content
    assert b"Replay a time range" in listing.content
    page = admin_client.get(reverse("admin:events_event_change", args=[pk])).content.decode()
    assert Event.objects.get(pk=pk).webhook_id in page
    assert "<td>500</td>" in page and "<td>200</td>" in page and " ms</td>" in page
    assert "not now" in page  # the 500's response excerpt


def test_the_replay_action_sends_the_selected_events_again(admin_client, event_receiver, make_user):
    ids = emitted(make_user(), 2)
    for delivery_id in delivery.events_fan_out(event_ids=ids):
        delivery.delivery_attempt(delivery_id=delivery_id)
    endpoint = Endpoint.objects.get()
    url = reverse("admin:events_event_changelist")
    asked = admin_client.post(url, {"action": "replay_selected", "_selected_action": [ids[0]]})
    assert asked.status_code == 200 and b"Replay 1 event(s)" in asked.content
    done = admin_client.post(
        url, {"action": "replay_selected", "_selected_action": [ids[0]], "endpoint": endpoint.pk}, follow=True
    )
    assert b"1 event(s) queued to" in done.content
    assert Delivery.objects.get(event_id=ids[0]).status == DeliveryStatus.PENDING
    assert Delivery.objects.get(event_id=ids[1]).status == DeliveryStatus.DELIVERED


def test_the_replay_page_queues_every_event_of_a_time_range(admin_client, event_receiver, make_user):
    ids = emitted(make_user(), 3)
    Event.objects.filter(pk=ids[0]).update(occurred_at=timezone.now() - timedelta(days=3))
    endpoint = Endpoint.objects.create(name="app", url=event_receiver.url, secret=EVENTS_SECRET)
    url = reverse("admin:events_event_replay")
    assert admin_client.get(url).status_code == 200
    since = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
    bad = admin_client.post(url, {"endpoint": endpoint.pk, "since": since, "until": since})
    assert b"Must be after the start." in bad.content
    response = admin_client.post(url, {"endpoint": endpoint.pk, "since": since, "until": ""})
    assert response.status_code == 302
    assert set(Delivery.objects.filter(endpoint=endpoint).values_list("event_id", flat=True)) == set(ids[1:])


def test_turning_a_disabled_endpoint_back_on_clears_why_it_was_off(admin_client):
    endpoint = Endpoint.objects.create(
        name="app", url="http://127.0.0.1:9/x", active=False, disabled_reason="It answered 410 Gone."
    )
    url = reverse("admin:events_endpoint_change", args=[endpoint.pk])
    form = admin_client.get(url)
    assert form.status_code == 200
    response = admin_client.post(
        url,
        {"name": "app", "url": endpoint.url, "secret": endpoint.secret, "active": "on", "event_types": []},
    )
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.active and endpoint.disabled_reason == "" and endpoint.disabled_at is None


def test_an_endpoint_secret_must_be_a_standard_webhooks_secret(admin_client):
    response = admin_client.post(
        reverse("admin:events_endpoint_add"),
        {"name": "app", "url": "https://app.example.com/hooks", "secret": "hunter2", "active": "on"},
    )
    assert response.status_code == 200
    assert b"A secret starts with whsec_" in response.content
    assert not Endpoint.objects.exists()
