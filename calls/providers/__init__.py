"""Call providers behind one interface, chosen by settings.CALL_PROVIDER."""

from __future__ import annotations

from functools import cache

from django.conf import settings

from .base import CallProvider


@cache
def _provider_named(name: str) -> CallProvider:
    if name == "callkaro":
        from .callkaro import CallKaroProvider

        return CallKaroProvider.from_settings()
    if name == "simulator":
        from .simulator import SimulatorProvider

        return SimulatorProvider.from_settings()
    raise ValueError(f"unknown CALL_PROVIDER {name!r}")


def get_provider() -> CallProvider:
    """The configured provider; one instance (and one HTTP session) per process."""
    return _provider_named(settings.CALL_PROVIDER)


def reset_provider_cache() -> None:
    """For tests that change provider settings."""
    _provider_named.cache_clear()
