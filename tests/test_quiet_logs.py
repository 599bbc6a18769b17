"""A first run's console: relevel's lines, not an access line per static file, a favicon
404 on every admin page, or RQ's bookkeeping around every job."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.templatetags.static import static
from rq import SimpleWorker

from calls import queues

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own server
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
def test_runserver_logs_pages_but_not_static_files_or_the_favicon(tmp_path):
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_URL": settings.REDIS_URL,
        "PYTHONUNBUFFERED": "1",
    }
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", "--skip-checks", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while fetch_or_none(f"{base}/admin/login/") is None:
            assert time.monotonic() < deadline, "runserver did not answer"
            time.sleep(0.2)
        # What a browser asks for on an admin visit.
        assert fetch(f"{base}/static/admin/css/base.css") == 200
        assert fetch(f"{base}/static/relevel/favicon.svg") == 200
        assert fetch(f"{base}/static/relevel/admin.css") == 200
        assert fetch(f"{base}/favicon.ico") == 200  # a browser that ignores <link rel=icon>: redirected to it
        fetch(f"{base}/admin/")  # 302 to the login page (which urllib follows)
    finally:
        server.terminate()
        output = server.communicate(timeout=15)[0]
    lines = [line for line in output.splitlines() if '"GET ' in line or "Not Found" in line]
    assert any('"GET /admin/ HTTP/1.1" 302' in line for line in lines), output
    assert not [line for line in lines if "/static/" in line or "favicon" in line], output


def fetch_or_none(url: str) -> int | None:
    try:
        return fetch(url)
    except OSError:
        return None


def test_every_admin_page_and_the_dashboard_link_relevels_favicon(admin_client):
    icon = f'<link rel="icon" href="{static("relevel/favicon.svg")}" type="image/svg+xml">'
    for url in ("/admin/", "/admin/users/user/", "/django-rq/"):
        response = admin_client.get(url)
        assert response.status_code == 200
        assert icon in response.content.decode(), url
    assert admin_client.get(static("relevel/favicon.svg")).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_worker_burst_logs_relevels_lines_and_not_rqs_bookkeeping(caplog):
    queues.enqueue_tick()
    queue = queues.tick_queue()
    with caplog.at_level(logging.INFO):
        SimpleWorker([queue], connection=queue.connection).work(burst=True)
    messages = [(record.name, record.getMessage()) for record in caplog.records]
    assert any(
        name.startswith("relevel.") and message.startswith("Tick at ") for name, message in messages
    ), messages
    rq_info = [
        message
        for name, message in messages
        if name.startswith("rq.")
        and any(
            noise in message
            for noise in (
                "cleaning registries",
                "Job OK",
                "result is kept",
                "Successfully completed",
                "Scheduling tick",
            )
        )
    ]
    assert rq_info == []


def test_rq_warnings_and_errors_still_pass():
    from relevel.log_filters import QuietRQBookkeepingFilter

    quiet = QuietRQBookkeepingFilter()
    record = logging.LogRecord(
        "rq.worker", logging.ERROR, __file__, 1, "Worker %s: %s: %s (%s)", ("w", "q", "x", "j"), None
    )
    assert quiet.filter(record)
    record.levelno = logging.INFO
    assert not quiet.filter(record)
    started = logging.LogRecord(
        "rq.worker", logging.INFO, __file__, 1, "*** Listening on %s...", ("q",), None
    )
    assert quiet.filter(started)


def test_favicon_ico_leads_to_the_icon_instead_of_a_logged_404(client, caplog):
    with caplog.at_level(logging.WARNING):
        response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"].endswith("relevel/favicon.svg")
    assert "Not Found" not in caplog.text
