"""Logging filters that keep the console to what an operator reads (settings.LOGGING).

A first run printed about 14 lines for every one of relevel's: an access line per static
file, RQ's bookkeeping around every job (registry cleaning, "Job OK", how long a result is
kept), the cron's "Enqueued job" every minute, and a 404 for /favicon.ico. relevel's own
lines already say what happened to each tick and call."""

from __future__ import annotations

import logging

from django.conf import settings

# RQ's per-job and periodic INFO lines, by their format string (stable across its releases,
# unlike the text, which carries colours). Its start-up and shut-down lines are kept.
RQ_BOOKKEEPING = frozenset(
    {
        "Worker %s: cleaning registries for queue: %s",
        "Worker %s: cleaning group registries",
        "Worker %s: %s: %s (%s)",  # a job taken, and "Job OK"
        "Worker %s: %s: %s",
        "Successfully completed %s job in %ss on worker %s",
        "Successfully completed job %s in %ss on worker %s",
        "Worker %s: job %s result discarded immediately",
        "Worker %s: job %s result is kept for %s seconds",
    }
)


class QuietRQBookkeepingFilter(logging.Filter):
    """Drops RQ's routine INFO lines (attached to the rq.worker and rq.cron loggers);
    warnings and errors always pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        if record.msg in RQ_BOOKKEEPING:
            return False
        # rq.cron formats its line itself: "Enqueued job schedule_calls to queue ...".
        return not (record.name == "rq.cron" and str(record.msg).startswith("Enqueued job "))


def _quiet_path(path: str) -> bool:
    static = "/" + settings.STATIC_URL.lstrip("/")
    return path.startswith(static) or path == "/favicon.ico"


class QuietStaticRequestsFilter(logging.Filter):
    """Drops the access lines of static files and of /favicon.ico (runserver's
    django.server), and Django's "Not Found: /favicon.ico" (django.request); a static file
    that fails (5xx) still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if record.name == "django.server" and len(args) >= 2:
            request_line, status = str(args[0]), str(args[1])
            parts = request_line.split()
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 else ""
            return not (_quiet_path(path) and not status.startswith("5"))
        if record.name == "django.request" and record.levelno < logging.ERROR and args:
            # "Not Found: /favicon.ico" (Django formats it "%s: %s", the path last).
            return not _quiet_path(str(args[-1]))
        return True
