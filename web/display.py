"""How the admin shows calls: one datetime format everywhere, status badges with the human
label, and the day outcomes of a user's call record."""

from __future__ import annotations

from datetime import UTC, datetime

from django.utils.html import format_html
from django.utils.safestring import SafeString

from calls.models import CallStatus
from calls.slots import zone_or_none

# One colour per outcome family, readable on the admin's light and dark themes alike
# (white text on a mid-tone background).
STATUS_COLOURS = {
    CallStatus.QUEUED: "#64748b",
    CallStatus.DIALING: "#2563eb",
    CallStatus.UNCONFIRMED: "#c2410c",
    CallStatus.RINGING: "#2563eb",
    CallStatus.IN_PROGRESS: "#0e7490",
    CallStatus.COMPLETED: "#15803d",
    CallStatus.NO_ANSWER: "#b45309",
    CallStatus.BUSY: "#b45309",
    CallStatus.VOICEMAIL: "#9a3412",
    CallStatus.FAILED: "#b91c1c",
    CallStatus.MISSED: "#7e22ce",
    CallStatus.CANCELED: "#525252",
}
_BADGE_STYLE = (
    "display:inline-block;padding:1px 8px;border-radius:9px;color:#fff;"
    "font-size:0.85em;font-weight:600;white-space:nowrap;background:{}"
)


# A call someone picked up is "Answered" on every page (the day outcomes of a person's
# record, the dashboard), though its stored status stays "completed".
STATUS_WORDS = {CallStatus.COMPLETED: "Answered"}


def status_label(status: str) -> str:
    """The human label of a status ("No answer", "Answered"), or the stored value if this
    code no longer knows it."""
    try:
        known = CallStatus(status)
    except ValueError:
        return status
    return STATUS_WORDS.get(known, known.label)


def end_reason_text(reason: str) -> str:
    """A provider's end reason as words: "USER_UNAVAILABLE", "customer-did-not-answer" and
    "dial_no_answer" read "User unavailable", "Customer did not answer", "Dial no answer".
    The provider's own code stays in the call's page and its filter, for searching."""
    words = " ".join(reason.replace("_", " ").replace("-", " ").split())
    return words[:1].upper() + words[1:].lower()


def end_reason_label(reason: str) -> str:
    """A provider's end reason as words ("customer-did-not-answer", "USER_UNAVAILABLE" ->
    "Customer did not answer", "User unavailable"); the raw value stays in filters' URLs and
    tooltips."""
    words = " ".join(reason.replace("-", " ").replace("_", " ").split()).lower()
    return words[:1].upper() + words[1:]


def status_badge(status: str | None) -> SafeString | str:
    """A call status as a coloured pill; "-" when there is none (a user never called)."""
    if not status:
        return "-"
    colour = STATUS_COLOURS.get(status, "#525252")
    return format_html(
        '<span class="call-status" data-status="{}" style="{}">{}</span>',
        status,
        _BADGE_STYLE.format(colour),
        status_label(status),
    )


def admin_datetime(value: datetime | None, tz_name: str | None = None) -> str:
    """The admin's one datetime format, to the second with the zone's abbreviation:
    "2026-11-28 20:30:05 IST" in ``tz_name`` (a user's zone), UTC without one or for a zone
    this host does not know; "-" for no value."""
    if value is None:
        return "-"
    tz = (zone_or_none(tz_name) if tz_name else None) or UTC
    return f"{value.astimezone(tz):%Y-%m-%d %H:%M:%S %Z}"


def admin_time(value: datetime | None, tz_name: str | None = None) -> SafeString | str:
    """admin_datetime in a <time> element whose tooltip names the zone and gives UTC, so a
    reader knows which clock an abbreviation such as "IST" or "-03" is."""
    if value is None:
        return "-"
    shown = admin_datetime(value, tz_name)
    utc = admin_datetime(value)
    zone = tz_name if tz_name and zone_or_none(tz_name) else "UTC"
    title = utc if zone == "UTC" else f"{zone}; {utc}"
    return format_html(
        '<time class="admin-time" datetime="{}" title="{}">{}</time>',
        value.astimezone(UTC).isoformat(),
        title,
        shown,
    )
