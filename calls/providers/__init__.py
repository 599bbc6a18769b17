"""Call providers behind one interface: ``settings.CALL_PROVIDER`` places new calls, and
each provider's webhook (``/api/webhooks/<name>``) settles the calls that provider placed,
so switching CALL_PROVIDER never orphans a call in flight."""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from .base import CallProvider

PROVIDER_CLASSES = {
    "callkaro": "calls.providers.callkaro.CallKaroProvider",
    "vapi": "calls.providers.vapi.VapiProvider",
    "retell": "calls.providers.retell.RetellProvider",
    "simulator": "calls.providers.simulator.SimulatorProvider",
}
# The original design's webhook URL (/api/webhooks/call): CallKaro's format, for the calls
# CallKaro or the simulator placed.
LEGACY_WEBHOOK_PROVIDERS = ("callkaro", "simulator")


@cache
def provider_named(name: str) -> CallProvider:
    """One instance (and one HTTP session) per process and provider."""
    try:
        path = PROVIDER_CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown call provider {name!r}") from None
    return import_string(path).from_settings()


def get_provider() -> CallProvider:
    """The provider that places new calls."""
    return provider_named(settings.CALL_PROVIDER)


def default_agent_id(provider: str) -> str:
    """The agent (CallKaro), assistant (Vapi) or agent (Retell) that calls, by default."""
    return {
        "callkaro": settings.CALLKARO_AGENT_ID,
        "simulator": settings.CALLKARO_AGENT_ID or "simulator",
        "vapi": settings.VAPI_ASSISTANT_ID,
        "retell": settings.RETELL_AGENT_ID,
    }[provider]


def reset_provider_cache() -> None:
    """For tests that change provider settings."""
    provider_named.cache_clear()
