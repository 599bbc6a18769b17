"""The dashboard's conversation charts (dashboard.conversation) and a user's page: voicemail
share, sentiment, cost per day and per reached user, the A/B table with Wilson intervals,
the budget banner, the last 30 days' summaries."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse

from calls.models import AgentVariant, CallPolicy, CallResult, CallStatus
from dashboard import rollups, selectors
from dashboard.conversation import answer_rate_note
from tests.test_dashboard import DAY, call_on

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 29, 20, 0, tzinfo=UTC)


def result(call, *, sentiment="", score=None, cost=None, talk=None, opt_out=False, summary=""):
    return CallResult.objects.create(
        call=call,
        summary=summary,
        sentiment=sentiment,
        sentiment_score=score,
        cost_amount=cost,
        cost_currency="USD" if cost is not None else "",
        user_talk_seconds=talk,
        opt_out_heard=opt_out,
    )


def chart(slug):
    charts, _ = selectors.dashboard_charts(now=NOW)
    return next(c for c in charts if c.slug == slug)


def test_voicemail_share_sentiment_and_cost_per_day_and_per_reached_user(make_user, make_call):
    asha, bilal = make_user(), make_user()
    answered = call_on(make_call, asha, DAY, CallStatus.COMPLETED)
    result(answered, sentiment="positive", score=0.8, cost=Decimal("0.30"), talk=40)
    voicemail = call_on(make_call, bilal, DAY, CallStatus.VOICEMAIL)
    result(voicemail, cost=Decimal("0.10"))
    retried = call_on(make_call, bilal, DAY, CallStatus.COMPLETED, attempt=2, retry_of=voicemail)
    result(retried, sentiment="negative", score=-0.5, cost=Decimal("0.20"))
    rollups.day_stats_store(DAY, now=NOW)

    share = chart("voicemail-share")

    def day_row(rows):  # the charts end with today so far, after the day under test
        return next(row for row in rows if row[0] == DAY.isoformat())

    assert day_row(share.rows) == [DAY.isoformat(), round(100 / 3, 1)]
    assert day_row(chart("sentiment").rows) == [DAY.isoformat(), 1, 0, 1]
    # 0.60 USD for the day, 2 users reached: 0.30 each.
    assert day_row(chart("cost").rows) == [DAY.isoformat(), 0.6, 2, 0.3]


def test_the_ab_table_scores_variants_on_outcomes_with_intervals_and_says_when_they_differ(
    make_user, make_call
):
    a = AgentVariant.objects.create(name="A", provider="callkaro", agent_id="agent-a")
    b = AgentVariant.objects.create(name="B", provider="callkaro", agent_id="agent-b")
    user = make_user()
    for i in range(30):
        call = call_on(
            make_call,
            user,
            DAY,
            CallStatus.COMPLETED if i < 27 else CallStatus.VOICEMAIL,
            attempt=i + 1,
            variant=a,
        )
        if i < 27:
            result(call, sentiment="positive", score=0.5, cost=Decimal("0.10"), talk=30, opt_out=i == 0)
    for i in range(30):
        call_on(
            make_call,
            user,
            DAY,
            CallStatus.COMPLETED if i < 5 else CallStatus.NO_ANSWER,
            attempt=40 + i,
            variant=b,
        )
    rollups.day_stats_store(DAY, now=NOW)

    table = chart("variant-outcomes")

    assert table.rows[0] == ["A", 30, 90.0, "74.4-96.5", 10.0, "3.5-25.6", 3.7, "0.7-18.3", 0.5, 30.0, 0.1]
    assert table.rows[1][:6] == ["B", 30, 16.7, "7.3-33.6", 0.0, "0.0-11.4"]
    assert "A answers more often than B, beyond chance" in table.help


def test_overlapping_intervals_are_said_to_be_possibly_chance():
    assert answer_rate_note({"A": (0.4, 0.7, 20), "B": (0.5, 0.8, 20)}).startswith("No two variants")
    assert answer_rate_note({"A": (0.4, 0.7, 20)}) == ""


def test_the_dashboard_says_when_the_budget_paused_calls(admin_client):
    CallPolicy.objects.create(pk=1, monthly_budget=Decimal("1"), budget_reached_at=datetime.now(UTC))

    page = admin_client.get(reverse("dashboard:index")).content.decode()

    assert 'id="dashboard-budget"' in page and "the monthly budget is reached" in page


def test_a_users_page_shows_the_last_30_days_summaries_and_a_sentiment_line(
    admin_client, make_user, make_call
):
    user = make_user()
    first = call_on(make_call, user, DAY, CallStatus.COMPLETED)
    result(first, sentiment="positive", score=0.6, summary="Walked 20 minutes.")
    second = call_on(make_call, user, DAY, CallStatus.COMPLETED, attempt=2)
    result(second, sentiment="negative", score=-0.4, summary="Skipped the walk.")

    with time_machine.travel(NOW, tick=False):
        page = admin_client.get(reverse("admin:users_user_change", args=[user.pk])).content.decode()

    assert "Walked 20 minutes." in page and "Skipped the walk." in page
    assert page.index("Skipped the walk.") < page.index("Walked 20 minutes.")  # newest first
    assert 'id="sentiment-line"' in page
