"""The small interface every call provider implements, and the errors it may raise."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from calls.logsafe import redact_phones


class ProviderError(Exception):
    """The provider did not place the call.

    Its text is safe to log: phone numbers in it (a provider's message often quotes the
    number, with or without "+") are masked when it is made, so the call's error, our log
    lines and RQ's traceback of a job that re-raises it never hold a whole number.
    """

    def __init__(self, message: object = "", *details: object) -> None:
        super().__init__(*(redact_phones(str(part)) for part in (message, *details)))


class ProviderTransientError(ProviderError):
    """Worth trying again soon: connection error, timeout, 5xx, 429, unreadable answer."""


class ProviderPermanentError(ProviderError):
    """Trying again will not help (4xx: bad number, bad key); the message is the provider's."""


class WebhookPayloadError(ValueError):
    """A webhook body that cannot be understood; the message is safe to return to the caller."""


@dataclass(frozen=True)
class PlaceCallRequest:
    call_id: int
    user_id: int
    to_number: str
    agent_id: str
    name: str

    def metadata(self) -> dict[str, str]:
        """What the provider echoes back in its webhooks, so we can find our call."""
        return {"call_id": str(self.call_id), "user_id": str(self.user_id), "name": self.name}


@dataclass(frozen=True)
class PlacedCall:
    provider_call_id: str
    raw: dict[str, Any]


@dataclass(frozen=True)
class CallEvent:
    """A provider's status report, normalised: ``status`` is one of CallStatus' values."""

    provider_call_id: str
    status: str
    our_call_id: int | None = None
    transcript: str = ""
    recording_url: str = ""
    duration_seconds: int | None = None
    error_message: str = ""
    occurred_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict)


class CallProvider(Protocol):
    name: str

    def place_call(self, request: PlaceCallRequest) -> PlacedCall:
        """Ask the provider to dial; raise ProviderTransientError or ProviderPermanentError."""

    def verify_webhook_signature(self, *, body: bytes, headers: Mapping[str, str]) -> bool:
        """True when the request really comes from the provider."""

    def parse_webhook(self, payload: Any) -> CallEvent:
        """Turn a decoded webhook body into a CallEvent; raise WebhookPayloadError if bad."""
