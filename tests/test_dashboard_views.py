"""The dashboard's pages: who may see them, what they show, the CSV downloads, the links
into the admin, and the way there from / and from the admin."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time, timedelta

import pytest
import time_machine
from django.template import Context, Template
from django.urls import reverse

from calls.models import CallStatus
from dashboard import rollups, selectors
from dashboard.charts import Series
from tests.test_dashboard import DAY, EVENING, call_on, chain

DASHBOARD = reverse("dashboard:index")
CHART_IDS = selectors.CHART_SLUGS


@pytest.fixture
def at_evening():
    with time_machine.travel(EVENING, tick=False):
        yield


def test_the_site_root_redirects_to_the_dashboard(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == DASHBOARD


def test_anonymous_visitors_are_sent_to_the_admin_login_and_back(client, db):
    response = client.get(DASHBOARD)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('admin:login')}?next={DASHBOARD}"
    csv_response = client.get(reverse("dashboard:chart-csv", args=["calls-per-day"]))
    assert csv_response.status_code == 302
    assert csv_response["Location"].startswith(reverse("admin:login"))


def test_a_logged_in_user_who_is_not_staff_does_not_see_it(client, make_user):
    client.force_login(make_user(is_staff=False))
    response = client.get(DASHBOARD)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_a_new_deployment_shows_every_chart_with_its_axes_and_no_data_yet(admin_client, at_evening):
    response = admin_client.get(DASHBOARD)

    assert response.status_code == 200
    page = response.content.decode()
    # Variants: a note until one exists; cost: a note until a provider reports one.
    drawn = [slug for slug in CHART_IDS if slug not in ("variants", "variant-outcomes", "cost")]
    for slug in drawn:
        assert f'id="chart-{slug}-svg" data-chart="{slug}"' in page
        assert f'id="chart-{slug}-table" data-chart="{slug}"' in page
    assert page.count("No data yet</text>") == len(drawn)
    assert page.count('class="dash-axis"') == 2 * len(drawn)
    assert 'id="chart-variants-note"' in page and "No agent variants are defined" in page
    assert "30 of the 30 days before today are not computed yet" in page


def test_the_page_shows_todays_numbers_linking_to_the_same_calls_in_the_admin(
    admin_client, make_user, make_call, at_evening
):
    chain(make_call, make_user(), DAY, CallStatus.NO_ANSWER, CallStatus.COMPLETED)
    chain(make_call, make_user(), DAY, CallStatus.BUSY, CallStatus.NO_ANSWER, CallStatus.FAILED)
    chain(make_call, make_user(), DAY, CallStatus.NO_ANSWER, CallStatus.QUEUED)
    chain(make_call, make_user(), DAY, CallStatus.MISSED)
    call_on(make_call, make_user(), DAY, CallStatus.RINGING, at=EVENING - timedelta(minutes=30))
    call_on(make_call, make_user(), DAY - timedelta(days=1), CallStatus.COMPLETED)

    response = admin_client.get(DASHBOARD)
    assert response.status_code == 200
    tiles = response.context["glance"].tiles
    expected = {
        "due": 5,
        "called": 7,
        "answered": 1,
        "not_reached": 1,
        "missed": 1,
        "skipped": 0,
        "retries_pending": 1,
        "in_flight": 1,
    }
    assert {tile.slug: tile.value for tile in tiles} == expected
    page = response.content.decode()
    for tile in tiles:
        assert f'id="glance-{tile.slug}"' in page
        listed = admin_client.get(tile.url)
        assert listed.status_code == 200, tile.url
        assert listed.context["cl"].result_count == tile.value, tile.slug
    in_flight = next(tile for tile in tiles if tile.slug == "in_flight")
    assert admin_client.get(in_flight.note_url).context["cl"].result_count == 1


def test_the_charts_show_the_rollup_with_their_numbers_as_a_table(
    admin_client, make_user, make_call, at_evening
):
    yesterday = DAY - timedelta(days=1)
    chain(make_call, make_user(), yesterday, CallStatus.NO_ANSWER, CallStatus.COMPLETED)
    rollups.daily_stats_refresh(now=EVENING)

    page = admin_client.get(DASHBOARD).content.decode()

    assert "not computed yet" not in page
    # The missed-calls chart, and (no voicemail, no call analysed) voicemail share and sentiment.
    assert page.count("No data yet</text>") == 3
    assert "<td>2026-11-27</td><td>1</td><td>1</td>" in page  # answered 1, no answer 1
    assert "<title>Nov 27: Answered 1 (total 2)</title>" in page


def test_a_chart_downloads_as_csv_with_its_table(admin_client, make_user, make_call, at_evening):
    chain(make_call, make_user(), DAY - timedelta(days=1), CallStatus.NO_ANSWER, CallStatus.COMPLETED)
    rollups.daily_stats_refresh(now=EVENING)

    response = admin_client.get(reverse("dashboard:chart-csv", args=["retry-recovery"]))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="relevel-retry-recovery-2026-11-28.csv"'
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows == [
        ["attempt", "user-days", "share of users called %", "reached by then %"],
        ["Attempt 1", "0", "0.0", "0.0"],
        ["Attempt 2", "1", "100.0", "100.0"],
        ["Attempt 3+", "0", "0.0", "100.0"],
        ["Not reached", "0", "0.0", ""],
    ]


def test_calls_per_day_csv_ends_with_today_so_far(admin_client, make_user, make_call, at_evening):
    call_on(make_call, make_user(), DAY, CallStatus.COMPLETED)

    response = admin_client.get(reverse("dashboard:chart-csv", args=["calls-per-day"]))
    rows = list(csv.reader(io.StringIO(response.content.decode())))

    assert rows[0][:3] == ["day", "Answered", "No answer"] and rows[0][-1] == "total"
    assert len(rows) == 1 + 31
    assert rows[-1][0] == "2026-11-28" and rows[-1][1] == "1" and rows[-1][-1] == "1"
    assert rows[1][0] == "2026-10-29" and rows[1][-1] == "0"


def test_an_unknown_chart_is_a_404_with_a_json_message(admin_client):
    response = admin_client.get(reverse("dashboard:chart-csv", args=["nope"]))
    assert response.status_code == 404
    assert response.json() == {
        "success": False,
        "error": "no chart named 'nope'; the charts are: " + ", ".join(CHART_IDS),
    }


def test_the_admin_index_links_to_the_dashboard_first_and_view_site_leads_there(admin_client):
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert page.index(f'href="{DASHBOARD}"><strong>Open the dashboard') < page.index('id="operations-module"')
    assert f'<a href="{DASHBOARD}">View site</a>' in page


def test_the_dashboard_page_is_a_few_queries_whatever_the_data(
    admin_client, make_user, make_call, at_evening
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    rollups.daily_stats_refresh(now=EVENING)
    with CaptureQueriesContext(connection) as empty:
        admin_client.get(DASHBOARD)
    for day in (DAY, DAY - timedelta(days=1), DAY - timedelta(days=2)):
        chain(make_call, make_user(), day, CallStatus.NO_ANSWER, CallStatus.COMPLETED)
    rollups.daily_stats_refresh(now=EVENING + rollups.REFRESH_AFTER)
    with CaptureQueriesContext(connection) as full:
        admin_client.get(DASHBOARD)
    # The same few whatever the data; 14 since the banners read the pause (who, when) and
    # the cost guard the month's cost, each one indexed row.
    assert len(full) == len(empty) <= 14


# --- The chart tags ---------------------------------------------------------------------------


def render(source: str, **context) -> str:
    return Template("{% load dashboard_charts %}" + source).render(Context(context))


def test_stacked_bars_stack_each_label_to_its_total():
    series = [Series("a", [1, 0, 3], "#111111"), Series("b", [1, None, 1], "#222222")]
    svg = render(
        "{% stacked_bar_chart labels series chart_id='x' %}", labels=["d1", "d2", "d3"], series=series
    )
    assert svg.count("<rect") == 4  # no rect for a zero or missing value
    assert "<title>d3: a 3 (total 4)</title>" in svg
    assert 'id="chart-x-svg" data-chart="x"' in svg
    assert "No data yet" not in svg


def test_a_line_breaks_where_a_value_is_missing_and_bars_get_error_bars():
    line = Series("p50", [1.0, None, 2.0, 3.0], "#111111", kind="line")
    bars = Series(
        "rate",
        [50.0, 20.0, None, 10.0],
        "#222222",
        lower=[40.0, 10.0, None, 5.0],
        upper=[60.0, 30.0, None, 20.0],
    )
    svg = render(
        "{% bar_line_chart labels series chart_id='y' unit='percent' y_max=100 %}",
        labels=["a", "b", "c", "d"],
        series=[bars, line],
    )
    assert svg.count("<polyline") == 2
    assert svg.count("<rect") == 3
    assert svg.count("95% interval") == 3
    assert "<title>a: rate 50%</title>" in svg


def test_an_empty_chart_draws_its_axes_and_says_so():
    svg = render(
        "{% bar_line_chart labels series chart_id='z' %}", labels=[], series=[Series("s", [], "#111")]
    )
    assert "No data yet" in svg
    assert svg.count('class="dash-axis"') == 2


def test_the_refresh_command_prints_one_line(db, capsys):
    from django.core.management import call_command

    with time_machine.travel(datetime(2026, 11, 29, 20, 0, tzinfo=UTC), tick=False):
        call_command("refresh_dashboard")
    assert capsys.readouterr().out.startswith("refresh_dashboard: 31 days computed in ")  # and today
    assert rollups.RollupDay.objects.filter(day=date(2026, 11, 28)).exists()


def test_viewing_the_page_enqueues_the_refresh_of_stale_days(admin_client, redis_conn, at_evening):
    from calls import queues

    page = admin_client.get(DASHBOARD).content.decode()

    assert "Newer figures coming: reload in a minute" in page
    assert queues.calls_queue().get_job_ids() == [rollups.REFRESH_JOB_ID]


def test_the_next_24_hours_chart_shows_users_due_per_slot_against_the_providers_capacity(
    admin_client, make_user, settings
):
    """Four users due at 12:00 UTC, one at 18:30; one line of 10-minute calls in a 15-minute
    window takes one call (and a half) per slot: 3 of the four will be missed."""
    from dashboard import glance

    settings.PROVIDER_MAX_LIVE_CALLS = {**settings.PROVIDER_MAX_LIVE_CALLS, "callkaro": 1}
    settings.CALL_AVERAGE_DURATION_SECONDS = 600
    now = datetime(2026, 11, 28, 9, 7, tzinfo=UTC)
    with time_machine.travel(now, tick=False):
        for _ in range(4):
            make_user(local_tz="UTC", call_time=time(12, 0))
        make_user(local_tz="Asia/Kolkata", call_time=time(0, 0))  # 18:30 UTC
        glance.today_snapshot_store(selectors.dashboard_today(now=now), now=now)
        chart = selectors.dashboard_chart("next-24-hours", now=now)
        page = admin_client.get(reverse("dashboard:index")).content.decode()
    assert chart.labels[0] == "09:00" and len(chart.labels) == 96
    assert chart.rows == [
        ["2026-11-28T12:00:00+00:00", 4, 1, 3, 0],
        ["2026-11-28T18:30:00+00:00", 1, 1, 0, 0],
    ]
    assert [s.name for s in chart.series] == ["users due", "will be missed", "provider capacity"]
    assert 'data-chart="next-24-hours"' in page


def test_the_next_24_hours_chart_without_a_cap_only_counts_the_users_due(make_user):
    from dashboard import glance

    now = datetime(2026, 11, 28, 9, 7, tzinfo=UTC)
    with time_machine.travel(now, tick=False):
        make_user(local_tz="UTC", call_time=time(12, 0))
        glance.today_snapshot_store(selectors.dashboard_today(now=now), now=now)
        chart = selectors.dashboard_chart("next-24-hours", now=now)
    assert [s.name for s in chart.series] == ["users due"]
    assert chart.rows == [["2026-11-28T12:00:00+00:00", 1, None, 0, 0]]
    assert "no live-call cap" in chart.help
