"""What `dev.py start` (manage.py runall) tells a newcomer: where the dashboard is, an API
token that works with the documented curl examples, and, on a restart that resets the demo
users, what it kept and how the call policy changes what the demo promises (issue 17)."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest
import time_machine
from django.test import Client

from calls import policy_changes
from relevel.management.commands import runall

NOW = datetime(2026, 11, 28, 6, 0, 20, tzinfo=UTC)  # daytime or night in every demo zone


@pytest.fixture
def demo_users(db):
    with time_machine.travel(NOW, tick=False):
        return runall.demo_users_seed(now=NOW)


@pytest.fixture
def no_token(settings, monkeypatch):
    """A first run: no QUEUE_API_TOKEN in the environment, .env or settings."""
    monkeypatch.delenv("QUEUE_API_TOKEN", raising=False)
    settings.QUEUE_API_TOKEN = ""


def test_the_banner_prints_the_dashboard_first_and_a_working_api_token(settings, no_token, db):
    command = runall.Command()
    env = command.child_env(port=8123, redis_url="redis://127.0.0.1:6379/3")
    token = env["QUEUE_API_TOKEN"]
    assert len(token) >= 40

    banner = command.banner(port=8123, password="pw", demo_users=[], redis_note="embedded", env=env)
    lines = banner.splitlines()
    assert lines[3] == "  Dashboard     http://127.0.0.1:8123/dashboard/"
    assert f"  API token     {token} (this session's)" in lines
    assert (
        f"                e.g. curl -H 'Authorization: Bearer {token}' "
        "'http://127.0.0.1:8123/api/health?detail=1'" in lines
    )

    # The token the children get is the one the API takes.
    settings.QUEUE_API_TOKEN = token
    response = Client().get("/api/health", {"detail": "1"}, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code in (200, 503) and "checks" in response.json()


def test_a_token_you_set_is_used_and_not_printed(settings, no_token, db):
    settings.QUEUE_API_TOKEN = "s" * 40  # as from .env, which the children read too
    command = runall.Command()
    env = command.child_env(port=8000, redis_url="redis://127.0.0.1:6379/3")
    banner = command.banner(port=8000, password="pw", demo_users=[], redis_note="x", env=env)
    assert "QUEUE_API_TOKEN" not in env  # no session token over yours
    assert "s" * 40 not in banner and "the QUEUE_API_TOKEN you set" in banner


def test_a_restart_says_it_kept_the_other_users_and_the_policy(demo_users, make_user):
    make_user(name="Real Person", phone="+447700900123")
    make_user(name="Paused Person", phone="+447700900456", call_enabled=False)
    policy_changes.policy_update(
        changes={"calling_hours": {"start": "08:00", "end": "21:00"}, "retry_delays_minutes": [30, 60]},
        user_id=None,
        actor="test",
    )
    assert runall.demo_kept() == (
        "kept 2 other user(s) (1 called daily) and their calls, and the call policy "
        "(calling hours 08:00-21:00; retry delays 30, 60 min)"
    )


def test_a_default_policy_is_said_to_be_so(demo_users):
    assert runall.demo_kept() == (
        "kept 0 other user(s) (0 called daily) and their calls, and the call policy (all defaults)"
    )


def test_a_default_policy_leaves_the_demo_as_promised(demo_users):
    assert runall.demo_policy_effects(users=demo_users) == []


def test_a_pause_hours_and_retried_outcomes_that_change_the_demo_are_named(demo_users):
    by_name = {user.username: user for user in demo_users}
    kenji = by_name["demo-kenji"]  # 15:03 in Tokyo at 06:00 UTC
    assert kenji.call_time == time(15, 3)
    policy_changes.policy_update(
        changes={
            "paused": True,
            "calling_hours": {"start": "16:00", "end": "23:00"},
            "retry_statuses": ["busy"],
        },
        user_id=None,
        actor="test",
    )
    effects = runall.demo_policy_effects(users=demo_users)
    assert effects[0].startswith("calls are paused: no demo call is placed until you resume them")
    assert (
        "Kenji (demo)'s call at 15:03 local is outside the calling hours (16:00-23:00 local time): "
        "it is recorded missed, not placed"
    ) in effects
    # Maria is called at 01:01 New York time: outside the hours too, so that is what is said.
    assert any(effect.startswith("Maria (demo)'s call at 01:01 local is outside") for effect in effects)


def test_an_outcome_no_longer_retried_is_named(demo_users):
    policy_changes.policy_update(changes={"retry_statuses": ["busy"]}, user_id=None, actor="test")
    # (A voicemail is retried as long as the policy's voicemail_retry is on, as by default.)
    assert runall.demo_policy_effects(users=demo_users) == [
        "Maria (demo)'s no answer is not retried (the policy retries busy, voicemail)"
    ]
