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
    "SECRET_KEY": "s3cr3t-" + "k" * 43,  # 50 characters, as check --deploy asks
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
    # Django's check --deploy flags (security.W009) a key of under 50 characters or of fewer
    # than 5 different ones, and its own generated development keys.
    ("secret-key-of-49-characters", {"SECRET_KEY": "s3cr3t-" + "k" * 42}, "SECRET_KEY"),
    ("secret-key-one-character-repeated", {"SECRET_KEY": "k" * 64}, "SECRET_KEY"),
    ("secret-key-djangos-insecure-one", {"SECRET_KEY": "django-insecure-" + "s3cr3t-k3y" * 5}, "SECRET_KEY"),
    ("queue-api-token-too-short", {"QUEUE_API_TOKEN": "test-queue-token"}, "QUEUE_API_TOKEN"),
    (
        "webhook-secret-of-31-characters",
        {"CALLKARO_WEBHOOK_SECRET": "s3cr3t-" * 4 + "xxx"},
        "CALLKARO_WEBHOOK_SECRET",
    ),
    ("webhook-secret-repeated", {"CALLKARO_WEBHOOK_SECRET": "x" * 40}, "CALLKARO_WEBHOOK_SECRET"),
    ("ssl-redirect-not-a-boolean", {"SECURE_SSL_REDIRECT": "sometimes"}, "SECURE_SSL_REDIRECT"),
    ("hsts-seconds-negative", {"SECURE_HSTS_SECONDS": "-1"}, "SECURE_HSTS_SECONDS"),
    ("time-zone-not-iana", {"DEFAULT_TIMEZONE": "India/Mumbai"}, "DEFAULT_TIMEZONE"),
    ("number-not-a-number", {"CALL_MAX_RETRIES": "two"}, "CALL_MAX_RETRIES"),
    ("list-of-numbers-not-numbers", {"CALL_PLACE_RETRY_INTERVALS": "2,four"}, "CALL_PLACE_RETRY_INTERVALS"),
    ("boolean-not-a-boolean", {"DEBUG": "maybe"}, "DEBUG"),
    ("batch-size-zero", {"CALL_BATCH_SIZE": "0"}, "CALL_BATCH_SIZE"),
    ("spread-does-not-fit-the-window", {"CALL_SPREAD_MINUTES": "15"}, "CALL_SPREAD_MINUTES"),
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


# --- check --deploy -------------------------------------------------------------------------

# The production settings docs/deploying/tls.md documents, as docker compose sets them (with a webhook
# secret and the operator token, which .env supplies).
PRODUCTION = {
    "ALLOWED_HOSTS": "relevel.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://relevel.example.com",
    "CALLKARO_WEBHOOK_SECRET": "whsec-" + "0123456789abcdef" * 2,
    "QUEUE_API_TOKEN": "qat-" + "fedcba9876543210" * 2,
}


def compose_tls_settings() -> dict[str, str]:
    """The TLS settings docker-compose.yml gives every app service, with its defaults."""
    import yaml

    from tests.test_deploy_files import interpolate

    environment = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["x-app"]["environment"]
    tls = {name: interpolate(str(value)) for name, value in environment.items() if name.startswith("SECURE_")}
    tls.update({name: str(environment[name]) for name in ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE")})
    return tls


def check_deploy(changes: dict[str, str]) -> subprocess.CompletedProcess:
    return run_with(changes, "manage.py", "check", "--deploy", "--fail-level", "WARNING")


def test_check_deploy_is_clean_with_the_documented_production_settings():
    tls = compose_tls_settings()
    assert {"SECURE_PROXY_SSL_HEADER", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS"} <= tls.keys()
    result = check_deploy({**PRODUCTION, **tls})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_without_the_tls_settings_check_deploy_says_what_is_missing():
    result = check_deploy(PRODUCTION)
    assert result.returncode == 1
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr
    assert "security.W009" not in result.stderr  # the key the settings accept, Django accepts


def test_secure_proxy_ssl_header_names_the_header_the_proxy_sets():
    # SECURE_PROXY_SSL_HEADER names the header; Django reads it from META as HTTP_...
    result = run_with(
        {"SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto"},
        "-c",
        "import relevel.settings as s; print(s.SECURE_PROXY_SSL_HEADER)",
    )
    assert result.stdout.strip() == "('HTTP_X_FORWARDED_PROTO', 'https')", result.stderr


# --- SQLite without RETURNING -------------------------------------------------------------------


def run_on_sqlite_version(version: str, *argv: str) -> subprocess.CompletedProcess:
    """`manage.py ARGV` in a Python whose SQLite library says it is ``version``."""
    script = (
        "import runpy, sys\n"
        "from sqlite3 import dbapi2\n"
        f"dbapi2.sqlite_version = {version!r}\n"
        f"dbapi2.sqlite_version_info = {tuple(int(part) for part in version.split('.'))!r}\n"
        f"sys.argv = ['manage.py', *{list(argv)!r}]\n"
        "runpy.run_path('manage.py', run_name='__main__')\n"
    )
    return run_with({"DATABASE_URL": "sqlite:////tmp/relevel-sqlite-version-test.sqlite3"}, "-c", script)


def test_sqlite_older_than_3_35_is_refused_at_start_up_in_one_line():
    # Django 5.2 runs on SQLite 3.31+, but the tick's claiming INSERT uses RETURNING (3.35):
    # without this, the first run would start, and every tick would fail with a syntax error.
    result = run_on_sqlite_version("3.34.1", "check")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "relevel: configuration error: DATABASE_URL is SQLite, and this Python's SQLite is 3.34.1; "
        "relevel needs 3.35 or newer (INSERT ... RETURNING): use a newer Python, or PostgreSQL"
    ]


def test_sqlite_3_35_is_accepted():
    result = run_on_sqlite_version("3.35.0", "check")
    assert result.returncode == 0, result.stderr


# Each provider's settings: what it cannot place calls without (settings.PROVIDER_REQUIRED_SETTINGS).
PROVIDER_ENVS = {
    "vapi": {"VAPI_API_KEY": "k", "VAPI_ASSISTANT_ID": "a", "VAPI_PHONE_NUMBER_ID": "p"},
    "retell": {"RETELL_API_KEY": "k", "RETELL_FROM_NUMBER": "+14157774444", "RETELL_AGENT_ID": "a"},
}
PROVIDER_CASES = [(provider, name) for provider, env in PROVIDER_ENVS.items() for name in (None, *env)]


@pytest.fixture(scope="module")
def provider_start_ups() -> dict[tuple[str, str | None], object]:
    """`manage.py check` for each provider with all its settings, and with each one blank."""
    from concurrent.futures import ThreadPoolExecutor

    def env_for(provider, missing):
        env = {"CALL_PROVIDER": provider, **PROVIDER_ENVS[provider]}
        if missing:
            env[missing] = ""
        return env

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            case: pool.submit(run_with, env_for(*case), "manage.py", "check") for case in PROVIDER_CASES
        }
    return {case: future.result() for case, future in futures.items()}


@pytest.mark.parametrize(("provider", "missing"), PROVIDER_CASES)
def test_a_provider_starts_with_its_settings_and_stops_naming_a_missing_one(
    provider, missing, provider_start_ups
):
    result = provider_start_ups[(provider, missing)]
    if missing is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            f"relevel: configuration error: {missing} must be set when CALL_PROVIDER={provider}"
        ]
