"""RQ entry points for notifications: thin, take ids, call a service."""

from __future__ import annotations

from calls.jobs import job

from . import services


@job
def send_notification(notification_id: int) -> str:
    return services.notification_send(notification_id=notification_id)


@job
def sweep_notifications() -> dict[str, int]:
    """The cron's sweep (NOTIFY_SWEEP_CRON): messages whose job Redis lost, and sends a
    dead worker left unfinished."""
    return services.notifications_sweep()
