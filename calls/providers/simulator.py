"""A stand-in provider for demos and the first run: no account, no network beyond ourselves.

It answers at once with a provider call id and, a few seconds later, posts a correctly
signed CallKaro-style webhook with a random outcome to our own endpoint, so the whole loop
(ringing, outcome, retries) runs on one machine.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import timedelta

import requests
from django.conf import settings
from django.utils import timezone

from .base import PlaceCallRequest, PlacedCall
from .callkaro import CallKaroWebhooks, sign_body

TRANSCRIPTS = {
    "completed": "Agent: Hi, this is your daily check-in. User: Going well, thanks!",
    "failed": "",
    "no_answer": "",
    "busy": "",
}


def parse_outcome_mix(spec: str) -> list[tuple[str, int]]:
    """'completed:70,no_answer:15' -> [('completed', 70), ('no_answer', 15)]."""
    mix = []
    for part in spec.split(","):
        status, _, weight = part.strip().partition(":")
        if status not in TRANSCRIPTS or not weight.isdigit():
            raise ValueError(
                f"bad entry {part.strip()!r}; expected status:weight, "
                f"with a status of {', '.join(TRANSCRIPTS)}"
            )
        mix.append((status, int(weight)))
    if not any(weight for _, weight in mix):
        raise ValueError("every weight is zero")
    return mix


class SimulatorProvider(CallKaroWebhooks):
    name = "simulator"

    def __init__(self, *, webhook_url: str, webhook_secret: str, delay_seconds: int, outcomes: str):
        super().__init__(webhook_secret=webhook_secret)
        self.webhook_url = webhook_url
        self.delay = timedelta(seconds=delay_seconds)
        self.outcomes = parse_outcome_mix(outcomes)

    @classmethod
    def from_settings(cls) -> SimulatorProvider:
        return cls(
            webhook_url=settings.SIMULATOR_WEBHOOK_URL,
            webhook_secret=settings.CALLKARO_WEBHOOK_SECRET,
            delay_seconds=settings.SIMULATOR_DELAY_SECONDS,
            outcomes=settings.SIMULATOR_OUTCOMES,
        )

    def pick_outcome(self) -> str:
        statuses, weights = zip(*self.outcomes, strict=True)
        return random.choices(statuses, weights=weights)[0]  # noqa: S311 - not security

    def place_call(self, request: PlaceCallRequest) -> PlacedCall:
        from calls.queues import SIMULATOR_WEBHOOK_JOB, enqueue_in

        provider_call_id = f"sim-{uuid.uuid4().hex[:16]}"
        outcome = self.pick_outcome()
        payload = {
            "call_id": provider_call_id,
            "status": outcome,
            "metadata": request.metadata(),
            "transcript": TRANSCRIPTS[outcome],
            "recording_url": (
                f"https://recordings.example.invalid/{provider_call_id}.mp3" if outcome == "completed" else ""
            ),
            "duration": random.randint(30, 240) if outcome == "completed" else 0,  # noqa: S311
            "timestamp": (timezone.now() + self.delay).isoformat(),
            "error_message": "simulated carrier failure" if outcome == "failed" else "",
        }
        enqueue_in(self.delay, SIMULATOR_WEBHOOK_JOB, payload)
        return PlacedCall(
            provider_call_id=provider_call_id,
            raw={
                "status": "success",
                "message": "Call initiated successfully (simulated)",
                "call_id": provider_call_id,
            },
        )

    def send_webhook(self, payload: dict) -> int:
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if self.webhook_secret:
            headers["X-Callkaro-Signature"] = sign_body(body, self.webhook_secret)
        response = requests.post(self.webhook_url, data=body, headers=headers, timeout=(3, 10))
        return response.status_code
