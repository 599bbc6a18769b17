"""The deployment files say what the code does: docker-compose.yml, Dockerfile, .env.example,
and the process set `manage.py runall` starts. No Docker engine is needed: every command
the files run is resolved against the project's own management commands and modules."""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import shlex
import subprocess
import sys
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
import time_machine
import yaml
from django.conf import settings
from django.core.management import get_commands, load_command_class
from gunicorn.config import Config as GunicornConfig

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = ("web", "worker", "events-worker", "scheduler")
SECRETS = {
    "SECRET_KEY",
    "CALLKARO_API_KEY",
    "CALLKARO_WEBHOOK_SECRET",
    "QUEUE_API_TOKEN",
    "POSTGRES_PASSWORD",
    "ADMIN_PASSWORD",
    "TWILIO_AUTH_TOKEN",
    "ANYMAIL_POSTMARK_SERVER_TOKEN",
    "EVENTS_WEBHOOK_SECRET",
}


def settings_env_vars() -> set[str]:
    """Every name settings.py reads through `env(...)`, `env.str(...)`, `env.db(...)`, ..."""
    tree = ast.parse((ROOT / "relevel" / "settings.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        is_env = (isinstance(func, ast.Name) and func.id == "env") or (
            isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "env"
        )
        if is_env and isinstance(node.args[0], ast.Constant):
            names.add(node.args[0].value)
    return names


def env_example() -> dict[str, tuple[str, str]]:
    """NAME -> (documented default, the comment line above it), from `# NAME=value` lines."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    documented = {}
    for i, line in enumerate(lines):
        match = re.fullmatch(r"#?\s*([A-Z][A-Z0-9_]*)=(.*)", line)
        if match:
            comment = lines[i - 1] if i else ""
            documented[match[1]] = (match[2], comment)
    return documented


def interpolate(text: str) -> str:
    """Compose interpolation with defaults: ${X:-d} -> d, ${X:?msg} and ${X} -> a stand-in."""
    text = re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", text)
    return re.sub(r"\$\{[A-Z0-9_]+(:\?[^}]*)?\}", "placeholder", text)


def command_steps(command: str | list[str]) -> list[list[str]]:
    """A compose or Dockerfile command as the argv of each program it runs."""
    if isinstance(command, list) and command[:2] == ["sh", "-c"]:
        command = command[2]
    if isinstance(command, list):
        return [[interpolate(arg) for arg in command]]
    steps = []
    for part in interpolate(command).split("&&"):
        argv = shlex.split(part)
        steps.append(argv[1:] if argv[0] == "exec" else argv)
    return steps


def parse_manage_py(argv: list[str]):
    """Resolve `python manage.py NAME ARGS` to the project's command and parse its arguments."""
    assert argv[:2] == ["python", "manage.py"], argv
    name = argv[2]
    commands = get_commands()
    assert name in commands, f"`manage.py {name}` is not a command of this project"
    command = load_command_class(commands[name], name)
    # Raises CommandError on an unknown option or a bad value.
    return command, command.create_parser("manage.py", name).parse_args(argv[3:])


def gunicorn_options(argv: list[str]):
    assert argv[0] == "gunicorn"
    return (
        GunicornConfig(usage="%(prog)s [OPTIONS] [APP_MODULE]", prog="gunicorn").parser().parse_args(argv[1:])
    )


def assert_gunicorn_serves_the_project(argv: list[str]) -> None:
    options = gunicorn_options(argv)
    module_name, _, attr = options.args[0].partition(":")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, attr or "application"))
    # Its settings file exists in the image (and is checked in tests/test_deploy_proxy.py).
    assert options.config == "deploy/gunicorn.conf.py" and (ROOT / options.config).is_file()


def run_step(argv: list[str]) -> None:
    if argv[0] == "gunicorn":
        assert_gunicorn_serves_the_project(argv)
    else:
        parse_manage_py(argv)


# --- .env.example ---------------------------------------------------------------------------


def test_every_variable_settings_reads_is_documented_in_env_example():
    read = settings_env_vars()
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "CALL_PROVIDER"} <= read  # the parse works
    missing = sorted(read - env_example().keys())
    assert not missing, f".env.example does not document: {', '.join(missing)}"


def test_env_example_gives_each_variable_a_comment_and_no_secret_a_value():
    for name, (value, comment) in env_example().items():
        is_a_comment = comment.startswith("# ") and not re.fullmatch(r"#\s*[A-Z][A-Z0-9_]*=.*", comment)
        assert is_a_comment, f"{name} has no comment line of its own"
        if name in SECRETS:
            assert value == "", f"{name} must have no value in .env.example"


def test_every_variable_compose_interpolates_is_documented():
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", (ROOT / "docker-compose.yml").read_text()))
    assert {"POSTGRES_PASSWORD", "QUEUE_CONCURRENCY"} <= used
    assert used <= env_example().keys()


def test_the_defaults_env_example_shows_are_the_defaults_settings_use(tmp_path):
    # settings.py imported from a copy, so that a developer's .env cannot change the defaults.
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "__init__.py").write_text("")
    (tmp_path / "probe" / "settings.py").write_text((ROOT / "relevel" / "settings.py").read_text())
    documented = {n: v for n, (v, _) in env_example().items() if v and n in settings_env_vars()}
    documented.pop("DATABASE_URL")  # the default is an absolute path in the project folder
    documented.pop("DEBUG")  # compared below, as the base of both runs
    snapshot = (
        "import json, os, probe.settings as s\n"
        "names = json.loads(os.environ['PROBE_NAMES'])\n"
        "values = {n: repr(getattr(s, n)) for n in names if hasattr(s, n)}\n"
        "values['CONN_MAX_AGE'] = repr(s.DATABASES['default']['CONN_MAX_AGE'])\n"
        "values['LOG_LEVEL'] = s.LOGGING['root']['level']\n"
        "print(json.dumps(values, sort_keys=True))\n"
    )
    base = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(tmp_path),
        "PROBE_NAMES": json.dumps(sorted(documented)),
        "DEBUG": "0",
        "SECRET_KEY": "s3cr3t-" + "k" * 43,
        "CALLKARO_API_KEY": "test-api-key",
    }

    def settings_values(extra: dict[str, str]) -> dict:
        env = {**base, **extra}
        result = subprocess.run(
            [sys.executable, "-c", snapshot], env=env, capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    by_default = settings_values({})
    as_documented = settings_values({n: v for n, v in documented.items() if n not in base})
    assert len(by_default) >= 20
    assert as_documented == by_default
    assert env_example()["DEBUG"][0] == "0"


# --- docker-compose.yml ---------------------------------------------------------------------


def test_compose_runs_the_database_redis_the_three_processes_and_nginx():
    assert set(SERVICES) == {"postgres", "redis", "nginx", *APP_SERVICES}


@pytest.mark.parametrize("service", APP_SERVICES)
def test_each_app_service_runs_real_commands_of_this_project(service):
    steps = command_steps(SERVICES[service]["command"])
    for argv in steps:
        run_step(argv)


def test_web_migrates_before_gunicorn_serves_relevel_wsgi():
    first, second = command_steps(SERVICES["web"]["command"])
    assert parse_manage_py(first)[0].__module__.endswith(".migrate")
    assert "--noinput" in first
    assert second[:2] == ["gunicorn", "relevel.wsgi"] and "0.0.0.0:8000" in second
    # Only nginx is published; gunicorn is reached through it (tests/test_deploy_proxy.py).
    assert "ports" not in SERVICES["web"] and SERVICES["web"]["expose"] == ["8000"]


def test_the_worker_pool_serves_the_calls_queue_with_queue_concurrency_workers():
    (argv,) = command_steps(SERVICES["worker"]["command"])
    command, options = parse_manage_py(argv)
    assert argv[2] == "rqworker-pool"
    assert options.args == settings.WORKER_QUEUES  # the tick's queue first
    assert "${QUEUE_CONCURRENCY:-4}" in SERVICES["worker"]["command"]
    assert options.num_workers == 4  # the default, as in settings and .env.example
    assert options.worker_class == "rq.worker.SimpleWorker"


def test_the_scheduler_runs_relevels_own_rqscheduler():
    (argv,) = command_steps(SERVICES["scheduler"]["command"])
    command, _ = parse_manage_py(argv)
    # Ours (RQ cron with the tick), not django-rq's, which needs the rq-scheduler package.
    assert command.__module__ == "calls.management.commands.rqscheduler"


def test_app_services_use_the_compose_postgres_and_redis():
    postgres_env = SERVICES["postgres"]["environment"]
    for name in APP_SERVICES:
        service = SERVICES[name]
        assert service["env_file"] == ".env"
        database = urlsplit(interpolate(service["environment"]["DATABASE_URL"]))
        assert (database.scheme, database.hostname, database.port) == ("postgres", "postgres", 5432)
        assert database.username == postgres_env["POSTGRES_USER"]
        assert database.path == f"/{postgres_env['POSTGRES_DB']}"
        redis_url = urlsplit(service["environment"]["REDIS_URL"])
        assert (redis_url.scheme, redis_url.hostname, redis_url.port) == ("redis", "redis", 6379)


def test_postgres_and_redis_keep_their_data_on_named_volumes():
    for name, data_dir in (("postgres", "/var/lib/postgresql/data"), ("redis", "/data")):
        (volume,) = SERVICES[name]["volumes"]
        volume_name, mount = volume.split(":")
        assert mount == data_dir
        assert volume_name in COMPOSE["volumes"]


def test_redis_is_append_only():
    command = SERVICES["redis"]["command"]
    assert command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"


def test_postgres_and_redis_have_healthchecks_their_clients_understand():
    assert "pg_isready" in " ".join(SERVICES["postgres"]["healthcheck"]["test"])
    assert SERVICES["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]


@pytest.mark.parametrize(
    ("service", "needs"),
    [
        ("web", {"postgres", "redis"}),
        # After web: web's migrate has run once it is healthy.
        ("worker", {"postgres", "redis", "web"}),
        ("events-worker", {"postgres", "redis", "web"}),
        ("scheduler", {"postgres", "redis", "web"}),
    ],
)
def test_processes_start_only_after_what_they_need_is_healthy(service, needs):
    depends_on = SERVICES[service]["depends_on"]
    assert set(depends_on) == needs
    assert all(dep["condition"] == "service_healthy" for dep in depends_on.values())
    assert all("healthcheck" in SERVICES[dep] for dep in needs)


def test_the_web_healthcheck_passes_against_a_healthy_app_with_production_hosts(live_server, settings):
    # Production lists only its own domain; the healthcheck must still be let in.
    settings.ALLOWED_HOSTS = ["relevel.example.com"]
    check = SERVICES["web"]["healthcheck"]["test"]
    assert check[:3] == ["CMD", "python", "-c"]
    port = live_server.url.rsplit(":", 1)[1]
    script = check[3].replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    assert script != check[3]
    env = {"PATH": os.environ["PATH"], "ALLOWED_HOSTS": "relevel.example.com,www.relevel.example.com"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 0, result.stderr
    # With another host list the same check is refused (400): the Host header is what let it in.
    env["ALLOWED_HOSTS"] = "other.example.com"
    refused = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=20
    )
    assert refused.returncode != 0 and "400" in refused.stderr


# --- Dockerfile and .dockerignore -----------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_the_image_is_python_311_slim_with_the_pinned_requirements():
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    assert ("RUN", "pip install -r requirements.txt") in instructions
    for keyword, rest in instructions:
        if keyword == "COPY":
            *sources, _ = rest.split()
            for source in sources:
                assert source == "." or (ROOT / source).exists(), source


def test_the_image_runs_as_a_non_root_user():
    users = [rest for keyword, rest in dockerfile_instructions() if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")


def test_the_image_serves_relevel_wsgi_with_gunicorn_by_default():
    (cmd,) = [rest for keyword, rest in dockerfile_instructions() if keyword == "CMD"]
    (argv,) = command_steps(json.loads(cmd))
    assert_gunicorn_serves_the_project(argv)


def test_collectstatic_works_with_only_the_build_time_environment():
    (step,) = [
        rest for keyword, rest in dockerfile_instructions() if keyword == "RUN" and "collectstatic" in rest
    ]
    words = shlex.split(step)
    build_env = dict(word.split("=", 1) for word in words if re.fullmatch(r"[A-Z_]+=.*", word))
    argv = [word for word in words if not re.fullmatch(r"[A-Z_]+=.*", word)]
    assert argv[:3] == ["python", "manage.py", "collectstatic"]
    result = subprocess.run(
        [sys.executable, *argv[1:], "--dry-run"],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **build_env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_secrets_and_local_state_stay_out_of_the_image():
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".env", ".venv", ".git", "*.sqlite3"} <= ignored
    assert not ignored & {"requirements.txt", "manage.py", "relevel", "calls", "users"}


# --- runall: the local process set ------------------------------------------------------------


def test_runall_starts_real_commands_with_valid_arguments():
    from relevel.management.commands.runall import child_processes

    children = {child.name: child.argv for child in child_processes(port=8123, python="python")}
    assert set(children) == {"web", "worker", "scheduler", "events"}
    for argv in children.values():
        assert argv[1].endswith("manage.py")
        parse_manage_py(["python", "manage.py", *argv[2:]])
    assert children["web"][2:] == ("runserver", "--noreload", "127.0.0.1:8123")
    _, worker_options = parse_manage_py(["python", "manage.py", *children["worker"][2:]])
    assert worker_options.args == settings.WORKER_QUEUES
    # Without the scheduler, delayed jobs (retries, the simulator's webhooks) never run.
    assert worker_options.with_scheduler
    _, events_options = parse_manage_py(["python", "manage.py", *children["events"][2:]])
    assert events_options.args == [settings.EVENTS_QUEUE]
    assert events_options.with_scheduler  # delivery retries are scheduled jobs


def test_runall_children_get_redis_a_signed_webhook_loop_and_demo_timings(monkeypatch, settings):
    from relevel.management.commands.runall import Command

    for name in ("CALLKARO_WEBHOOK_SECRET", "SCHEDULE_CRON", "SIMULATOR_DELAY_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CALL_RETRY_DELAY_SECONDS", "90")  # set by the user: kept
    settings.CALL_PROVIDER = "simulator"
    env = Command().child_env(port=8123, redis_url="redis://127.0.0.1:7000/0")
    assert env["REDIS_URL"] == "redis://127.0.0.1:7000/0"
    assert env["SIMULATOR_WEBHOOK_URL"] == "http://127.0.0.1:8123/api/webhooks/simulator"
    assert len(env["CALLKARO_WEBHOOK_SECRET"]) >= 32
    assert (env["SCHEDULE_CRON"], env["SIMULATOR_DELAY_SECONDS"]) == ("* * * * *", "5")
    assert env["CALL_RETRY_DELAY_SECONDS"] == "90"

    settings.CALL_PROVIDER = "callkaro"  # real calls never get the demo's timings
    assert "SCHEDULE_CRON" not in Command().child_env(port=8123, redis_url="redis://x:1/0")


def test_a_demo_call_time_is_counted_in_utc_across_a_dst_change():
    from relevel.management.commands.runall import demo_call_time

    # 01:59:30 EST, one minute before New York springs forward to 03:00 EDT.
    now = datetime(2026, 3, 8, 6, 59, 30, tzinfo=UTC)
    assert demo_call_time(now=now, tz=ZoneInfo("America/New_York"), minutes_from_now=1) == time(3, 0)


@pytest.mark.django_db
def test_demo_users_are_due_within_minutes_in_several_time_zones_and_reset_on_a_rerun(make_call):
    from calls.models import Call
    from relevel.management.commands.runall import demo_users_seed
    from users.models import User

    now = datetime(2026, 11, 28, 14, 55, 20, tzinfo=UTC)
    with time_machine.travel(now, tick=False):
        users = demo_users_seed(now=now)
    assert len({user.local_tz for user in users}) >= 4
    for user in users:
        assert now < user.next_call_at <= now + timedelta(minutes=5)
        assert user.is_callable and not user.has_usable_password()

    # As if the first run had called Asha and moved her to tomorrow; then a re-run within the
    # same minute, which gives every demo user the same call time as before.
    make_call(user=users[0])
    User.objects.filter(pk=users[0].pk).update(next_call_at=now + timedelta(days=1))
    rerun = now + timedelta(seconds=10)
    with time_machine.travel(rerun, tick=False):
        again = demo_users_seed(now=rerun)
    assert [u.pk for u in again] == [u.pk for u in users]
    assert [u.call_time for u in again] == [u.call_time for u in users]
    assert not Call.objects.filter(user__in=again).exists()
    for user in User.objects.filter(pk__in=[u.pk for u in again]):
        assert rerun < user.next_call_at <= rerun + timedelta(minutes=5)
