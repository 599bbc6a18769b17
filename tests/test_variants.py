"""Agent variants (A/B, issue 10): each user is assigned one by weight, deterministically,
and keeps it until it is deactivated; the call records its variant and sends its agent."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from calls import placement, scheduling
from calls.models import AgentVariant, Call
from calls.variants import Variant, variant_for
from users.models import User

pytestmark = pytest.mark.django_db(transaction=True)

SLOT = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)  # 20:30 IST


def due_users(make_user, count: int) -> list[User]:
    with time_machine.travel(SLOT - timedelta(hours=1), tick=False):
        return [make_user() for _ in range(count)]


def test_assignment_is_deterministic_and_spread_by_weight():
    variants = [Variant(1, "callkaro", "agent-a", 1), Variant(2, "callkaro", "agent-b", 3)]
    picks = [variant_for(user_id=uid, current_id=None, variants=variants).pk for uid in range(1, 4001)]
    assert picks == [
        variant_for(user_id=uid, current_id=None, variants=variants).pk for uid in range(1, 4001)
    ]
    share_b = Counter(picks)[2] / len(picks)
    assert 0.72 < share_b < 0.78  # 3 in 4, within sampling noise


def test_a_user_keeps_their_variant_while_it_is_active_even_when_another_is_added():
    a, b = Variant(1, "callkaro", "agent-a", 1), Variant(2, "callkaro", "agent-b", 1)
    assert variant_for(user_id=7, current_id=1, variants=[a, b, Variant(3, "callkaro", "agent-c", 50)]) == a
    # Deactivated (not in the active list): assigned again among the active ones.
    assert variant_for(user_id=7, current_id=1, variants=[b]) == b


def test_without_variants_calls_use_the_providers_agent_as_before(make_user, redis_conn):
    due_users(make_user, 2)
    scheduling.calls_schedule_due(now=SLOT + timedelta(minutes=1))
    assert set(Call.objects.values_list("variant_id", "agent_id")) == {(None, "agent-test")}


def test_the_tick_assigns_each_user_a_variant_stores_it_and_the_call_sends_its_agent(
    fake_callkaro, make_user, redis_conn
):
    a = AgentVariant.objects.create(name="A", provider="callkaro", agent_id="agent-a", weight=1)
    b = AgentVariant.objects.create(name="B", provider="callkaro", agent_id="agent-b", weight=1)
    users = due_users(make_user, 40)
    scheduling.calls_schedule_due(now=SLOT + timedelta(minutes=1))
    assigned = dict(User.objects.filter(pk__in=[u.pk for u in users]).values_list("pk", "agent_variant_id"))
    assert set(assigned.values()) == {a.pk, b.pk}  # both used
    for call in Call.objects.select_related("variant"):
        assert call.variant_id == assigned[call.user_id]
        assert call.agent_id == call.variant.agent_id
    call = Call.objects.filter(variant=b).first()
    with time_machine.travel(SLOT + timedelta(minutes=2), tick=True):
        assert placement.call_place(call_id=call.pk) == "placed"
    assert fake_callkaro.requests[-1]["json"]["agent_id"] == "agent-b"


def test_assignment_is_stable_across_ticks_and_days(make_user, redis_conn):
    AgentVariant.objects.create(name="A", provider="callkaro", agent_id="agent-a", weight=1)
    AgentVariant.objects.create(name="B", provider="callkaro", agent_id="agent-b", weight=1)
    due_users(make_user, 20)
    scheduling.calls_schedule_due(now=SLOT + timedelta(minutes=1))
    first_day = dict(Call.objects.values_list("user_id", "variant_id"))
    AgentVariant.objects.create(name="C", provider="callkaro", agent_id="agent-c", weight=100)  # a new one
    scheduling.calls_schedule_due(now=SLOT + timedelta(days=1, minutes=1))
    next_day = dict(Call.objects.filter(local_date="2026-11-29").values_list("user_id", "variant_id"))
    assert next_day == first_day  # nobody moved to the new variant


def test_a_deactivated_variants_users_are_reassigned_at_their_next_call(make_user, redis_conn):
    a = AgentVariant.objects.create(name="A", provider="callkaro", agent_id="agent-a", weight=1)
    [user] = due_users(make_user, 1)
    scheduling.calls_schedule_due(now=SLOT + timedelta(minutes=1))
    assert Call.objects.get().variant == a
    a.active = False
    a.save()
    b = AgentVariant.objects.create(name="B", provider="callkaro", agent_id="agent-b", weight=1)
    scheduling.calls_schedule_due(now=SLOT + timedelta(days=1, minutes=1))
    user.refresh_from_db()
    assert user.agent_variant == b and Call.objects.get(local_date="2026-11-29").variant == b


def test_a_retry_keeps_its_attempts_variant(make_call, redis_conn):
    from calls import outcomes
    from calls.providers.base import CallEvent

    variant = AgentVariant.objects.create(name="A", provider="callkaro", agent_id="agent-a", weight=1)
    call = make_call(status="ringing", provider_call_id="ck-v1", variant=variant, agent_id="agent-a")
    with time_machine.travel(SLOT + timedelta(minutes=5), tick=False):
        outcomes.call_apply_event(event=CallEvent(provider_call_id="ck-v1", status="no_answer"))
    retry = Call.objects.get(retry_of=call)
    assert (retry.variant, retry.agent_id) == (variant, "agent-a")


def test_the_admin_refuses_a_variant_for_a_provider_this_deployment_cannot_use(admin_client, settings):
    settings.VAPI_API_KEY = ""
    response = admin_client.post(
        reverse("admin:calls_agentvariant_add"),
        {"name": "V", "provider": "vapi", "agent_id": "asst-1", "weight": "1", "active": "on"},
    )
    assert response.status_code == 200
    assert "vapi cannot place calls here: VAPI_API_KEY" in response.text
    assert not AgentVariant.objects.exists()


def test_a_weight_of_zero_stops_new_assignments_but_moves_nobody():
    a, b = Variant(1, "callkaro", "agent-a", 0), Variant(2, "callkaro", "agent-b", 1)
    assert variant_for(user_id=7, current_id=1, variants=[a, b]) == a  # keeps it
    assert {variant_for(user_id=uid, current_id=None, variants=[a, b]) for uid in range(50)} == {b}
    assert variant_for(user_id=7, current_id=None, variants=[a]) is None
