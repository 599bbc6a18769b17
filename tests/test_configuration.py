"""A bad setting stops a process at start-up with one readable line that names it.

Each case runs `manage.py check` in a fresh process (settings are read at import) from a
valid production-like environment with one variable made wrong. The cases run at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

VALID = {
    "DJANGO_SETTINGS_MODULE": "relevel.settings",
    "DEBUG": "0",
    "SECRET_KEY": "s3cr3t-" + "k" * 33,  # 40 characters
    "CALL_PROVIDER": "callkaro",
    "CALLKARO_API_KEY": "test-api-key",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "DEFAULT_TIMEZONE": "Asia/Kolkata",
    "SCHEDULE_CRON": "*/5 * * * *",
}

# (case id, variables changed, the variable the one line must name)
BAD = [
    ("unknown-provider", {"CALL_PROVIDER": "twilio"}, "CALL_PROVIDER"),
    ("callkaro-without-api-key", {"CALLKARO_API_KEY": ""}, "CALLKARO_API_KEY"),
    ("redis-url-without-scheme", {"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
    ("redis-url-port-not-a-number", {"REDIS_URL": "redis://host:notaport"}, "REDIS_URL"),
    ("redis-url-wrong-scheme", {"REDIS_URL": "http://127.0.0.1:6379/0"}, "REDIS_URL"),
    ("cron-not-an-expression", {"SCHEDULE_CRON": "every five minutes"}, "SCHEDULE_CRON"),
    ("cron-minute-out-of-range", {"SCHEDULE_CRON": "61 * * * *"}, "SCHEDULE_CRON"),
    ("secret-key-missing-with-debug-off", {"SECRET_KEY": ""}, "SECRET_KEY"),
    ("secret-key-too-short-with-debug-off", {"SECRET_KEY": "short"}, "SECRET_KEY"),
    ("time-zone-not-iana", {"DEFAULT_TIMEZONE": "India/Mumbai"}, "DEFAULT_TIMEZONE"),
    ("number-not-a-number", {"CALL_MAX_RETRIES": "two"}, "CALL_MAX_RETRIES"),
    ("list-of-numbers-not-numbers", {"CALL_PLACE_RETRY_INTERVALS": "2,four"}, "CALL_PLACE_RETRY_INTERVALS"),
    ("boolean-not-a-boolean", {"DEBUG": "maybe"}, "DEBUG"),
    ("batch-size-zero", {"CALL_BATCH_SIZE": "0"}, "CALL_BATCH_SIZE"),
    ("timeout-zero", {"CALLKARO_READ_TIMEOUT": "0"}, "CALLKARO_READ_TIMEOUT"),
    ("negative-retry-interval", {"CALL_PLACE_RETRY_INTERVALS": "2,-4"}, "CALL_PLACE_RETRY_INTERVALS"),
    ("database-url-bad-port", {"DATABASE_URL": "postgres://u@host:port/db"}, "DATABASE_URL"),
]


def run_with(changes: dict[str, str], *argv: str) -> subprocess.CompletedProcess:
    # Only PATH from the outside, so the runner's own settings (the suite's) do not leak in.
    env = {"PATH": os.environ["PATH"], **VALID, **changes}
    return subprocess.run(
        [sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def manage_py_check(changes: dict[str, str]) -> subprocess.CompletedProcess:
    return run_with(changes, "manage.py", "check")


@pytest.fixture(scope="module")
def runs() -> dict[str, subprocess.CompletedProcess]:
    cases = {"valid": {}, **{case: changes for case, changes, _ in BAD}}
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        futures = {case: pool.submit(manage_py_check, changes) for case, changes in cases.items()}
    return {case: future.result() for case, future in futures.items()}


def test_the_valid_environment_passes_the_check(runs):
    # Every failing case below differs from this one by one variable.
    valid = runs["valid"]
    assert valid.returncode == 0, valid.stderr
    assert "no issues" in valid.stdout


@pytest.mark.parametrize(
    ("case", "variable"), [(case, var) for case, _, var in BAD], ids=[c for c, _, _ in BAD]
)
def test_a_bad_setting_fails_at_start_up_with_one_line_naming_it(runs, case, variable):
    result = runs[case]
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("relevel: configuration error: ")
    assert variable in lines[0]


def test_the_wsgi_entry_point_refuses_bad_settings_with_the_same_one_line():
    result = run_with({"CALL_PROVIDER": "twilio"}, "-c", "import relevel.wsgi")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "relevel: configuration error: CALL_PROVIDER must be one of callkaro, vapi, retell, simulator"
    ]
