"""`python3 dev.py manage`: a manage.py command with the environment `dev.py start` gives its
processes, the same Redis above all (jobs enqueued beside a running start reach its workers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from relevel.embedded_redis import DEV_RUN_FILE_ENV, dev_run_env, dev_run_remove, dev_run_write

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import dev  # noqa: E402

# What a newcomer's shell has: none of relevel's variables.
BARE_SHELL = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
SHOW_SETTINGS = (
    "from django.conf import settings; from calls.queues import enqueue_tick; "
    "print(settings.REDIS_URL, settings.DEBUG, enqueue_tick().id)"
)


@pytest.fixture
def run_file(tmp_path, monkeypatch):
    path = tmp_path / "dev-run.json"
    monkeypatch.setenv(DEV_RUN_FILE_ENV, str(path))
    return path


def run_manage(args: list[str]) -> subprocess.CompletedProcess:
    command, env, note = dev.manage_command(args, dict(BARE_SHELL))
    # The file is found through this variable, in the child too (embedded_redis).
    env[DEV_RUN_FILE_ENV] = os.environ[DEV_RUN_FILE_ENV]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    result.note = note
    return result


def test_manage_beside_a_running_start_talks_to_its_redis_and_gets_its_environment(run_file, redis_conn):
    # As `start` writes it: this test process stands in for the running runall.
    dev_run_write(env={"REDIS_URL": settings.REDIS_URL, "DEBUG": "1", "SCHEDULE_CRON": "* * * * *"})

    result = run_manage(["shell", "-c", SHOW_SETTINGS])

    assert result.returncode == 0, result.stderr
    assert "SECRET_KEY" not in result.stderr
    redis_url, debug, job_id = result.stdout.split()[-3:]
    assert (redis_url, debug) == (settings.REDIS_URL, "True")
    # The job is in the Redis the running start's workers serve, not in another one.
    assert redis_conn.exists(f"rq:job:{job_id}")
    assert "running `dev.py start`" in result.note


def test_manage_with_no_start_running_gets_an_embedded_redis_of_its_own(run_file, redis_conn):
    result = run_manage(["shell", "-c", SHOW_SETTINGS])

    assert result.returncode == 0, result.stderr
    redis_url, debug, job_id = result.stdout.split()[-3:]
    assert debug == "True"
    assert redis_url.startswith("redis://127.0.0.1:") and redis_url != settings.REDIS_URL
    assert not redis_conn.exists(f"rq:job:{job_id}")
    assert "embedded Redis of its own" in result.note


def test_a_run_file_left_by_a_start_that_is_over_is_ignored(run_file):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    run_file.write_text(json.dumps({"pid": int(finished.stdout), "env": {"REDIS_URL": settings.REDIS_URL}}))
    assert dev_run_env() is None
    # Its Redis gone too, even with the process alive (a reused pid): ignored.
    dev_run_write(env={"REDIS_URL": "redis://127.0.0.1:9/0"})
    assert dev_run_env() is None


def test_the_run_file_is_private_and_removed_only_by_the_start_that_wrote_it(run_file):
    dev_run_write(env={"REDIS_URL": settings.REDIS_URL, "CALLKARO_WEBHOOK_SECRET": "s" * 32})
    assert run_file.stat().st_mode & 0o077 == 0
    assert dev_run_env()["CALLKARO_WEBHOOK_SECRET"] == "s" * 32

    record = json.loads(run_file.read_text())
    run_file.write_text(json.dumps({**record, "pid": record["pid"] + 1}))  # another start's
    dev_run_remove()
    assert run_file.exists()
    run_file.write_text(json.dumps(record))
    dev_run_remove()
    assert not run_file.exists()


def test_start_shares_what_it_adds_to_its_processes_environment_with_manage(monkeypatch, settings):
    from relevel.management.commands.runall import Command, shared_with_manage

    monkeypatch.setenv("DEBUG", "1")
    monkeypatch.setenv("LOG_LEVEL", "INFO")  # the shell's own: manage has it already
    for name in ("SCHEDULE_CRON", "CALLKARO_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    settings.CALL_PROVIDER = "simulator"
    env = Command().child_env(port=8123, redis_url="redis://127.0.0.1:7000/0")
    shared = shared_with_manage(env)
    assert shared["REDIS_URL"] == "redis://127.0.0.1:7000/0"
    assert shared["DEBUG"] == "1"
    assert shared["SCHEDULE_CRON"] == "* * * * *"
    assert len(shared["CALLKARO_WEBHOOK_SECRET"]) >= 32
    assert "LOG_LEVEL" not in shared and "PATH" not in shared


def test_manage_without_a_command_says_what_to_type(capsys):
    with pytest.raises(SystemExit, match="name a manage.py command"):
        dev.main(["manage"])
