"""System checks for settings that only matter in production (`manage.py check --deploy`)."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.security, deploy=True)
def check_webhook_secret(app_configs=None, **kwargs) -> list[Error]:
    """Without a webhook secret and with DEBUG off, every provider webhook is refused."""
    if settings.CALLKARO_WEBHOOK_SECRET:
        return []
    return [
        Error(
            "CALLKARO_WEBHOOK_SECRET is not set: with DEBUG off, /api/webhooks/call refuses every "
            "status callback (503), so no call outcome is recorded and no retry is scheduled.",
            hint="Set CALLKARO_WEBHOOK_SECRET to the signing secret configured in the provider's dashboard.",
            id="relevel.E001",
        )
    ]
