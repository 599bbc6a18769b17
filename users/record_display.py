"""A user's call record as the admin shows it: today's outcome in the users list, and one
cell per local day for the last 30 days on the user's page (styles: relevel/admin.css)."""

from __future__ import annotations

from django.urls import reverse
from django.utils.html import format_html, format_html_join

from calls.models import Call
from web.display import admin_datetime, end_reason_text, status_label

from .selectors import DAY_OUTCOME_LABELS, CallDay, CallRecord, DayOutcome

# One colour per day outcome, as the status badges (white text on a mid-tone background).
DAY_COLOURS = {
    DayOutcome.ANSWERED: "#15803d",
    DayOutcome.NOT_REACHED: "#b45309",
    DayOutcome.MISSED: "#7e22ce",
    DayOutcome.IN_PROGRESS: "#2563eb",
    DayOutcome.DUE: "#64748b",
    DayOutcome.NOT_SCHEDULED: "#a3a3a3",
    DayOutcome.SKIPPED: "#0e7490",
}


def call_outcome_text(call: Call) -> str:
    """ "No answer (user unavailable)": the status, and the provider's end reason in words."""
    reason = end_reason_text(call.end_reason) if call.end_reason else ""
    if not reason or reason.lower() == status_label(call.status).lower():
        return status_label(call.status)
    return f"{status_label(call.status)} ({reason[:1].lower() + reason[1:]})"


def _attempt_line(call: Call, tz_name: str) -> str:
    which = "manual call" if call.manual else f"attempt {call.attempt}"
    when = admin_datetime(call.dialed_at or call.scheduled_for, tz_name)
    return f"{which}: {call_outcome_text(call)}, {when}"


def call_day_title(day: CallDay, tz_name: str) -> str:
    """The day and the attempts behind its outcome, one a line (a cell's tooltip)."""
    lines = [f"{day.local_date:%Y-%m-%d}: {day.outcome.label}"]
    lines += [_attempt_line(call, tz_name) for call in day.calls]
    return "\n".join(lines)


def call_day_badge(day: CallDay, *, tz_name: str):
    """Today's outcome in the users list, linked to the day's latest call, the attempts in
    its tooltip."""
    badge = format_html(
        '<span class="call-day-badge call-day-{}" style="background:{}" title="{}">{}{}</span>',
        day.outcome.value,
        DAY_COLOURS[day.outcome],
        call_day_title(day, tz_name),
        day.outcome.label,
        f" · {len(day.calls)}" if len(day.calls) > 1 else "",
    )
    if not day.calls:
        return badge
    return format_html(
        '<a href="{}">{}</a>', reverse("admin:calls_call_change", args=[day.calls[-1].pk]), badge
    )


def call_record_html(record: CallRecord, *, tz_name: str):
    """The record: the streak, then a cell per local day (oldest first), then a legend."""
    cells = format_html_join(
        "",
        '<li class="call-day call-day-{}" data-date="{}" data-outcome="{}" style="background:{}" '
        'title="{}"><span class="call-day-date">{}</span></li>',
        (
            (
                day.outcome.value,
                day.local_date.isoformat(),
                day.outcome.value,
                DAY_COLOURS[day.outcome],
                call_day_title(day, tz_name),
                day.local_date.day,
            )
            for day in record.days
        ),
    )
    legend = format_html_join(
        "",
        '<li><span class="call-day-swatch" style="background:{}"></span>{}</li>',
        ((DAY_COLOURS[outcome], label) for outcome, label in DAY_OUTCOME_LABELS.items()),
    )
    days = "day" if record.streak == 1 else "days"
    return format_html(
        '<div class="call-record" id="call-record">'
        '<p class="call-record-streak">Current streak: <strong id="call-record-streak">{}</strong> '
        "answered {} in a row</p>"
        '<ol class="call-record-days">{}</ol>'
        '<ul class="call-record-legend">{}</ul>'
        '<p class="help">{} to {}, in the user\'s time zone ({}). Hover over a day for its attempts.</p>'
        "</div>",
        record.streak,
        days,
        cells,
        legend,
        record.days[0].local_date.isoformat(),
        record.today.local_date.isoformat(),
        tz_name,
    )
