"""Twilio's REST API and an SMTP server on 127.0.0.1: the notifications' outside services,
faked at their HTTP and SMTP boundaries and nowhere else."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs

from tests.fakes import free_port, loopback_server, send_json

FIXTURES = Path(__file__).parent / "fixtures" / "twilio"


def twilio_fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


class FakeTwilio:
    """Answers POST /2010-04-01/Accounts/<sid>/Messages.json as Twilio documents (201 and
    the Message resource); ``respond_with`` scripts other answers (the last repeats)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.answers: list[tuple[int, dict]] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                form = {key: values[0] for key, values in parse_qs(raw.decode()).items()}
                with fake._lock:
                    fake.requests.append({"path": self.path, "headers": dict(self.headers), "form": form})
                    number = len(fake.requests)
                    if fake.answers:
                        status, body = fake.answers[0] if len(fake.answers) == 1 else fake.answers.pop(0)
                    else:
                        body = twilio_fixture("create_message_response.json")
                        body.update(
                            sid=f"SM{number:032x}",
                            to=form.get("To"),
                            body=form.get("Body"),
                            messaging_service_sid=form.get("MessagingServiceSid"),
                        )
                        body["from"] = form.get("From")
                        status = 201
                payload = json.dumps(body).encode()
                send_json(self, status, payload)

        self.server, self.url, self._thread = loopback_server(Handler)

    def respond_with(self, *answers: tuple[int, dict]) -> None:
        self.answers = list(answers)

    def start(self) -> FakeTwilio:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeSmtp:
    """An SMTP server on 127.0.0.1 (aiosmtpd) that keeps every message it is given."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list = []
        # Recipients the server refuses with 550 at RCPT TO.
        self.refuse: set[str] = set()
        fake = self

        class Handler:
            async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
                if address in fake.refuse:
                    return "550 5.1.1 <" + address + ">: Recipient address rejected"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server, session, envelope):
                fake.messages.append(envelope)
                return "250 Message accepted for delivery"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self) -> FakeSmtp:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
