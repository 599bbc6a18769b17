"""GET /metrics: Prometheus gauges read from the database and Redis at scrape time, and the
alert rules in deploy/prometheus/ that use them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
import yaml
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from calls.models import CallStatus
from calls.queues import calls_queue
from calls.scheduling import calls_schedule_due
from tests.test_check_calls import live_worker
from tests.test_health import database_down, redis_down  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parent.parent
URL = "/metrics"
NOW = datetime(2026, 11, 28, 15, 30, tzinfo=UTC)
AUTH = {"HTTP_AUTHORIZATION": f"Bearer {settings.QUEUE_API_TOKEN}"}


def scrape(client) -> dict[str, dict[tuple, float]]:
    """{metric name: {sorted label items: value}} from one authenticated scrape."""
    response = client.get(URL, **AUTH)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    families: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            families.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return families


def value(families, name: str, **labels) -> float:
    return families[name][tuple(sorted(labels.items()))]


@pytest.fixture
def known_state(db, redis_conn, make_call, settings):
    """Calls, jobs, workers, leases and a tick whose figures the tests know."""
    settings.PROVIDER_MAX_LIVE_CALLS = {**settings.PROVIDER_MAX_LIVE_CALLS, "vapi": 2}
    with time_machine.travel(NOW - timedelta(minutes=2), tick=False):
        calls_schedule_due()
    for status, provider, attempt, count in [
        (CallStatus.COMPLETED, "callkaro", 1, 3),
        (CallStatus.NO_ANSWER, "callkaro", 1, 2),
        (CallStatus.COMPLETED, "callkaro", 2, 1),
        (CallStatus.BUSY, "vapi", 1, 1),
    ]:
        for _ in range(count):
            make_call(
                status=status, provider=provider, attempt=attempt, scheduled_for=NOW - timedelta(minutes=40)
            )
    make_call(status=CallStatus.COMPLETED, manual=True, scheduled_for=NOW - timedelta(minutes=50))
    make_call(status=CallStatus.COMPLETED, scheduled_for=NOW - timedelta(minutes=61))  # out of the window
    # First attempts still queued after their time: 7 and 25 minutes.
    make_call(status=CallStatus.QUEUED, scheduled_for=NOW - timedelta(minutes=7))
    make_call(status=CallStatus.QUEUED, scheduled_for=NOW - timedelta(minutes=25))
    make_call(status=CallStatus.QUEUED, scheduled_for=NOW + timedelta(minutes=5))  # not due yet

    queue = calls_queue()
    queue.enqueue("calls.jobs.place_call", 1)
    queue.enqueue_at(NOW - timedelta(minutes=10), "calls.jobs.place_call", 2)  # overdue
    queue.enqueue_at(NOW + timedelta(minutes=30), "calls.jobs.place_call", 3)
    live_worker(redis_conn)
    dead = live_worker(redis_conn)
    redis_conn.delete(dead.key)  # killed: its registration is left, its heartbeat gone

    live = "relevel:capacity:vapi:live"
    redis_conn.zadd(live, {"101": NOW.timestamp() + 60, "102": NOW.timestamp() + 600})
    redis_conn.zadd(live, {"99": NOW.timestamp() - 1})  # its lease ran out
    redis_conn.zadd("relevel:capacity:vapi:waiting", {"103": 1, "104": 2, "105": 3})
    with time_machine.travel(NOW, tick=False):
        yield


def test_it_counts_calls_by_status_provider_and_attempt_over_the_last_hour(known_state, client):
    families = scrape(client)
    calls = families["relevel_calls"]
    assert value(families, "relevel_calls", status="completed", provider="callkaro", attempt="1") == 3
    assert value(families, "relevel_calls", status="no_answer", provider="callkaro", attempt="1") == 2
    assert value(families, "relevel_calls", status="completed", provider="callkaro", attempt="2") == 1
    assert value(families, "relevel_calls", status="busy", provider="vapi", attempt="1") == 1
    assert value(families, "relevel_calls", status="completed", provider="callkaro", attempt="manual") == 1
    assert value(families, "relevel_calls", status="queued", provider="callkaro", attempt="1") == 3
    # The call due 61 minutes ago is outside the window.
    assert sum(calls.values()) == 11


def test_it_reports_first_attempts_due_but_not_dialed(known_state, client):
    families = scrape(client)
    assert value(families, "relevel_first_attempts_undialed") == 2
    assert value(families, "relevel_first_attempts_undialed_oldest_seconds") == 25 * 60
    assert value(families, "relevel_check_ok", check="first_attempts") == 0


def test_it_reports_the_last_tick(known_state, client):
    families = scrape(client)
    assert (
        value(families, "relevel_tick_last_end_timestamp_seconds") == (NOW - timedelta(minutes=2)).timestamp()
    )
    assert value(families, "relevel_tick_since_last_seconds") == 120
    assert value(families, "relevel_tick_last_duration_seconds") == 0  # the clock stood still
    assert value(families, "relevel_tick_last_failed") == 0
    assert value(families, "relevel_tick_last_summary", field="due") == 0
    assert value(families, "relevel_tick_cron_period_seconds") == 300
    assert value(families, "relevel_check_ok", check="tick") == 1


def test_it_reports_queue_depths_workers_and_overdue_delayed_jobs(known_state, client):
    families = scrape(client)
    assert value(families, "relevel_queue_jobs", queue="daily-calls", state="queued") == 1
    assert value(families, "relevel_queue_jobs", queue="daily-calls", state="scheduled") == 2
    assert value(families, "relevel_queue_jobs", queue="daily-calls", state="started") == 0
    assert value(families, "relevel_queue_jobs", queue="daily-calls-tick", state="queued") == 0
    assert value(families, "relevel_queue_delayed_overdue", queue="daily-calls") == 1
    assert value(families, "relevel_queue_delayed_overdue", queue="daily-calls-tick") == 0
    # Two registered, one alive.
    assert value(families, "relevel_queue_workers", queue="daily-calls") == 1
    assert value(families, "relevel_queue_workers", queue="daily-calls-tick") == 1
    # Registered but not yet in its loop (RQ sets idle, busy... from there).
    assert value(families, "relevel_workers", state="starting") == 1
    assert sum(families["relevel_workers"].values()) == 1
    assert value(families, "relevel_check_ok", check="delayed_jobs") == 0
    assert value(families, "relevel_check_ok", check="workers") == 1


def test_it_reports_live_calls_and_calls_waiting_per_provider(known_state, client):
    families = scrape(client)
    assert value(families, "relevel_provider_live_calls", provider="vapi") == 2
    assert value(families, "relevel_provider_calls_waiting", provider="vapi") == 3
    assert value(families, "relevel_provider_live_calls_max", provider="vapi") == 2
    assert value(families, "relevel_provider_live_calls", provider="retell") == 0
    assert value(families, "relevel_provider_live_calls_max", provider="retell") == 0


def test_every_name_starts_with_relevel_and_both_dependencies_are_up(known_state, client):
    families = scrape(client)
    assert all(name.startswith("relevel_") for name in families)
    assert value(families, "relevel_up", dependency="database") == 1
    assert value(families, "relevel_up", dependency="redis") == 1


def test_with_redis_down_it_still_answers_what_the_database_gives(known_state, client, redis_down):  # noqa: F811
    families = scrape(client)
    assert value(families, "relevel_up", dependency="redis") == 0
    assert value(families, "relevel_up", dependency="database") == 1
    assert value(families, "relevel_first_attempts_undialed") == 2
    assert "relevel_queue_jobs" not in families and "relevel_tick_since_last_seconds" not in families
    assert ("check", "tick") not in {label for labels in families["relevel_check_ok"] for label in labels}


def test_with_the_database_down_it_still_answers_what_redis_gives(known_state, client, database_down):  # noqa: F811
    families = scrape(client)
    assert value(families, "relevel_up", dependency="database") == 0
    assert value(families, "relevel_up", dependency="redis") == 1
    assert "relevel_calls" not in families
    assert value(families, "relevel_provider_live_calls", provider="vapi") == 2


def test_it_needs_the_token_or_a_staff_session(db, client, django_user_model):
    response = client.get(URL)
    assert response.status_code == 401 and response.json()["success"] is False
    assert client.get(URL, HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    client.force_login(django_user_model.objects.create_user("someone", password="x"))
    assert client.get(URL).status_code == 403
    client.force_login(django_user_model.objects.create_user("operator", password="x", is_staff=True))
    response = client.get(URL)
    assert response.status_code == 200 and b"relevel_up" in response.content
    assert "no-cache" in response["Cache-Control"]


def test_it_answers_get_only(db, client):
    response = client.post(URL, **AUTH)
    assert response.status_code == 405 and response["Allow"] == "GET"


# --- Alert rules ----------------------------------------------------------------------------

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
# Prometheus' own series for every scrape target; not one /metrics exports.
PROMETHEUS_OWN = {"up"}
PROMQL_KEYWORDS = {"and", "or", "unless", "bool"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: not its functions, label names, keywords,
    durations or numbers."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\boffset\s+\w+", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(\s*\()?", expr):
        name, is_call = match.groups()
        if not is_call and name not in PROMQL_KEYWORDS:
            names.add(name)
    return names


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def test_the_name_reader_finds_metrics_and_nothing_else():
    expr = (
        'sum by (job) (rate(relevel_calls{status=~"a|b"}[5m])) > 0.5 * (x:y offset 1d) '
        "and on (job) relevel_up == 1 unless absent(nope_total)"
    )
    assert promql_metric_names(expr) == {"relevel_calls", "x:y", "relevel_up", "nope_total"}


def test_every_alert_uses_only_metrics_the_endpoint_exports(known_state, client):
    exported = set(scrape(client))
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    for rule in rules():
        unknown = promql_metric_names(rule["expr"]) - exported - recorded - PROMETHEUS_OWN
        assert not unknown, f"{rule.get('alert') or rule['record']} uses {sorted(unknown)}"


def test_the_alerts_cover_each_failure():
    alerts = {rule["alert"]: rule for rule in rules() if "alert" in rule}
    assert set(alerts) == {
        "RelevelMetricsUnreachable",
        "RelevelDependencyDown",
        "RelevelNoTick",
        "RelevelTickNeverRecorded",
        "RelevelTickFailing",
        "RelevelFirstAttemptsNotDialed",
        "RelevelDelayedJobsOverdue",
        "RelevelNoLiveWorker",
        "RelevelAnswerRateDropped",
        "RelevelProviderCapacityExhausted",
        "RelevelEventEndpointDisabled",
        "RelevelEventsUndelivered",
        "RelevelBudgetReached",
    }
    assert "2 * relevel_tick_cron_period_seconds" in alerts["RelevelNoTick"]["expr"]
    for rule in alerts.values():
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert rule["labels"]["severity"] in {"critical", "warning"}


def test_the_scrape_example_sends_the_token_and_loads_the_rules():
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    [job] = config["scrape_configs"]
    assert (job["job_name"], job["metrics_path"], job["scheme"]) == ("relevel", "/metrics", "https")
    assert job["authorization"]["type"] == "Bearer" and job["authorization"]["credentials_file"]
    assert "credentials" not in job["authorization"]  # the token lives in a file, not here
