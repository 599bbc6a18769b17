"""nginx in front of gunicorn (deploy/nginx.conf) and gunicorn's access log
(deploy/gunicorn.conf.py): half-sent requests never reach a gunicorn worker, TLS ends at
nginx, and no access line holds a phone number. No Docker engine is needed: the files are
parsed, and run by a real nginx and a real gunicorn when this machine has them."""

from __future__ import annotations

import datetime
import io
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from gunicorn.app.base import Application

from tests.fakes import GunicornServer, LoggedProcess, free_port
from tests.test_deploy_files import command_steps, gunicorn_options

ROOT = Path(__file__).resolve().parent.parent
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
GUNICORN_CONF = ROOT / "deploy" / "gunicorn.conf.py"
SERVICES = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
NUMBERS = ["919876543210", "9876543210", "98765+43210", "98765 43210"]

nginx_binary = shutil.which("nginx") or next(
    (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(path)), None
)
needs_nginx = pytest.mark.skipif(
    nginx_binary is None, reason="nginx is not installed here (apt-get install nginx-light)"
)
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed here")


# --- nginx.conf, parsed -------------------------------------------------------------------


def nginx_blocks(text: str) -> list:
    """nginx's syntax as a tree of (name, args, children); children is None for a directive."""
    tokens = re.findall(r"\"(?:[^\"\\]|\\.)*\"|'[^']*'|[{};]|[^\s{};]+", re.sub(r"#[^\n]*", "", text))
    stack: list[list] = [[]]
    words: list[str] = []
    for token in tokens:
        if token == ";":
            stack[-1].append((words[0], words[1:], None))
            words = []
        elif token == "{":
            block: list = []
            stack[-1].append((words[0], words[1:], block))
            stack.append(block)
            words = []
        elif token == "}":
            stack.pop()
        else:
            words.append(token.strip("\"'"))
    assert len(stack) == 1 and not words, "unbalanced nginx.conf"
    return stack[0]


def directives(block: list, name: str) -> list[list[str]]:
    return [args for directive, args, children in block if directive == name and children is None]


def one(block: list, name: str) -> list[str]:
    [args] = directives(block, name)
    return args


def blocks(block: list, name: str) -> list[tuple[list[str], list]]:
    return [
        (args, children) for directive, args, children in block if directive == name and children is not None
    ]


def seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m)?", value).groups()
    return int(number) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[unit]


def size_bytes(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kKmM]?)", value).groups()
    return int(number) * {"": 1, "k": 1024, "m": 1024 * 1024}[unit.lower()]


CONF = nginx_blocks(NGINX_CONF.read_text())
[(_, HTTP)] = blocks(CONF, "http")
SERVERS = [children for _, children in blocks(HTTP, "server")]


def server_listening(port: str) -> list:
    [server] = [s for s in SERVERS if any(args[0] == port for args in directives(s, "listen"))]
    return server


HTTPS = server_listening("443")
[(_, PROXIED)] = blocks(HTTPS, "location")


def test_compose_publishes_only_nginx_which_mounts_this_config_and_waits_for_web():
    nginx = SERVICES["nginx"]
    assert nginx["image"].startswith("nginx:")
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    assert "./deploy/certs:/etc/nginx/certs:ro" in nginx["volumes"]
    assert sorted(nginx["ports"]) == ["443:443", "80:80"]
    assert nginx["depends_on"] == {"web": {"condition": "service_healthy"}}
    published = [name for name, service in SERVICES.items() if "ports" in service]
    assert published == ["nginx"]


def test_nginx_proxies_to_the_port_gunicorn_binds_in_compose():
    [(args, upstream)] = blocks(HTTP, "upstream")
    assert one(PROXIED, "proxy_pass") == [f"http://{args[0]}"]
    [_, gunicorn] = command_steps(SERVICES["web"]["command"])
    bind = gunicorn_options(gunicorn).bind[0]
    assert one(upstream, "server") == [f"web:{bind.rsplit(':', 1)[1]}"]


def test_nginx_reads_requests_whole_and_drops_slow_or_idle_clients():
    # Both directions buffered: gunicorn never waits on a client.
    assert one(PROXIED, "proxy_request_buffering") == ["on"]
    assert one(PROXIED, "proxy_buffering") == ["on"]
    # A client that stops sending (or reading) is dropped well before gunicorn's 30 s.
    for name in ("client_header_timeout", "client_body_timeout", "send_timeout", "keepalive_timeout"):
        assert 0 < seconds(one(HTTP, name)[0]) <= 15, name
    # Bodies up to Django's own limit pass, so that Django answers the webhook's 413.
    assert size_bytes(one(HTTP, "client_max_body_size")[0]) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    # nginx gives up on gunicorn only after gunicorn's worker timeout.
    assert seconds(one(PROXIED, "proxy_read_timeout")[0]) > 30


def test_nginx_takes_a_large_csv_file_on_the_users_import_page_only():
    [(args, imports)] = blocks(PROXIED, "location")
    assert args == ["=", "/admin/users/user/import/"]
    assert size_bytes(one(imports, "client_max_body_size")[0]) >= 20 * 1024 * 1024
    # The same upstream; the buffering, headers and timeouts are the enclosing location's.
    assert one(imports, "proxy_pass") == one(PROXIED, "proxy_pass")
    assert not directives(imports, "proxy_set_header")


def test_nginx_sets_the_forwarded_headers_django_trusts_itself():
    headers = {args[0].lower(): args[1] for args in directives(PROXIED, "proxy_set_header")}
    # Overwritten with nginx's own values, never passed on from the client: Django trusts
    # this header (SECURE_PROXY_SSL_HEADER, set in compose) to say the request came in on TLS.
    assert headers["x-forwarded-proto"] == "$scheme"
    assert SERVICES["web"]["environment"]["SECURE_PROXY_SSL_HEADER"].lower() == "x-forwarded-proto"
    assert headers["x-forwarded-for"] == "$proxy_add_x_forwarded_for"
    assert headers["host"] == "$host"


def test_nginx_terminates_tls_and_sends_plain_http_there():
    assert "ssl" in one(HTTPS, "listen")
    assert one(HTTPS, "ssl_certificate") == ["/etc/nginx/certs/fullchain.pem"]
    assert one(HTTPS, "ssl_certificate_key") == ["/etc/nginx/certs/privkey.pem"]
    assert one(server_listening("80"), "return") == ["301", "https://$host$request_uri"]


def test_nginx_logs_no_query_string_nor_referrer():
    [(name, *format_parts)] = directives(HTTP, "log_format")
    log_format = " ".join(format_parts)
    assert one(HTTP, "access_log")[1] == name
    for variable in ("$request ", "$request_uri", "$args", "$query_string", "$arg_", "$http_referer"):
        assert variable not in log_format + " ", variable
    assert "$uri" in log_format
    # Its error lines quote whole request lines: only critical ones are written.
    assert one(HTTP, "error_log")[1] == "crit"


# --- nginx, run ---------------------------------------------------------------------------


def self_signed_certificate(directory: Path) -> None:
    directory.mkdir()
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=localhost", "-keyout", str(directory / "privkey.pem")),
            *("-out", str(directory / "fullchain.pem")),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


class Nginx(LoggedProcess):
    """deploy/nginx.conf run by this machine's nginx, on free ports of 127.0.0.1, in front of
    a gunicorn on ``upstream_port``, with a self-signed certificate: only addresses, ports,
    paths and the certificate differ from what compose runs."""

    def __init__(self, *, upstream_port: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="relevel-nginx-"))
        self.http_port, self.https_port = free_port(), free_port()
        self.port = self.https_port  # start() waits for it
        self_signed_certificate(self.dir / "certs")
        temp_paths = "".join(
            f"    {kind}_temp_path {self.dir / kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        text = NGINX_CONF.read_text()
        for old, new in (
            ("server web:8000;", f"server 127.0.0.1:{upstream_port};"),
            ("listen 80 default_server;", f"listen 127.0.0.1:{self.http_port} default_server;"),
            ("listen 443 ssl default_server;", f"listen 127.0.0.1:{self.https_port} ssl default_server;"),
            ("/etc/nginx/certs/", f"{self.dir / 'certs'}/"),
            ("http {\n", "http {\n" + temp_paths),
        ):
            assert old in text, old
            text = text.replace(old, new)
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(text)
        main = f"pid {self.dir / 'nginx.pid'}; daemon off;" + (" user root;" if os.geteuid() == 0 else "")
        self.argv = [nginx_binary, "-p", str(self.dir), "-c", str(self.conf), "-g", main]
        self.process = None

    def test_config(self) -> subprocess.CompletedProcess:
        return subprocess.run([*self.argv, "-t"], capture_output=True, text=True, timeout=30)

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@needs_nginx
@needs_openssl
def test_nginx_accepts_the_config():
    nginx = Nginx(upstream_port=free_port())
    try:
        result = nginx.test_config()
    finally:
        nginx.stop()
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr


def web_env() -> dict[str, str]:
    """A web process of the suite's settings; /api/health needs only a database to SELECT 1."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "relevel.settings_test", "REDIS_URL": settings.REDIS_URL}
    if not env.get("DATABASE_URL"):
        env["DATABASE_URL"] = f"sqlite:///{tempfile.gettempdir()}/relevel-proxy-test.sqlite3"
    return env


def half_sent_requests(port: int, *, tls: bool) -> list[socket.socket]:
    """Two clients that send half a request each and then wait: one stops inside its
    headers, one inside its body."""
    halves = [
        b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nUser-Ag",
        b"POST /api/webhooks/call HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000\r\n\r\n{"call_id": ',
    ]
    clients = []
    for half in halves:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if tls:
            sock = unverified_tls().wrap_socket(sock, server_hostname="localhost")
        sock.sendall(half)
        clients.append(sock)
    time.sleep(0.5)  # let the server take them in
    return clients


def unverified_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def health_status(url: str, *, timeout: float) -> int:
    request = urllib.request.Request(f"{url}/api/health", headers={"Host": "localhost"})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=unverified_tls()) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code  # 503: answered all the same


@pytest.mark.slow
@needs_nginx
@needs_openssl
def test_two_half_sent_requests_block_bare_gunicorn_but_not_gunicorn_behind_nginx():
    gunicorn = GunicornServer(env=web_env(), args=("-c", str(GUNICORN_CONF)), workers=2).start()
    nginx = None
    try:
        assert health_status(gunicorn.url, timeout=20) in (200, 503)  # booted and answering
        # Published directly (as compose did), two half-sent requests take both sync workers.
        clients = half_sent_requests(gunicorn.port, tls=False)
        with pytest.raises((TimeoutError, urllib.error.URLError)):
            health_status(gunicorn.url, timeout=3)
        for client in clients:
            client.close()

        nginx = Nginx(upstream_port=gunicorn.port).start()
        https = f"https://127.0.0.1:{nginx.https_port}"
        assert health_status(https, timeout=20) in (200, 503)
        clients = half_sent_requests(nginx.https_port, tls=True)
        started = time.monotonic()
        assert health_status(https, timeout=3) in (200, 503)
        assert health_status(https, timeout=3) in (200, 503)
        assert time.monotonic() - started < 3
        for client in clients:
            client.close()
        # Plain HTTP is sent to HTTPS by nginx itself.
        plain = socket.create_connection(("127.0.0.1", nginx.http_port), timeout=5)
        plain.sendall(b"GET /admin/?q=1 HTTP/1.1\r\nHost: relevel.example.com\r\nConnection: close\r\n\r\n")
        answer = plain.recv(4096).decode()
        plain.close()
        assert (
            answer.startswith("HTTP/1.1 301") and "Location: https://relevel.example.com/admin/?q=1" in answer
        )
    finally:
        if nginx is not None:
            nginx.stop()
        gunicorn.stop()


# --- gunicorn's access log ------------------------------------------------------------------


@pytest.fixture(autouse=True)
def gunicorn_loggers_restored():
    """gunicorn's Logger adds handlers to the process-wide gunicorn.* loggers: take them off."""
    import logging

    loggers = [logging.getLogger(name) for name in ("gunicorn.error", "gunicorn.access")]
    before = [list(logger.handlers) for logger in loggers]
    yield
    for logger, handlers in zip(loggers, before, strict=True):
        logger.handlers = handlers


class ConfiguredGunicorn(Application):
    """gunicorn's settings as `gunicorn -c deploy/gunicorn.conf.py` loads them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__()

    def load_config(self) -> None:
        self.load_config_from_file(str(self.path))

    def init(self, parser, opts, args):  # pragma: no cover - only load_config is used
        return None

    def load(self):  # pragma: no cover
        return None


@pytest.mark.parametrize("where", ["compose", "Dockerfile"])
def test_compose_and_the_image_run_gunicorn_with_its_settings_file(where):
    from tests.test_deploy_files import dockerfile_instructions

    if where == "compose":
        argv = command_steps(SERVICES["web"]["command"])[-1]
    else:
        (cmd,) = [rest for keyword, rest in dockerfile_instructions() if keyword == "CMD"]
        argv = json.loads(cmd)
    assert (ROOT / gunicorn_options(argv).config).resolve() == GUNICORN_CONF


def test_the_shipped_web_command_runs_two_workers_a_core_and_one_unless_told(monkeypatch):
    # (2 x cores) + 1, gunicorn's own starting point; capped; WEB_CONCURRENCY wins.
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert ConfiguredGunicorn(GUNICORN_CONF).cfg.workers == 5
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert ConfiguredGunicorn(GUNICORN_CONF).cfg.workers == 9
    # A container's CPU quota counts, not the host's cores: 1.5 CPUs are 2 cores.
    real_open = open

    def quota_of(text):
        def fake_open(path, *args, **kwargs):
            if str(path) == "/sys/fs/cgroup/cpu.max":
                return io.StringIO(text)
            return real_open(path, *args, **kwargs)

        return fake_open

    monkeypatch.setattr("builtins.open", quota_of("150000 100000\n"))
    assert ConfiguredGunicorn(GUNICORN_CONF).cfg.workers == 5
    monkeypatch.setattr("builtins.open", quota_of("max 100000\n"))
    assert ConfiguredGunicorn(GUNICORN_CONF).cfg.workers == 9
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert ConfiguredGunicorn(GUNICORN_CONF).cfg.workers == 3
    # Neither shipped command names a count that would override it.
    from tests.test_deploy_files import dockerfile_instructions

    (cmd,) = [rest for keyword, rest in dockerfile_instructions() if keyword == "CMD"]
    for argv in (command_steps(SERVICES["web"]["command"])[-1], json.loads(cmd)):
        assert gunicorn_options(argv).workers is None


def render_access_line(environ: dict, headers: list[tuple[str, str]]) -> str:
    """One access line for a request, from gunicorn's own logger with the configured format."""
    cfg = ConfiguredGunicorn(GUNICORN_CONF).cfg
    logger = cfg.logger_class(cfg)
    stream = io.StringIO()
    for handler in logger.access_log.handlers:
        if getattr(handler, "_gunicorn", False):
            handler.setStream(stream)

    class Response:
        status = "302 Found"
        sent = 0
        headers = [("Location", "/admin/login/?next=/admin/users/user/%3Fq%3D%252B919876543210")]

    logger.access(Response(), headers, environ, datetime.timedelta(milliseconds=12))
    return stream.getvalue()


def admin_search(path: str, query: str, referer: str) -> tuple[dict, list]:
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": f"{path}?{query}",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "172.18.0.5",
        "HTTP_REFERER": referer,
        "HTTP_USER_AGENT": "Mozilla/5.0",
    }
    headers = [("X-FORWARDED-FOR", "203.0.113.7"), ("REFERER", referer), ("USER-AGENT", "Mozilla/5.0")]
    return environ, headers


@pytest.mark.parametrize(
    "query", ["q=%2B919876543210", "q=919876543210", "q=%2B91+98765+43210", "q=%2B91%2098765%2043210"]
)
def test_an_access_line_for_an_admin_search_holds_no_number(query):
    environ, headers = admin_search(
        "/admin/users/user/", query, referer=f"https://relevel.example.com/admin/users/user/?{query}"
    )
    line = render_access_line(environ, headers)
    assert '"GET /admin/users/user/ HTTP/1.1" 302' in line and "203.0.113.7" in line
    for number in NUMBERS:
        assert number not in line, line


def test_gunicorns_default_access_log_would_hold_the_number():
    # Why the format is configured: gunicorn's own (Apache's combined) logs the request line
    # with its query string, and the referrer.
    from gunicorn.config import Config
    from gunicorn.glogging import Logger

    cfg = Config()
    cfg.set("accesslog", "-")
    logger = Logger(cfg)
    stream = io.StringIO()
    for handler in logger.access_log.handlers:
        if getattr(handler, "_gunicorn", False):
            handler.setStream(stream)
    environ, headers = admin_search("/admin/users/user/", "q=919876543210", referer="-")

    class Response:
        status, sent, headers = "200 OK", 0, []

    logger.access(Response(), headers, environ, datetime.timedelta(milliseconds=1))
    assert "919876543210" in stream.getvalue()


def test_a_number_in_a_path_is_masked_in_the_access_line():
    environ, headers = admin_search("/+919876543210", "", referer="-")
    line = render_access_line(environ, headers)
    assert '"GET /*********3210 HTTP/1.1"' in line


def test_the_access_line_is_gunicorns_own_line_for_the_configured_format(monkeypatch):
    # relevel's logger builds only the atoms the format names and masks them one by one
    # (cheaper than gunicorn's every atom, then the whole line): the same line otherwise.
    from gunicorn.glogging import Logger

    monkeypatch.setattr(Logger, "now", lambda self: "[07/Dec/2026:04:37:23 +0000]")
    environ, headers = admin_search("/api/webhooks/call", "", referer="-")
    environ.update(REQUEST_METHOD="POST", HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")
    ours = render_access_line(environ, headers)
    cfg = ConfiguredGunicorn(GUNICORN_CONF).cfg
    theirs = Logger(cfg)
    stream = io.StringIO()
    for handler in theirs.access_log.handlers:
        if getattr(handler, "_gunicorn", False):
            handler.setStream(stream)

    class Response:
        status = "302 Found"
        sent = 0
        headers = [("Location", "/admin/login/?next=/admin/users/user/%3Fq%3D%252B919876543210")]

    theirs.access(Response(), headers, environ, datetime.timedelta(milliseconds=12))
    assert ours == stream.getvalue()
    assert ours.startswith(
        '172.18.0.5 203.0.113.7 user [07/Dec/2026:04:37:23 +0000] "POST /api/webhooks/call'
    )


def test_a_number_in_a_header_of_the_access_line_is_masked():
    environ, headers = admin_search("/", "", referer="-")
    environ["HTTP_USER_AGENT"] = 'call me "+91 98765 43210"'
    headers = [("X-FORWARDED-FOR", "919876543210")]
    line = render_access_line(environ, headers)
    assert " ********3210 - [" in line and 'call me \\"*********3210\\""' in line, line
    for number in NUMBERS:
        assert number not in line, line


@pytest.mark.slow
def test_a_real_gunicorns_access_log_holds_no_number():
    gunicorn = GunicornServer(env=web_env(), args=("-c", str(GUNICORN_CONF))).start()
    try:
        for query in ("q=%2B919876543210", "q=%2B91+98765+43210"):
            request = urllib.request.Request(
                f"{gunicorn.url}/admin/users/user/?{query}",
                headers={"Host": "localhost", "Referer": f"http://localhost/admin/users/user/?{query}"},
            )
            urllib.request.urlopen(request, timeout=20).read()  # -> the login page, through a redirect
        deadline = time.monotonic() + 10
        while gunicorn.output().count('"GET /admin/') < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        gunicorn.stop()
    log = gunicorn.output()
    assert log.count('"GET /admin/users/user/ HTTP/1.1" 302') == 2, log
    assert log.count('"GET /admin/login/ HTTP/1.1" 200') == 2, log
    for number in NUMBERS:
        assert number not in log, log
