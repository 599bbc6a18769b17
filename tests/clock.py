"""For tests that run at the real time of day (real workers, subprocesses): a user whose
local clock shows about noon, so that a retry 30 or 60 minutes later is still on the
call's local day, whenever the suite runs (a retry past its call's local day is not made)."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo


def midday_zone(instant: datetime) -> str:
    """A fixed-offset zone whose clock shows between 12:00 and 13:00 at ``instant``."""
    offset = 12 - instant.astimezone(UTC).hour  # -11 .. +12 hours from UTC
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"  # POSIX signs: Etc/GMT-5 is UTC+5


def midday_user_fields(instant: datetime) -> dict:
    """``local_tz`` and ``call_time`` of a user whose slot is at ``instant`` (to the minute)."""
    zone = midday_zone(instant)
    local = instant.astimezone(ZoneInfo(zone))
    return {"local_tz": zone, "call_time": time(local.hour, local.minute)}
