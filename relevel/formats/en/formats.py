"""relevel's one date format on every page (the admin's dates, a call's local date), the
ISO order relevel's own times use ("2026-11-28 20:30:05 IST", calls/admin_display.py),
instead of English's "Nov. 28, 2026". Anything not named here is Django's English format."""

DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
DATETIME_FORMAT = "Y-m-d H:i:s"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
