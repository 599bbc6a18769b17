"""When a message may go out: inside the call policy's calling hours on the user's own wall
clock (calls.policy), so that nobody is texted or mailed at night in their zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from calls.policy import Policy


def hours_open_at(*, now: datetime, tz: ZoneInfo, policy: Policy) -> datetime:
    """``now`` if the calling hours allow it in ``tz``, else the next instant they open.

    The opening is the hours' start on the user's wall clock, today or tomorrow (an end
    before the start runs past midnight, so "outside" is the stretch between end and
    start). A start that falls in a spring-forward gap (02:30 on the night clocks jump from
    02:00 to 03:00) is read with the offset before the gap, as zoneinfo does for fold=0,
    which is the instant just after the jump: the first wall-clock minute that exists."""
    if policy.allows_hour(now, tz):
        return now
    assert policy.calling_hours is not None  # allows_hour is True without hours
    start, _ = policy.calling_hours
    today = now.astimezone(tz).date()
    for days in range(3):
        candidate = datetime.combine(today + timedelta(days=days), start, tzinfo=tz).astimezone(UTC)
        if candidate > now and policy.allows_hour(candidate, tz):
            return candidate
    # Not reachable with a start inside the hours; never leave a message without a time.
    return now + timedelta(days=1)
