"""A stand-in provider for demos and the first run: no account, no network beyond ourselves.

It answers as CallKaro documents (``{"status": "done", "call_sid": …}``) and, a few seconds
later, posts CallKaro's real ``call_ended`` envelope, signed, to our own
``/api/webhooks/simulator``, so the first run goes down the same parsing path as production
(docs/providers.md).
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Mapping
from datetime import timedelta
from urllib.parse import urlencode

import requests
from django.conf import settings
from django.utils import timezone

from .base import PlaceCallRequest, PlacedCall
from .callkaro import CallKaroWebhooks, sign_body

# The outcome names of SIMULATOR_OUTCOMES -> the hangup_reason CallKaro would send.
HANGUP_REASON_OF = {
    "completed": "CLIENT_INITIATED",
    "no_answer": "USER_UNAVAILABLE",
    "voicemail": "VOICEMAIL_DETECTED",
    "busy": "USER_REJECTED",
    "failed": "USER_UNRESPONSIVE",
}
TRANSCRIPT = "Agent: Hi, this is your daily check-in. User: Going well, thanks!"


def parse_outcome_mix(spec: str) -> list[tuple[str, int]]:
    """'completed:70,no_answer:15' -> [('completed', 70), ('no_answer', 15)]."""
    mix = []
    for part in spec.split(","):
        status, _, weight = part.strip().partition(":")
        if status not in HANGUP_REASON_OF or not weight.isdigit():
            raise ValueError(
                f"bad entry {part.strip()!r}; expected status:weight, "
                f"with a status of {', '.join(HANGUP_REASON_OF)}"
            )
        mix.append((status, int(weight)))
    if not any(weight for _, weight in mix):
        raise ValueError("every weight is zero")
    return mix


def _attempt_of(call_id: int) -> int:
    """Our call's attempt (1 for a manual call): the request does not carry it, and only
    scripted numbers need it. A stand-in provider may read our table; a real one cannot."""
    from django.db import connection

    from calls.models import Call

    try:
        call = Call.objects.filter(pk=call_id).values("attempt", "manual").first()
    finally:
        # Placement dials on a thread pool whose threads never close a connection they
        # opened: this one would stay open for the life of the pool.
        if threading.current_thread() is not threading.main_thread():
            connection.close()
    if call is None or call["manual"]:
        return 1
    return call["attempt"]


class SimulatorProvider(CallKaroWebhooks):
    name = "simulator"

    def __init__(
        self,
        *,
        webhook_url: str,
        webhook_secret: str,
        webhook_token: str,
        delay_seconds: int,
        outcomes: str,
        script: Mapping[str, tuple[str, ...]] | None = None,
    ):
        super().__init__(webhook_secret=webhook_secret, webhook_token=webhook_token)
        self.webhook_url = webhook_url
        self.delay = timedelta(seconds=delay_seconds)
        self.outcomes = parse_outcome_mix(outcomes)
        self.script = dict(script or {})

    @classmethod
    def from_settings(cls) -> SimulatorProvider:
        return cls(
            webhook_url=settings.SIMULATOR_WEBHOOK_URL,
            webhook_secret=settings.CALLKARO_WEBHOOK_SECRET,
            webhook_token=settings.CALLKARO_WEBHOOK_TOKEN,
            delay_seconds=settings.SIMULATOR_DELAY_SECONDS,
            outcomes=settings.SIMULATOR_OUTCOMES,
            script=settings.SIMULATOR_SCRIPT,
        )

    def pick_outcome(self, request: PlaceCallRequest | None = None) -> str:
        """The scripted outcome of this call's attempt for a number in SIMULATOR_SCRIPT (the
        last one once the script runs out), else one drawn from the mix."""
        scripted = self.script.get(request.to_number) if request is not None else None
        if scripted:
            return scripted[min(_attempt_of(request.call_id), len(scripted)) - 1]
        statuses, weights = zip(*self.outcomes, strict=True)
        return random.choices(statuses, weights=weights)[0]  # noqa: S311 - not security

    def place_call(self, request: PlaceCallRequest) -> PlacedCall:
        from calls.queues import SIMULATOR_WEBHOOK_JOB, enqueue_in

        call_sid = f"sim-{uuid.uuid4().hex[:16]}"
        outcome = self.pick_outcome(request)
        answered = outcome == "completed"
        ended = timezone.localtime(timezone.now() + self.delay)
        # https://docs.callkaro.ai/webhook/call-ended: numbers without "+", time without zone.
        payload = {
            "event": "call_ended",
            "data": {
                "callSid": call_sid,
                "name": "outbound-api",
                "agent": request.agent_id,
                "from": "910000000000",
                "to": request.to_number.lstrip("+"),
                "recordingUrl": f"https://recordings.example.invalid/{call_sid}.mp3" if answered else "",
                "call_duration": random.randint(30, 240) if answered else 0,  # noqa: S311
                "time": ended.strftime("%Y-%m-%d %H:%M:%S"),
                "transcription": TRANSCRIPT if answered else "",
                "hangup_reason": HANGUP_REASON_OF[outcome],
                "call_metadata": request.metadata(),
                "try_count": 0,
                "post_call": {"mood": "good"} if answered else {},
                "disposition_reason": "Daily check-in done" if answered else "",
                "conversion_status": answered,
                "next_call_scheduled": False,
            },
        }
        enqueue_in(self.delay, SIMULATOR_WEBHOOK_JOB, payload)
        return PlacedCall(
            provider_call_id=call_sid,
            raw={"status": "done", "message": "Call queued successfully (simulated)", "call_sid": call_sid},
        )

    def send_webhook(self, payload: dict) -> int:
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if self.webhook_secret:
            headers["X-Callkaro-Signature"] = sign_body(body, self.webhook_secret)
        url = self.webhook_url
        if self.webhook_token:
            url += ("&" if "?" in url else "?") + urlencode({"token": self.webhook_token})
        response = requests.post(url, data=body, headers=headers, timeout=(3, 10))
        return response.status_code
