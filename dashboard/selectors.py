"""Every number on the dashboard. Read-only.

"Today" is the deployment's date in TIME_ZONE (UTC unless configured), and a call belongs
to it when its ``Call.local_date`` is that date: each user's calls of that calendar date on
their own clock. At 20:00 UTC on 28 November, a Kolkata user's 28th (which ended at 18:30
UTC) and a New York user's 28th (which has four hours to go) are both today; the Kolkata
user's 29th, already begun, is tomorrow. That keeps a day one number per user, matches the
admin's ``local_date`` filter exactly, and is one index range. What is happening right now
(calls in flight, retries pending) is counted whatever its day.

Today's counts come from a snapshot recomputed every minute while someone looks
(dashboard.glance); calls in flight and retries pending are read live (two small index reads
by status). The charts cover the 30 days before today and today so far, and come from the
daily rollup (dashboard.rollups), a few thousand rows; "calls per day" takes today's column
from the glance, the freshest count of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from urllib.parse import urlencode

from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone

from calls import forecast
from calls.models import AgentVariant, Call, CallStatus
from web.display import STATUS_COLOURS

from . import conversation, glance, rollups
from .charts import PALETTE, Chart, Series, wilson_interval
from .models import DailyStat, RollupDay

IN_FLIGHT = (CallStatus.DIALING, CallStatus.UNCONFIRMED, CallStatus.RINGING, CallStatus.IN_PROGRESS)
UNANSWERED = glance.UNANSWERED
# A call in flight for longer than this has probably lost its webhook (the tick fails it at
# CALL_OUTCOME_TIMEOUT_SECONDS): worth a look.
STUCK_AFTER = timedelta(minutes=15)
# The stacks of "calls per day", bottom up; the in-flight statuses are drawn as one.
DAY_STACKS: list[tuple[str, str, tuple[str, ...]]] = [
    ("completed", "Answered", (CallStatus.COMPLETED,)),
    ("no_answer", "No answer", (CallStatus.NO_ANSWER,)),
    ("voicemail", "Voicemail", (CallStatus.VOICEMAIL,)),
    ("busy", "Busy", (CallStatus.BUSY,)),
    ("failed", "Failed", (CallStatus.FAILED,)),
    ("missed", "Missed", (CallStatus.MISSED,)),
    ("canceled", "Canceled", (CallStatus.CANCELED,)),
    ("in_flight", "In flight", IN_FLIGHT),
    ("queued", "Queued", (CallStatus.QUEUED,)),
]


# The calls admin's badge colours, but for busy, which shares no answer's there.
DAY_STACK_COLOURS = {
    **{slug: STATUS_COLOURS[slug] for slug, _, statuses in DAY_STACKS if slug in STATUS_COLOURS},
    "busy": "#ca8a04",
    "in_flight": STATUS_COLOURS[CallStatus.DIALING],
}


def dashboard_today(*, now: datetime) -> date:
    return timezone.localdate(now)


def calls_admin_url(**lookups) -> str:
    """The admin's call list filtered by standard field lookups (status__exact=..., ...)."""
    return f"{reverse('admin:calls_call_changelist')}?{urlencode(lookups)}"


# --- Today at a glance --------------------------------------------------------------------


@dataclass(frozen=True)
class Tile:
    slug: str
    label: str
    value: int
    url: str
    help: str
    note: str = ""
    note_url: str = ""

    @property
    def display(self) -> str:
        return f"{self.value:,}"


@dataclass(frozen=True)
class Glance:
    day: date
    tiles: list[Tile]
    statuses: dict[str, int]  # today's calls by status, for the "calls per day" chart
    # When today's counts were computed (Due to Missed); in flight and retries pending are live.
    computed_at: datetime | None = None
    # The capacity forecast kept with today's counts (glance.next_24_hours_compute).
    next_24_hours: dict | None = None

    def value(self, slug: str) -> int:
        return next(tile.value for tile in self.tiles if tile.slug == slug)


def today_at_a_glance(*, now: datetime) -> Glance:
    day = dashboard_today(now=now)
    on_day = {"local_date__exact": day.isoformat()}
    # Today's counts from their snapshot (dashboard.glance: too many rows to count per view).
    snapshot = glance.today_snapshot_read(day, now=now)
    counts = snapshot.counts
    statuses = {status: counts.get(f"status_{status}", 0) for status in CallStatus.values}
    not_reached = counts.get("not_reached", 0)
    stuck_before = now - STUCK_AFTER
    in_flight = Call.objects.filter(status__in=IN_FLIGHT).aggregate(
        calls=Count("id"), stuck=Count("id", filter=Q(dialed_at__lt=stuck_before))
    )
    retries_pending = Call.objects.filter(status=CallStatus.QUEUED, attempt__gt=1).count()
    in_flight_statuses = ",".join(IN_FLIGHT)
    tiles = [
        Tile(
            "due",
            "Due",
            counts.get("due", 0),
            calls_admin_url(**on_day, attempt__exact=1, manual__exact=0),
            "Daily slots that came due today so far: first attempts, whatever became of them.",
        ),
        Tile(
            "called",
            "Called",
            counts.get("called", 0),
            calls_admin_url(**on_day, dialed_at__isnull="False"),
            "Calls sent to the provider today: first attempts, retries and manual calls.",
        ),
        Tile(
            "answered",
            "Answered",
            statuses[CallStatus.COMPLETED],
            calls_admin_url(**on_day, status__exact=CallStatus.COMPLETED),
            "Calls a person answered today.",
        ),
        Tile(
            "not_reached",
            "Not reached",
            not_reached,
            calls_admin_url(**on_day, manual__exact=0, status__in=",".join(UNANSWERED), retry__isnull="True"),
            "Users whose last attempt today ended failed, no answer or busy, with no retry to come.",
        ),
        Tile(
            "missed",
            "Missed",
            statuses[CallStatus.MISSED],
            calls_admin_url(**on_day, status__exact=CallStatus.MISSED),
            "Attempts never dialed: their window closed first (see the reasons below).",
        ),
        Tile(
            "skipped",
            "Skipped",
            counts.get("skipped", 0),
            f"{reverse('admin:users_user_changelist')}?{urlencode({'off_on': day.isoformat()})}",
            "People not called today because it is a day off for them (their call days, a pause, a "
            "skipped day, the policy's skip dates or holidays): not missed.",
        ),
        Tile(
            "retries_pending",
            "Retries pending",
            retries_pending,
            calls_admin_url(status__exact=CallStatus.QUEUED, attempt__gt=1),
            "Retries waiting for their time, right now (any day).",
        ),
        Tile(
            "in_flight",
            "Calls in flight",
            in_flight["calls"],
            calls_admin_url(status__in=in_flight_statuses),
            "Dialing, unconfirmed, ringing or in progress, right now (any day).",
            note=f"{in_flight['stuck']:,} dialed over {int(STUCK_AFTER.total_seconds() // 60)} min ago"
            if in_flight["stuck"]
            else "",
            note_url=calls_admin_url(status__in=in_flight_statuses, dialed_at__lt=stuck_before.isoformat()),
        ),
    ]
    return Glance(
        day=day,
        tiles=tiles,
        statuses=statuses,
        computed_at=snapshot.computed_at,
        next_24_hours=counts.get("next_24_hours"),
    )


# --- The charts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Rollup:
    days: list[date]  # the DAYS days before today, then today
    stats: dict[date, dict[tuple[str, str], float]]
    computed: dict[date, RollupDay]

    @property
    def today(self) -> date:
        return self.days[-1]

    @property
    def days_before_today(self) -> list[date]:
        return self.days[:-1]

    @property
    def missing_before_today(self) -> int:
        """Days before today not computed yet (a new deployment's first minutes)."""
        return sum(day not in self.computed for day in self.days_before_today)

    def label(self, day: date) -> str:
        return "today" if day == self.today else _day_label(day)

    def get(self, day: date, metric: str, key: str = "") -> float:
        return self.stats.get(day, {}).get((metric, key), 0)

    def total(self, metric: str, key: str = "") -> float:
        return sum(self.get(day, metric, key) for day in self.days)

    @property
    def oldest_computation(self) -> datetime | None:
        return min((row.computed_at for row in self.computed.values()), default=None)


def rollup_read(*, today: date) -> Rollup:
    days = rollups.chart_days(today=today)
    stats: dict[date, dict[tuple[str, str], float]] = {day: {} for day in days}
    for day, metric, key, value in DailyStat.objects.filter(day__gte=days[0], day__lte=days[-1]).values_list(
        "day", "metric", "key", "value"
    ):
        stats[day][(metric, key)] = value
    computed = {row.day: row for row in RollupDay.objects.filter(day__gte=days[0], day__lte=days[-1])}
    return Rollup(days=days, stats=stats, computed=computed)


def _day_label(day: date) -> str:
    return f"{day:%b} {day.day}"


def _share(part: float, whole: float) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def chart_calls_per_day(rollup: Rollup, glance: Glance | None) -> Chart:
    labels = [rollup.label(day) for day in rollup.days]
    columns_by_day = [
        {slug: int(sum(rollup.get(day, "status", s) for s in statuses)) for slug, _, statuses in DAY_STACKS}
        for day in rollup.days
    ]
    if glance is not None:  # today's column from the glance: fresher than today's rollup
        columns_by_day[-1] = {
            slug: sum(glance.statuses[s] for s in statuses) for slug, _, statuses in DAY_STACKS
        }
    series = [
        Series(label, [column[slug] for column in columns_by_day], DAY_STACK_COLOURS[slug])
        for slug, label, _ in DAY_STACKS
    ]
    days = [day.isoformat() for day in rollup.days]
    rows = [
        [day, *(column[slug] for slug, _, _ in DAY_STACKS), sum(column.values())]
        for day, column in zip(days, columns_by_day, strict=True)
    ]
    return Chart(
        slug="calls-per-day",
        title="Calls per day by outcome",
        help="Every call (first attempts, retries, manual calls) by its local date and its status now; "
        "the last bar is today so far.",
        kind="stacked",
        unit="count",
        labels=labels,
        series=series,
        columns=["day", *(label for _, label, _ in DAY_STACKS), "total"],
        rows=rows,
    )


def chart_answer_rate_by_hour(rollup: Rollup) -> Chart:
    dialed = [rollup.total("hour_dialed", str(hour)) for hour in range(24)]
    answered = [rollup.total("hour_answered", str(hour)) for hour in range(24)]
    rates = [_share(a, d) for a, d in zip(answered, dialed, strict=True)]
    return Chart(
        slug="answer-rate-by-hour",
        title="Answer rate by the user's local hour",
        help="Of the calls dialed in each hour of the user's own clock (the last 30 days and today), "
        "the share answered.",
        kind="bar-line",
        unit="percent",
        labels=[f"{hour:02d}" for hour in range(24)],
        series=[Series("Answer rate", rates, PALETTE[1])],
        columns=["local hour", "dialed", "answered", "answer rate %"],
        rows=[[f"{hour:02d}:00", int(dialed[hour]), int(answered[hour]), rates[hour]] for hour in range(24)],
        y_max=100,
    )


def chart_retry_recovery(rollup: Rollup) -> Chart:
    called = rollup.total("users_called")
    last = rollups.RECOVERY_ATTEMPTS
    reached = [rollup.total("reached_attempt", str(attempt)) for attempt in range(1, last + 1)]
    not_reached = called - sum(reached)
    labels = [f"Attempt {attempt}" for attempt in range(1, last)] + [f"Attempt {last}+", "Not reached"]
    counts = [*reached, not_reached if called else 0]
    shares = [_share(count, called) for count in counts]
    cumulative, rows = 0.0, []
    for label, count, share in zip(labels, counts, shares, strict=True):
        if label != "Not reached":
            cumulative += count
        rows.append(
            [label, int(count), share, _share(cumulative, called) if label != "Not reached" else None]
        )
    return Chart(
        slug="retry-recovery",
        title="Retry recovery",
        help="Of the users called each day (the last 30 days and today, one count per user and day), "
        "the share first reached on each attempt: what attempts 2 and 3 add is what the retries are worth.",
        kind="bar-line",
        unit="percent",
        labels=labels,
        series=[Series("Users reached", shares, PALETTE[0])],
        columns=["attempt", "user-days", "share of users called %", "reached by then %"],
        rows=rows,
        y_max=100,
    )


def chart_placement_lag(rollup: Rollup) -> Chart:
    have = [day for day in rollup.days if rollup.get(day, "lag_calls")]
    p50 = [rollup.get(day, "lag_p50") if day in have else None for day in rollup.days]
    p95 = [rollup.get(day, "lag_p95") if day in have else None for day in rollup.days]
    return Chart(
        slug="placement-lag",
        title="Placement lag",
        help="Seconds from a daily call's scheduled time to its dialing, per day: the median and the 95th "
        "percentile.",
        kind="bar-line",
        unit="seconds",
        labels=[rollup.label(day) for day in rollup.days],
        series=[Series("p50", p50, PALETTE[0], kind="line"), Series("p95", p95, PALETTE[2], kind="line")],
        columns=["day", "dialed calls", "p50 s", "p95 s"],
        rows=[
            [day.isoformat(), int(rollup.get(day, "lag_calls")), a, b]
            for day, a, b in zip(rollup.days, p50, p95, strict=True)
        ],
    )


def chart_missed_by_reason(rollup: Rollup) -> Chart:
    reasons = [(key, label) for key, label, _ in rollups.MISSED_REASONS] + [rollups.OTHER_REASON]
    series = [
        Series(
            label, [rollup.get(day, "missed_reason", key) for day in rollup.days], PALETTE[i % len(PALETTE)]
        )
        for i, (key, label) in enumerate(reasons)
    ]
    return Chart(
        slug="missed-by-reason",
        title="Missed calls by reason",
        help="Attempts never dialed, grouped by the reason recorded on each (its error text), per day.",
        kind="stacked",
        unit="count",
        labels=[rollup.label(day) for day in rollup.days],
        series=series,
        columns=["day", *(label for _, label in reasons), "total"],
        rows=[
            [
                day.isoformat(),
                *(int(rollup.get(day, "missed_reason", key)) for key, _ in reasons),
                int(sum(rollup.get(day, "missed_reason", key) for key, _ in reasons)),
            ]
            for day in rollup.days
        ],
    )


def chart_variants(rollup: Rollup, variants: list[AgentVariant]) -> Chart:
    rates, lower, upper, rows = [], [], [], []
    for variant in variants:
        dialed = int(rollup.total("variant_dialed", str(variant.pk)))
        answered = int(rollup.total("variant_answered", str(variant.pk)))
        low, high = wilson_interval(answered, dialed)
        rate = _share(answered, dialed)
        rates.append(rate)
        lower.append(round(100 * low, 1) if dialed else None)
        upper.append(round(100 * high, 1) if dialed else None)
        rows.append(
            [
                variant.name,
                variant.provider,
                variant.agent_id,
                variant.active,
                dialed,
                answered,
                rate,
                lower[-1],
                upper[-1],
            ]
        )
    return Chart(
        slug="variants",
        title="Answer rate by agent variant",
        help="Of each variant's calls dialed in the last 30 days and today, the share answered, with its "
        "95% confidence interval (Wilson): where two intervals overlap, the difference may be chance.",
        kind="bar-line",
        unit="percent",
        labels=[variant.name for variant in variants],
        series=[Series("Answer rate", rates, PALETTE[3], lower=lower, upper=upper)],
        columns=[
            "variant",
            "provider",
            "agent",
            "active",
            "dialed",
            "answered",
            "answer rate %",
            "95% low %",
            "95% high %",
        ],
        rows=rows,
        y_max=100,
        hidden_note=""
        if variants
        else "No agent variants are defined (Calls › Agent variants): every call uses the provider's agent.",
    )


def glance_snapshot_counts(*, now: datetime) -> dict:
    """Today's stored counts (and forecast), for a chart read without the page's glance."""
    return glance.today_snapshot_read(dashboard_today(now=now), now=now).counts


def chart_next_24_hours(kept: dict | None, *, now: datetime) -> Chart:
    """Users due per 15-minute slot of the next 24 hours (UTC), against what the provider
    can take in their windows (calls.forecast, ``kept`` in today's snapshot)."""
    kept = kept or {}
    first = datetime.fromisoformat(kept["from"]) if kept else forecast.slot_start(now)
    starts = [first + timedelta(minutes=15 * index) for index in range(96)]
    # [start, due, capacity, will miss, skipped]; a snapshot kept before days off has no skipped.
    by_start = {
        datetime.fromisoformat(row[0]): (row[1], row[2], row[3], row[4] if len(row) > 4 else 0)
        for row in kept.get("slots", [])
    }
    empty = (0, None, 0, 0)
    due = [by_start.get(start, empty)[0] for start in starts]
    capacity = [by_start.get(start, empty)[1] for start in starts]
    will_miss = [by_start.get(start, empty)[2] for start in starts]
    skipped = [by_start.get(start, empty)[3] for start in starts]
    capped = any(value is not None for value in capacity)
    series = [Series("users due", due, PALETTE[0])]
    if any(skipped):
        series.append(Series("skipped (day off)", skipped, PALETTE[3]))
    if capped:
        series += [
            Series("will be missed", will_miss, PALETTE[4]),
            Series("provider capacity", capacity, PALETTE[2], kind="line"),
        ]
    lines = kept.get("max_live_calls") or 0
    provider, average = kept.get("provider", "the provider"), kept.get("average_call_seconds", 0)
    return Chart(
        slug="next-24-hours",
        title="Next 24 hours: users due per 15 minutes",
        help=(
            f"Users due in each 15-minute slot (UTC), against the calls {provider} can take in their "
            f"windows with {lines} live calls of {average:.0f} s on average, and those it will miss "
            "(GET /api/capacity has the busiest slots first)."
            if lines
            else "Users due in each 15-minute slot (UTC). The provider has no live-call cap set "
            "(PROVIDER_MAX_LIVE_CALLS), so no slot is forecast to be missed."
        ),
        kind="bar-line",
        unit="count",
        labels=[f"{start:%H:%M}" for start in starts],
        series=series,
        columns=["slot start (UTC)", "users due", "provider capacity", "will be missed", "skipped (day off)"],
        rows=[
            [start.isoformat(), d, c, m, k]
            for start, d, c, m, k in zip(starts, due, capacity, will_miss, skipped, strict=True)
            if d or k
        ],
    )


CHART_SLUGS = (
    "calls-per-day",
    "answer-rate-by-hour",
    "retry-recovery",
    "placement-lag",
    "missed-by-reason",
    "variants",
    "next-24-hours",
    "voicemail-share",
    "sentiment",
    "cost",
    "variant-outcomes",
)


def dashboard_charts(*, now: datetime, glance: Glance | None = None) -> tuple[list[Chart], Rollup]:
    """All charts in page order, and the rollup they were read from (for its age)."""
    rollup = rollup_read(today=dashboard_today(now=now))
    variants = list(AgentVariant.objects.order_by("pk"))
    charts = [
        chart_calls_per_day(rollup, glance),
        chart_answer_rate_by_hour(rollup),
        chart_retry_recovery(rollup),
        chart_placement_lag(rollup),
        chart_missed_by_reason(rollup),
        chart_variants(rollup, variants),
        chart_next_24_hours(
            glance.next_24_hours
            if glance is not None
            else glance_snapshot_counts(now=now).get("next_24_hours"),
            now=now,
        ),
        conversation.chart_voicemail_share(rollup),
        conversation.chart_sentiment(rollup),
        conversation.chart_cost(rollup),
        conversation.chart_variant_outcomes(rollup, variants),
    ]
    return charts, rollup


def dashboard_chart(slug: str, *, now: datetime) -> Chart | None:
    """One chart by its slug (the CSV download), or None; only "calls per day" reads today."""
    if slug not in CHART_SLUGS:
        return None
    glance = today_at_a_glance(now=now) if slug == "calls-per-day" else None
    charts, _ = dashboard_charts(now=now, glance=glance)
    return next(chart for chart in charts if chart.slug == slug)
