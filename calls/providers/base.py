"""The small interface every call provider implements, and the errors it may raise.

Placing a call is one HTTP request whose failure means one of three things, and the engine
treats each differently (docs/scheduling.md, "Never a blind re-dial"):

* ``ProviderNotSentError``: the request cannot have been acted on (connection refused, DNS,
  connect timeout, 429, 503). Sent again after a short backoff.
* ``ProviderMaybePlacedError``: the request reached the provider and its answer was lost
  (read timeout, 500/502/504, a 2xx without an id). The provider may be dialing: the call
  becomes ``unconfirmed`` and waits for the webhook; it is never re-sent at once.
* ``ProviderPermanentError``: refused for good (4xx: a bad number, a bad key). No retry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
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


class ProviderNotSentError(ProviderError):
    """Not sent or refused before acting on it: worth sending again soon."""


# The name the engine and older code use for "try again soon".
ProviderTransientError = ProviderNotSentError


class ProviderCapacityError(ProviderNotSentError):
    """The provider refused the call because its live-call capacity is used up."""


class ProviderMaybePlacedError(ProviderError):
    """Sent, and the answer was lost: the provider may have placed it. Never re-sent at once."""


class ProviderPermanentError(ProviderError):
    """Trying again will not help (4xx: bad number, bad key); the message is the provider's."""


class WebhookPayloadError(ValueError):
    """A webhook body that cannot be understood; the message is safe to return to the caller."""


class WebhookIgnored(Exception):
    """A well-formed webhook that is not about a call we track (another event type): answered
    200 with the reason, nothing written."""


class WebhookAuth(Enum):
    OK = "ok"
    DENIED = "denied"
    # No credential configured for this provider: accepted under DEBUG only.
    UNCONFIGURED = "unconfigured"


@dataclass(frozen=True)
class PlaceCallRequest:
    call_id: int
    user_id: int
    to_number: str
    agent_id: str
    name: str
    provider: str = ""
    # The agent's variables for this call (calls.context): the user's context and relevel's
    # memory, flat, string-valued; each provider sends them its documented way.
    variables: Mapping[str, str] = field(default_factory=dict)
    voicemail_message: str = ""
    # The call policy's AI-disclosure line (who calls, and that it is an automated voice);
    # blank when the operator set none. Sent to the agent as the variable "disclosure".
    disclosure: str = ""

    def metadata(self) -> dict[str, str]:
        """What the provider echoes back in its webhooks, so we can find our call."""
        return {"call_id": str(self.call_id), "user_id": str(self.user_id), "name": self.name}


def agent_variables(request: PlaceCallRequest) -> dict[str, str]:
    """The variables every call gives the agent, whatever the provider: today the
    disclosure line. Each provider module puts them where its API takes variables."""
    return {"disclosure": request.disclosure} if request.disclosure else {}


@dataclass(frozen=True)
class PlacedCall:
    provider_call_id: str
    raw: dict[str, Any]


@dataclass(frozen=True)
class CallEvent:
    """A provider's status report, normalised: ``status`` is one of CallStatus' values.

    ``provider_call_id`` may be empty when the event names the call only by our own id
    (metadata). ``retry`` False forbids a retry whatever the status (an invalid number).
    """

    provider_call_id: str
    status: str
    our_call_id: int | None = None
    end_reason: str = ""
    retry: bool = True
    transcript: str = ""
    recording_url: str = ""
    duration_seconds: int | None = None
    error_message: str = ""
    occurred_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    # The payload carries end-of-call data (analysis, cost, transcript): kept and analysed
    # even when it repeats a final status already recorded (Retell's call_analyzed).
    final_report: bool = False


class CallProvider(Protocol):
    name: str

    def place_call(self, request: PlaceCallRequest) -> PlacedCall:
        """Ask the provider to dial; raise one of the ProviderError subclasses."""

    def authenticate_webhook(
        self, *, body: bytes, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> WebhookAuth:
        """Whether the request really comes from the provider."""

    def parse_webhook(self, payload: Any) -> CallEvent:
        """Turn a decoded webhook body into a CallEvent; raise WebhookPayloadError if it is
        malformed, WebhookIgnored if it is not an event about one call's progress."""


# --- Helpers the parsers share ----------------------------------------------------------

MAX_PROVIDER_CALL_ID = 128  # Call.provider_call_id's length
MAX_END_REASON = 128  # Call.end_reason's length
MAX_DURATION_SECONDS = 2**31 - 1  # Call.duration_seconds is a PositiveIntegerField


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def as_int(value: Any) -> int | None:
    """A non-negative integer that fits a database bigint, else None (floats are floored)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = int(float(value)) if isinstance(value, float) else int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if 0 <= number < 2**63 else None


def as_duration(value: Any) -> int | None:
    seconds = as_int(value)
    if seconds is not None and seconds > MAX_DURATION_SECONDS:
        raise WebhookPayloadError("duration is out of range")
    return seconds


def as_provider_call_id(value: Any, *, field_name: str) -> str:
    """The provider's call id as text ("" when absent); a bad one is a WebhookPayloadError."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise WebhookPayloadError(f"{field_name} must be a string")
    text = str(value)
    if len(text) > MAX_PROVIDER_CALL_ID:
        raise WebhookPayloadError(f"{field_name} is longer than {MAX_PROVIDER_CALL_ID} characters")
    return text


def as_iso_datetime(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def our_call_id(metadata: Any) -> int | None:
    """Our call id from the metadata we sent and the provider echoed back."""
    return as_int(metadata.get("call_id")) if isinstance(metadata, dict) else None


# --- End-of-call results ------------------------------------------------------------------


@dataclass(frozen=True)
class ResultFields:
    """What a provider's end-of-call data says about a call, before relevel normalises it
    (calls.results): each provider module's ``parse_result`` fills what its payloads carry
    and leaves the rest empty. ``sentiment`` is positive/neutral/negative or "" (none)."""

    summary: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    sentiment: str = ""
    sentiment_score: float | None = None
    answered_by: str = "unknown"
    user_talk_seconds: float | None = None
    cost_amount: Decimal | None = None
    cost_currency: str = ""
    # [{"role": "agent" | "user", "text": ...}] in the order spoken.
    turns: list[dict[str, str]] = field(default_factory=list)


def as_dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def as_decimal(value: Any) -> Decimal | None:
    """A non-negative finite amount, else None."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() and 0 <= amount < 10**8 else None


# "Agent: Hello. User: Fine, thanks." -> turns; the labels CallKaro, Vapi ("AI:") and our
# simulator write in their plain-text transcripts.
_SPEAKER = re.compile(r"(?:^|(?<=\s))(AI|Agent|Assistant|Bot|User|Customer|Human)\s*:\s*", re.IGNORECASE)
_AGENT_LABELS = {"ai", "agent", "assistant", "bot"}


def turns_from_text(transcript: str) -> list[dict[str, str]]:
    """Turns from a plain-text transcript with speaker labels; one turn of role "unknown"
    when it has none."""
    transcript = transcript.strip()
    if not transcript:
        return []
    parts = _SPEAKER.split(transcript)
    if len(parts) < 3:
        return [{"role": "unknown", "text": transcript}]
    turns = []
    for label, text in zip(parts[1::2], parts[2::2], strict=False):
        text = text.strip()
        if text:
            turns.append({"role": "agent" if label.lower() in _AGENT_LABELS else "user", "text": text})
    return turns
