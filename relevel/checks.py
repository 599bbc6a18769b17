"""System checks for settings that only matter in production (`manage.py check --deploy`)."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, register

# Each provider's webhook credentials: (setting names, one of which must be set).
WEBHOOK_CREDENTIALS = {
    "callkaro": ("CALLKARO_WEBHOOK_TOKEN", "CALLKARO_WEBHOOK_SECRET"),
    "simulator": ("CALLKARO_WEBHOOK_TOKEN", "CALLKARO_WEBHOOK_SECRET"),
    "vapi": ("VAPI_WEBHOOK_SECRET",),
    "retell": ("RETELL_WEBHOOK_API_KEY",),
}


@register(Tags.security, deploy=True)
def check_webhook_secret(app_configs=None, **kwargs) -> list[Error]:
    """Without a webhook credential and with DEBUG off, the provider's webhook is refused."""
    provider = settings.CALL_PROVIDER
    names = WEBHOOK_CREDENTIALS[provider]
    if any(getattr(settings, name) for name in names):
        return []
    return [
        Error(
            f"{' or '.join(names)} is not set: with DEBUG off, /api/webhooks/{provider} refuses every "
            "status callback (503), so no call outcome is recorded and no retry is scheduled.",
            hint="Set it to the value configured in the provider's dashboard (docs/providers.md).",
            id="relevel.E001",
        )
    ]


@register()
def check_simulator_outcomes(app_configs=None, **kwargs) -> list[Error]:
    """A bad outcome mix would only surface at the first simulated call; say so at start-up."""
    if settings.CALL_PROVIDER != "simulator":
        return []
    from calls.providers.simulator import parse_outcome_mix

    try:
        parse_outcome_mix(settings.SIMULATOR_OUTCOMES)
    except ValueError as exc:
        return [
            Error(
                f"SIMULATOR_OUTCOMES is invalid: {exc}",
                hint="Use status:weight pairs such as completed:70,no_answer:15,busy:10,failed:5.",
                id="relevel.E002",
            )
        ]
    return []
