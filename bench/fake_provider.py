"""Fake providers for the benchmarks, on 127.0.0.1 only; the port is printed on stdout.

* ``--mode callkaro`` (the default): answers POST /call/outbound after a fixed delay.
* ``--mode vapi-live``: Vapi's ``POST /call`` with live calls. Each accepted call is live
  for ``--hold`` seconds from the moment its request arrives; beyond ``--max-live`` live
  calls a request is refused as Vapi does (HTTP 400 ``{"error": "Over Concurrency Limit"}``,
  tests/fixtures/vapi/error_400_concurrency_legacy.json, which the Vapi adapter takes for a
  ProviderCapacityError). An accepted call is answered 201 after ``--delay`` (the call object,
  tests/fixtures/vapi/create_call_response.json's shape) and, when its hold ends, Vapi's
  end-of-call-report (endedReason ``customer-ended-call``, so the call completes) is posted
  to ``--webhook-url`` with ``X-Vapi-Secret: --webhook-secret``, as calls/providers/vapi.py
  authenticates it. It samples the number of live calls every 50 ms and records every
  accept and refusal: ``GET /_stats`` returns them as JSON, ``POST /_reset`` clears them.
* ``--mode callkaro-live``: CallKaro's ``POST /call/outbound`` answered with its documented
  success (tests/fixtures/callkaro/outbound_response_success.json) after ``--delay``, no cap;
  when the call's hold ends, CallKaro's ``call_ended`` webhook
  (tests/fixtures/callkaro/webhook_call_ended.json's shape) is posted to ``--webhook-url``
  (which carries ``?token=``, as CallKaro's dashboard URL does).

In both live modes ``--outcomes`` (``completed:70,no_answer:15,busy:8,voicemail:7``) draws each
call's outcome from a fixed mix, seeded by ``--seed`` and the call's own id (so a run repeats
whatever order the requests arrive in): the Vapi ``endedReason`` or CallKaro ``hangup_reason``
that means it. An answered call is held ``--hold`` seconds, an unanswered one ``--ring``.

Raw asyncio, HTTP/1.1 keep-alive, one coroutine per connection: holds hundreds of
concurrent connections on one core, where a thread-per-connection server would spend the
benchmark's CPU on context switches.

    python bench/fake_provider.py --delay 0.2 [--port 0]
    python bench/fake_provider.py --mode vapi-live --hold 2 --max-live 50 --delay 0.05 \
        --webhook-url http://127.0.0.1:8000/api/webhooks/vapi --webhook-secret ...
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import re
import signal
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024
SAMPLE_SECONDS = 0.05
# Samples kept at most (20 a second: well over an hour).
MAX_SAMPLES = 100_000
WEBHOOK_CONCURRENCY = 8
WEBHOOK_TRIES = 3
FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
OUTCOMES = ("completed", "no_answer", "busy", "voicemail")
# Each outcome as the provider says it (calls/providers/vapi.py and callkaro.py map them back).
VAPI_ENDED_REASONS = {
    "completed": "customer-ended-call",
    "no_answer": "customer-did-not-answer",
    "busy": "customer-busy",
    "voicemail": "voicemail",
}
CALLKARO_HANGUP_REASONS = {
    "completed": "CLIENT_INITIATED",
    "no_answer": "USER_UNAVAILABLE",
    "busy": "USER_REJECTED",
    "voicemail": "VOICEMAIL_DETECTED",
}
VAPI_CALL_NAME = re.compile(r"relevel call (\d+)")


def parse_outcomes(text: str) -> list[tuple[str, int]]:
    """Parse "completed:70,no_answer:15" into [("completed", 70), ("no_answer", 15)]."""
    mix = []
    for part in filter(None, (item.strip() for item in text.split(","))):
        name, _, weight = part.partition(":")
        if name not in OUTCOMES or not weight.isdigit():
            raise ValueError(f"--outcomes: {part!r} is not outcome:weight with outcome in {OUTCOMES}")
        mix.append((name, int(weight)))
    return mix


class OutcomeMix:
    """Each call's outcome, drawn from the mix by a generator seeded with --seed and the call's id."""

    def __init__(self, text: str, seed: int) -> None:
        self.mix = parse_outcomes(text) or [("completed", 1)]
        self.seed = seed
        self.drawn: dict[str, int] = dict.fromkeys(OUTCOMES, 0)

    def draw(self, key: str) -> str:
        names, weights = zip(*self.mix, strict=True)
        outcome = random.Random(f"{self.seed}:{key}").choices(names, weights=weights)[0]
        self.drawn[outcome] += 1
        return outcome


def _response(status: str, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CallKaroAnswers:
    """The original fake: every request is a placed CallKaro call."""

    def __init__(self, *, delay: float) -> None:
        self.delay = delay
        self.counter = itertools.count(1)

    async def answer(self, method: str, path: str, body: bytes) -> bytes:
        await asyncio.sleep(self.delay)
        number = next(self.counter)
        payload = {"status": "success", "message": "Call initiated successfully", "call_id": f"ck-{number}"}
        return _response("200 OK", json.dumps(payload).encode())


class VapiLiveCalls:
    """Vapi with a live-call limit, holding each call for ``hold`` seconds (module doc)."""

    def __init__(
        self,
        *,
        delay: float,
        hold: float,
        max_live: int,
        webhook_url: str,
        webhook_secret: str,
        outcomes: str = "",
        seed: int = 21,
        ring: float | None = None,
    ) -> None:
        self.delay, self.hold, self.max_live = delay, hold, max_live
        self.ring = hold if ring is None else ring
        self.webhook = urlsplit(webhook_url)
        self.webhook_secret = webhook_secret
        self.outcomes = OutcomeMix(outcomes, seed)
        self.live = 0
        self.senders = asyncio.Semaphore(WEBHOOK_CONCURRENCY)
        self.reset()

    def reset(self) -> None:
        self.samples: list[tuple[float, int]] = []
        self.accepts: list[tuple[float, str]] = []  # (when, the call's name: "relevel call <id>")
        self.refusals: list[float] = []
        self.max_seen = self.live
        self.webhooks_sent = self.webhooks_failed = 0

    async def sample(self) -> None:
        while True:
            if len(self.samples) < MAX_SAMPLES:
                self.samples.append((time.time(), self.live))
            await asyncio.sleep(SAMPLE_SECONDS)

    def stats(self) -> dict:
        return {
            "max_live_setting": self.max_live,
            "max_live": self.max_seen,
            "live": self.live,
            "samples": self.samples,
            "accepts": self.accepts,
            "refusals": self.refusals,
            "webhooks_sent": self.webhooks_sent,
            "webhooks_failed": self.webhooks_failed,
            "outcomes": self.outcomes.drawn,
        }

    async def answer(self, method: str, path: str, body: bytes) -> bytes:
        if method == "GET" and path == "/_stats":
            return _response("200 OK", json.dumps(self.stats()).encode())
        if method == "POST" and path == "/_reset":
            self.reset()
            return _response("200 OK", b"{}")
        if method != "POST" or path != "/call":
            return _response("404 Not Found", b'{"message": "Cannot find this route"}')
        arrived = time.time()
        if self.live >= self.max_live:
            self.refusals.append(arrived)
            await asyncio.sleep(self.delay)
            return _response("400 Bad Request", b'{"error": "Over Concurrency Limit"}')
        self.live += 1
        self.max_seen = max(self.max_seen, self.live)
        request = json.loads(body or b"{}")
        call = {
            "id": str(uuid.uuid4()),
            "orgId": "00000000-0000-4000-8000-000000000000",
            "type": "outboundPhoneCall",
            "status": "queued",
            "createdAt": _iso(arrived),
            "updatedAt": _iso(arrived),
            "cost": 0,
            "assistantId": request.get("assistantId"),
            "phoneNumberId": request.get("phoneNumberId"),
            "name": request.get("name"),
            "customer": request.get("customer"),
            "assistantOverrides": request.get("assistantOverrides"),
        }
        self.accepts.append((arrived, str(request.get("name"))))
        match = VAPI_CALL_NAME.fullmatch(str(request.get("name")))
        outcome = self.outcomes.draw(match.group(1) if match else call["id"])
        hold = self.hold if outcome == "completed" else self.ring
        asyncio.get_running_loop().call_later(hold, self._end, call, arrived, outcome, hold)
        await asyncio.sleep(self.delay)
        limits = {
            "concurrencyBlocked": False,
            "concurrencyLimit": self.max_live,
            "remainingConcurrentCalls": max(0, self.max_live - self.live),
        }
        return _response("201 Created", json.dumps({"subscriptionLimits": limits, **call}).encode())

    def _end(self, call: dict, arrived: float, outcome: str = "completed", hold: float | None = None) -> None:
        self.live -= 1
        ended = arrived + (self.hold if hold is None else hold)
        reason = VAPI_ENDED_REASONS[outcome]
        answered = outcome == "completed"
        report = {
            "message": {
                "type": "end-of-call-report",
                "endedReason": reason,
                "timestamp": int(ended * 1000),
                "startedAt": _iso(arrived),
                "endedAt": _iso(ended),
                "cost": 0.01,
                "customer": call["customer"],
                "analysis": {"summary": ""},
                "artifact": {"transcript": "AI: Hello. User: Hi." if answered else "", "messages": []},
                "call": {**call, "status": "ended", "endedReason": reason},
            }
        }
        asyncio.get_running_loop().create_task(self._post(json.dumps(report).encode()))

    def _auth_header(self) -> str:
        return f"X-Vapi-Secret: {self.webhook_secret}\r\n"

    async def _post(self, body: bytes) -> None:
        host, port = self.webhook.hostname or "127.0.0.1", self.webhook.port or 80
        target = (self.webhook.path or "/") + (f"?{self.webhook.query}" if self.webhook.query else "")
        head = (
            f"POST {target} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{self._auth_header()}Connection: close\r\n\r\n"
        ).encode()
        async with self.senders:
            for attempt in range(WEBHOOK_TRIES):
                try:
                    reader, writer = await asyncio.open_connection(host, port)
                    writer.write(head + body)
                    await writer.drain()
                    answer = await asyncio.wait_for(reader.read(), timeout=30)
                    writer.close()
                    if answer.startswith(b"HTTP/1.1 200") or answer.startswith(b"HTTP/1.0 200"):
                        self.webhooks_sent += 1
                        return
                except (TimeoutError, OSError):
                    pass
                await asyncio.sleep(0.5 * (attempt + 1))
        self.webhooks_failed += 1


class CallKaroLiveCalls(VapiLiveCalls):
    """CallKaro with live calls and its call_ended webhook (module doc), uncapped by default."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.template = json.loads((FIXTURES / "callkaro" / "webhook_call_ended.json").read_text())
        self.counter = itertools.count(1)

    def _auth_header(self) -> str:
        return ""  # the token is in the webhook URL's query

    async def answer(self, method: str, path: str, body: bytes) -> bytes:
        if method == "GET" and path == "/_stats":
            return _response("200 OK", json.dumps(self.stats()).encode())
        if method == "POST" and path == "/_reset":
            self.reset()
            return _response("200 OK", b"{}")
        if method != "POST" or path != "/call/outbound":
            return _response("404 Not Found", b'{"message": "Cannot find this route"}')
        arrived = time.time()
        request = json.loads(body or b"{}")
        metadata = request.get("metadata") if isinstance(request.get("metadata"), dict) else {}
        sid = f"ck-{next(self.counter)}-{uuid.uuid4().hex[:12]}"
        outcome = self.outcomes.draw(str(metadata.get("call_id", sid)))
        hold = self.hold if outcome == "completed" else self.ring
        self.live += 1
        self.max_seen = max(self.max_seen, self.live)
        self.accepts.append((arrived, str(metadata.get("call_id"))))
        call = {
            "sid": sid,
            "to": request.get("to_number"),
            "agent": request.get("agent_id"),
            "metadata": metadata,
        }
        asyncio.get_running_loop().call_later(hold, self._end, call, arrived, outcome, hold)
        await asyncio.sleep(self.delay)
        answer = {"status": "done", "message": "Call queued successfully", "call_sid": sid}
        return _response("200 OK", json.dumps(answer).encode())

    def _end(self, call: dict, arrived: float, outcome: str = "completed", hold: float | None = None) -> None:
        self.live -= 1
        answered = outcome == "completed"
        data = {
            **self.template["data"],
            "callSid": call["sid"],
            "agent": call["agent"],
            "to": str(call["to"] or "").lstrip("+"),
            "recordingUrl": f"https://example.com/{call['sid']}.mp3" if answered else "",
            "call_duration": round(hold or 0) if answered else 0,
            "time": datetime.fromtimestamp(arrived + (hold or 0), UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "transcription": (
                "Agent: Hello, how was your day? User: Good, I went for a walk." if answered else ""
            ),
            "hangup_reason": CALLKARO_HANGUP_REASONS[outcome],
            "call_metadata": call["metadata"],
            "post_call": self.template["data"]["post_call"] if answered else {},
            "post_call_detail": self.template["data"]["post_call_detail"] if answered else {},
            "functions_called": [],
            "disposition_reason": "" if answered else CALLKARO_HANGUP_REASONS[outcome],
            "conversion_status": answered,
        }
        body = json.dumps({"event": "call_ended", "data": data}).encode()
        asyncio.get_running_loop().create_task(self._post(body))


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, answers) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            if len(head) > MAX_HEADER_BYTES:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, _, rest = lines[0].partition(" ")
            path = rest.partition(" ")[0].partition("?")[0]
            length = 0
            close = False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value.strip() or 0)
                elif name == "connection" and value.strip().lower() == "close":
                    close = True
            if length > MAX_BODY_BYTES:
                return
            body = await reader.readexactly(length) if length else b""
            writer.write(await answers.answer(method, path, body))
            await writer.drain()
            if close:
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def _serve(args: argparse.Namespace) -> None:
    if args.mode in ("vapi-live", "callkaro-live"):
        live = VapiLiveCalls if args.mode == "vapi-live" else CallKaroLiveCalls
        answers = live(
            delay=args.delay,
            hold=args.hold,
            max_live=args.max_live,
            webhook_url=args.webhook_url,
            webhook_secret=args.webhook_secret,
            outcomes=args.outcomes,
            seed=args.seed,
            ring=args.ring,
        )
        sampler = asyncio.get_running_loop().create_task(answers.sample())
    else:
        answers, sampler = CallKaroAnswers(delay=args.delay), None
    server = await asyncio.start_server(
        lambda r, w: _handle(r, w, answers=answers),
        host="127.0.0.1",
        port=args.port,
        backlog=args.backlog,
        limit=MAX_HEADER_BYTES * 2,
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    if sampler is not None:
        sampler.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.2, help="seconds before each answer")
    parser.add_argument("--backlog", type=int, default=2048)
    parser.add_argument("--mode", choices=("callkaro", "vapi-live", "callkaro-live"), default="callkaro")
    parser.add_argument("--hold", type=float, default=2.0, help="vapi-live: seconds each call is live")
    parser.add_argument("--max-live", type=int, default=10, help="vapi-live: live calls before refusing")
    parser.add_argument("--webhook-url", default="", help="vapi-live: where end-of-call reports go")
    parser.add_argument("--webhook-secret", default="", help="vapi-live: sent as X-Vapi-Secret")
    parser.add_argument(
        "--outcomes", default="", help="live modes: outcome:weight,... (default: all completed)"
    )
    parser.add_argument("--seed", type=int, default=21, help="live modes: seed of the outcome draws")
    parser.add_argument(
        "--ring", type=float, default=None, help="live modes: seconds an unanswered call lasts"
    )
    args = parser.parse_args()
    if args.mode in ("vapi-live", "callkaro-live") and not args.webhook_url:
        parser.error(f"--mode {args.mode} needs --webhook-url")
    if args.mode == "callkaro-live" and args.max_live == parser.get_default("max_live"):
        args.max_live = 10**9  # uncapped
    try:
        parse_outcomes(args.outcomes)
    except ValueError as exc:
        parser.error(str(exc))
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
