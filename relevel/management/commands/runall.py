"""The zero-setup first run: web, worker and scheduler in one terminal (``python3 dev.py start``).

Settings are read when a process starts, so this command does not hand its own settings
to anything: it prepares an environment (an embedded Redis when REDIS_URL is not set, a
webhook secret, demo timings) and starts each process as a child with it:

    web        manage.py runserver --noreload 127.0.0.1:PORT
    worker     manage.py rqworker daily-calls-tick daily-calls notifications --with-scheduler
                 --worker-class rq.worker.SimpleWorker
    scheduler  manage.py rqscheduler
    events     manage.py rqworker relevel-events --with-scheduler --worker-class rq.worker.SimpleWorker

Before that it migrates the database, makes sure an ``admin`` superuser exists with a
fresh password, and (with the simulator only) seeds demo users due in the next minutes.
Ctrl-C or SIGTERM stops every child; if one dies, the others are stopped and the command
exits non-zero with one line saying which.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import DatabaseError, IntegrityError, transaction

from relevel.embedded_redis import dev_run_remove, dev_run_write, embedded_redis

MANAGE_PY = Path(settings.BASE_DIR) / "manage.py"
ADMIN_USERNAME = "admin"
# Children get this long to finish after SIGTERM (a worker finishes its current job).
STOP_GRACE_SECONDS = 15
WEB_READY_TIMEOUT_SECONDS = 30
SIMPLE_WORKER = ("--worker-class", "rq.worker.SimpleWorker")

# Timings for a demo that shows something within minutes; any of them set in the
# environment (or .env) wins. Applied only with the simulator, never to real calls.
DEMO_TIMINGS = {
    "SCHEDULE_CRON": "* * * * *",
    "CALL_RETRY_DELAY_SECONDS": "60",
    "SIMULATOR_DELAY_SECONDS": "5",
}


@dataclass(frozen=True)
class DemoUser:
    username: str
    name: str
    phone: str  # numbers from ranges reserved for fiction where the country has one
    local_tz: str
    minutes_from_now: int
    # What the simulator answers, one outcome per attempt (SIMULATOR_SCRIPT), and what the
    # banner says to expect.
    outcomes: tuple[str, ...]
    expect: str
    # Per-user overrides: a retry a minute later, or none, so that each outcome shows once.
    max_retries: int
    retry_delay_minutes: int = 1


# One a minute, so that a newcomer can follow each call from tick to webhook in the output,
# each with a scripted outcome, so that every first run shows every kind within five
# minutes: the no-answer first, so that its retry is seen early too.
DEMO_USERS = (
    DemoUser(
        "demo-maria", "Maria (demo)", "+12025550143", "America/New_York", 1,
        ("no_answer", "completed"), "no answer, then answered on the retry a minute later", 1,
    ),
    DemoUser(
        "demo-asha", "Asha (demo)", "+919876500001", "Asia/Kolkata", 2, ("completed",), "answered", 0
    ),
    DemoUser("demo-kenji", "Kenji (demo)", "+819012345678", "Asia/Tokyo", 3, ("busy",), "busy", 0),
    DemoUser(
        "demo-lucas", "Lucas (demo)", "+5511987654321", "America/Sao_Paulo", 4,
        ("voicemail",), "voicemail (no answer, VOICEMAIL_DETECTED)", 0,
    ),
    DemoUser(
        "demo-olivia", "Olivia (demo)", "+61491570156", "Australia/Lord_Howe", 5,
        ("failed",), "failed (USER_UNRESPONSIVE)", 0,
    ),
)  # fmt: skip
DEMO_USER_BY_USERNAME = {demo.username: demo for demo in DEMO_USERS}
# The call status each simulator outcome ends in (CallKaro's VOICEMAIL_DETECTED: voicemail).
DEMO_OUTCOME_STATUS = {
    "completed": "completed",
    "no_answer": "no_answer",
    "voicemail": "voicemail",
    "busy": "busy",
    "failed": "failed",
}


def demo_simulator_script(users: list) -> str:
    """SIMULATOR_SCRIPT for the demo users seeded (by phone: the simulator knows no names);
    a demo number another user already had was not seeded, and is not scripted."""
    entries = []
    for user in users:
        demo = DEMO_USER_BY_USERNAME[user.username]
        entries.append(f"{demo.phone}={','.join(demo.outcomes)}")
    return ";".join(entries)


class StartupError(Exception):
    """Something the operator can fix; reported as one line."""


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: tuple[str, ...]


def child_processes(*, port: int, python: str = sys.executable) -> list[ChildSpec]:
    """The processes a full relevel needs, as ``manage.py`` commands."""
    manage = (python, str(MANAGE_PY))
    return [
        ChildSpec("web", (*manage, "runserver", "--noreload", f"127.0.0.1:{port}")),
        # SimpleWorker runs jobs in the worker process, so the placement thread pool and its
        # connections live from one job to the next (docs/deploying/compose.md, "Running each process").
        ChildSpec(
            "worker",
            (*manage, "rqworker", *settings.WORKER_QUEUES, "--with-scheduler", *SIMPLE_WORKER),
        ),
        ChildSpec("scheduler", (*manage, "rqscheduler")),
        # Events to the product's app, on a worker of their own (docs/events.md).
        ChildSpec(
            "events",
            (*manage, "rqworker", settings.EVENTS_QUEUE, "--with-scheduler", *SIMPLE_WORKER),
        ),
    ]


def redacted_url(url: str) -> str:
    """The URL without its password, fit for a terminal."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def demo_call_time(*, now: datetime, tz: ZoneInfo, minutes_from_now: int):
    """The local wall-clock minute that is ``minutes_from_now`` ahead of ``now`` in ``tz``.

    The offset is added in UTC and only then converted, so a DST change in between is
    handled by zoneinfo rather than by arithmetic on a wall-clock value.
    """
    moment = (now + timedelta(minutes=minutes_from_now)).astimezone(tz)
    return moment.time().replace(second=0, microsecond=0)


def demo_users_seed(*, now: datetime) -> list:
    """Create (or reset) the demo users so that each is due within the next few minutes.

    Their earlier calls are deleted: a call already made today would otherwise keep the
    (user, local date, attempt) constraint from claiming today's slot again on a re-run.
    """
    from calls.models import Call
    from users.services import user_save

    User = get_user_model()
    seeded = []
    for demo in DEMO_USERS:
        tz = ZoneInfo(demo.local_tz)
        try:
            with transaction.atomic():
                user, _ = User.objects.get_or_create(username=demo.username)
                Call.objects.filter(user=user).delete()
                user.name = demo.name
                user.phone = demo.phone
                user.local_tz = demo.local_tz
                user.call_enabled = True
                user.call_time = demo_call_time(now=now, tz=tz, minutes_from_now=demo.minutes_from_now)
                user.max_retries = demo.max_retries
                user.retry_delay_minutes = demo.retry_delay_minutes
                # A missed day e-mails them: the development backend writes each e-mail in
                # this log (docs/notifications.md). example.com is reserved for examples.
                user.email = f"{demo.username}@example.com"
                user.notify_email = True
                user.set_unusable_password()
                user_save(user=user)
                # Set outright: save() recomputes it only when a schedule field changed, and
                # a re-run within the same minute changes none.
                user.next_call_at = user.compute_next_call_at(now=now)
                user.save(update_fields=["next_call_at"])
        except IntegrityError:
            # Another (non-demo) user already has this phone number: leave both alone.
            continue
        seeded.append(user)
    return seeded


def demo_kept() -> str:
    """What a start that resets the demo users leaves as it was: the other people (and their
    calls) and the call policy, in one line."""
    from calls.policy import policy_row
    from calls.policy_changes import API_HISTORY_USERNAME

    others = get_user_model().objects.exclude(
        username__in=[*DEMO_USER_BY_USERNAME, ADMIN_USERNAME, API_HISTORY_USERNAME]
    )
    called = others.filter(call_enabled=True).count()
    people = f"{others.count()} other user(s) ({called} called daily) and their calls"
    row = policy_row()
    set_here = []
    if row.paused:
        set_here.append("paused")
    if row.calling_hours_start is not None and row.calling_hours_end is not None:
        set_here.append(f"calling hours {row.calling_hours_start:%H:%M}-{row.calling_hours_end:%H:%M}")
    if row.max_retries is not None:
        set_here.append(f"{row.max_retries} retries a day")
    if row.retry_delays_minutes:
        set_here.append(f"retry delays {', '.join(map(str, row.retry_delays_minutes))} min")
    if row.retry_statuses is not None:
        set_here.append(f"retried outcomes {', '.join(row.retry_statuses) or 'none'}")
    if row.window_minutes:
        set_here.append(f"a {row.window_minutes}-minute window")
    policy = f"the call policy ({'; '.join(set_here)})" if set_here else "the call policy (all defaults)"
    return f"kept {people}, and {policy}"


def demo_policy_effects(*, users: list) -> list[str]:
    """How the call policy in force changes what the banner promises for the demo ``users``
    (one line each); empty when the demo shows what it promises."""
    from calls.policy import policy_cache_clear, policy_current

    policy_cache_clear()  # what the database says now, not a copy from before the seeding
    rules = policy_current()
    effects = []
    if rules.paused:
        effects.append(
            "calls are paused: no demo call is placed until you resume them (the banner on every "
            "admin page has the button)"
        )
    retried = ", ".join(sorted(rules.retry_statuses)) or "nothing"
    for user in users:
        demo = DEMO_USER_BY_USERNAME[user.username]
        first = DEMO_OUTCOME_STATUS[demo.outcomes[0]]
        if not rules.allows_call_time(user.call_time):
            effects.append(
                f"{user.name}'s call at {user.call_time:%H:%M} local is outside the calling hours "
                f"({rules.describe_hours()}): it is recorded missed, not placed"
            )
        elif demo.max_retries and first not in rules.retry_statuses:
            effects.append(
                f"{user.name}'s {first.replace('_', ' ')} is not retried (the policy retries {retried})"
            )
    return effects


def shared_with_manage(env: dict[str, str]) -> dict[str, str]:
    """What a running ``start`` gives its processes beyond its own environment (Redis, the
    webhook secret, the demo's timings and script), and DEBUG: what `dev.py manage` adds."""
    return {
        name: value
        for name, value in env.items()
        if name in ("REDIS_URL", "DEBUG") or os.environ.get(name) != value
    }


def admin_ensure(*, password: str) -> bool:
    """Make sure the ``admin`` superuser exists with this password; True if it was created."""
    User = get_user_model()
    user, created = User.objects.get_or_create(username=ADMIN_USERNAME)
    if created:
        # An operator's login, not a person to call (an operator may still turn it on).
        user.call_enabled = False
    user.is_staff = user.is_superuser = user.is_active = True
    user.set_password(password)
    user.save()
    return created


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def redis_check(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
    except redis.RedisError as exc:
        raise StartupError(f"cannot reach Redis at REDIS_URL={redacted_url(url)} ({exc})") from None


class Supervisor:
    """Runs child processes, streams their output with a name prefix, stops them together."""

    def __init__(self, *, env: dict[str, str], out: TextIO):
        self.env = env
        self.out = out
        self.lock = threading.Lock()
        self.children: list[tuple[ChildSpec, subprocess.Popen]] = []
        self.readers: list[threading.Thread] = []
        self.stop_requested = threading.Event()
        self.width = 9

    def say(self, text: str) -> None:
        with self.lock:
            self.out.write(text + "\n")
            self.out.flush()

    def _stream(self, name: str, stream) -> None:
        for line in stream:
            self.say(f"{name:<{self.width}}| {line.rstrip()}")

    def start(self, spec: ChildSpec) -> None:
        process = subprocess.Popen(
            spec.argv,
            env=self.env,
            cwd=MANAGE_PY.parent,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            # Own process group: Ctrl-C reaches only this supervisor, which then stops the
            # children in order (a worker finishes its job while Redis is still up).
            start_new_session=True,
        )
        reader = threading.Thread(target=self._stream, args=(spec.name, process.stdout), daemon=True)
        reader.start()
        self.children.append((spec, process))
        self.readers.append(reader)

    def first_exited(self) -> tuple[ChildSpec, int] | None:
        for spec, process in self.children:
            code = process.poll()
            if code is not None:
                return spec, code
        return None

    def wait_until_stop_or_exit(self, *, timeout: float | None = None) -> tuple[ChildSpec, int] | None:
        """Block until a stop is requested, a child exits (returned) or the timeout passes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.stop_requested.wait(0.2):
            exited = self.first_exited()
            if exited:
                return exited
            if deadline is not None and time.monotonic() > deadline:
                break
        return None

    def stop(self) -> None:
        running = [(spec, p) for spec, p in self.children if p.poll() is None]
        for _, process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for spec, process in running:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                self.say(f"relevel: {spec.name} did not stop within {STOP_GRACE_SECONDS} s; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for reader in self.readers:
            reader.join(timeout=2)


class Command(BaseCommand):
    help = (
        "Runs web, worker and scheduler together for local use: migrates, creates the admin "
        "user, seeds demo users (simulator only) and starts an embedded Redis when "
        "REDIS_URL is not set. Ctrl-C stops everything."
    )
    requires_system_checks = []  # the children run them; a failing check shows there

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000, help="web server port (default 8000)")
        parser.add_argument(
            "--no-demo-users", action="store_true", help="do not create or reset the demo users"
        )

    def handle(self, *args, port: int, no_demo_users: bool, **options):
        try:
            code = self.run(port=port, seed_demo=not no_demo_users)
        except StartupError as exc:
            self.stderr.write(f"relevel: {exc}")
            code = 1
        except KeyboardInterrupt:
            self.stderr.write("relevel: interrupted")
            code = 130
        if code:
            sys.exit(code)

    def say(self, text: str) -> None:
        self.stdout.write(f"relevel: {text}")
        self.stdout.flush()

    def run(self, *, port: int, seed_demo: bool) -> int:
        if not port_is_free(port):
            raise StartupError(f"port {port} is already in use; choose another with --port")
        simulator = settings.CALL_PROVIDER == "simulator"
        with contextlib.ExitStack() as stack:
            redis_url = os.environ.get("REDIS_URL", "")
            if redis_url:
                redis_check(redis_url)
                redis_note = redacted_url(redis_url)
            else:
                try:
                    redis_url = stack.enter_context(embedded_redis())
                except RuntimeError as exc:
                    raise StartupError(str(exc)) from None
                redis_note = f"{redis_url} (embedded; emptied when you stop)"
            self.say(f"Redis at {redis_note}")

            self.migrate()
            password = os.environ.get("ADMIN_PASSWORD") or secrets.token_urlsafe(9)
            created = admin_ensure(password=password)
            self.say(f"{'created' if created else 'reset the password of'} the superuser '{ADMIN_USERNAME}'")
            demo_users = []
            if seed_demo and simulator:
                restart = get_user_model().objects.filter(username__in=DEMO_USER_BY_USERNAME).exists()
                demo_users = demo_users_seed(now=datetime.now(UTC))
                if restart:
                    self.say(
                        f"reset {len(demo_users)} demo users, due in the next few minutes (their "
                        f"earlier calls deleted); {demo_kept()}"
                    )
                else:
                    self.say(f"{len(demo_users)} demo users are due in the next few minutes")
                effects = demo_policy_effects(users=demo_users)
                for effect in effects:
                    self.say(f"the call policy changes the demo: {effect}")
                if restart and not effects:
                    self.say("the call policy leaves the demo's outcomes as the banner below promises")
            elif seed_demo:
                self.say(f"no demo users: CALL_PROVIDER is {settings.CALL_PROVIDER}, not the simulator")

            env = self.child_env(port=port, redis_url=redis_url, demo_users=demo_users)
            # `dev.py manage` runs a command beside this one with the same environment (the
            # same Redis above all: its jobs must reach these workers): docs/getting-started.md.
            dev_run_write(env=shared_with_manage(env))
            stack.callback(dev_run_remove)
            supervisor = Supervisor(env=env, out=sys.stdout)
            stack.callback(supervisor.stop)
            self.install_signal_handlers(supervisor)
            for spec in child_processes(port=port):
                supervisor.start(spec)

            exited = self.wait_for_web(supervisor, port=port)
            if exited is None and not supervisor.stop_requested.is_set():
                banner = self.banner(
                    port=port, password=password, demo_users=demo_users, redis_note=redis_note, env=env
                )
                supervisor.say(banner)
                exited = supervisor.wait_until_stop_or_exit()
            if exited is None:
                supervisor.say("relevel: stopping web, worker and scheduler")
                supervisor.stop()
                supervisor.say("relevel: stopped")
                return 0
            spec, code = exited
            supervisor.stop()
            others = ", ".join(s.name for s, _ in supervisor.children if s is not spec)
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
            self.stderr.write(
                f"relevel: the {spec.name} process {how}; stopped {others} "
                f"(its output is above, prefixed '{spec.name}')"
            )
            return 1
        return 0  # pragma: no cover - the with block always returns

    def migrate(self) -> None:
        database = settings.DATABASES["default"]
        where = database["NAME"] if "sqlite" in database["ENGINE"] else database.get("HOST") or "localhost"
        try:
            call_command("migrate", interactive=False, verbosity=0)
        except DatabaseError as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StartupError(
                f"cannot migrate the database at {where} (DATABASE_URL): {first_line}"
            ) from None
        self.say(f"database ready ({database['ENGINE'].rsplit('.', 1)[-1]}: {where})")

    def child_env(self, *, port: int, redis_url: str, demo_users: list | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["REDIS_URL"] = redis_url
        env["PYTHONUNBUFFERED"] = "1"
        # The simulator signs its webhooks with this, and our endpoint checks them, exactly
        # as with CallKaro; a per-run secret keeps the demo on the signed path.
        env.setdefault("CALLKARO_WEBHOOK_SECRET", secrets.token_hex(16))
        # The operator API's token for this session (README's curl examples work as written),
        # unless one is set in the environment or .env (the settings read both).
        if not settings.QUEUE_API_TOKEN:
            env.setdefault("QUEUE_API_TOKEN", secrets.token_urlsafe(32))
        env["SIMULATOR_WEBHOOK_URL"] = f"http://127.0.0.1:{port}/api/webhooks/simulator"
        if settings.CALL_PROVIDER == "simulator":
            for name, value in DEMO_TIMINGS.items():
                env.setdefault(name, value)
            if demo_users:
                env.setdefault("SIMULATOR_SCRIPT", demo_simulator_script(demo_users))
        return env

    def install_signal_handlers(self, supervisor: Supervisor) -> None:
        def request_stop(signum, frame):
            if supervisor.stop_requested.is_set():
                # A second Ctrl-C: do not wait for the children any longer.
                for _, process in supervisor.children:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
            supervisor.stop_requested.set()

        for signum in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            if signum is not None:
                signal.signal(signum, request_stop)

    def wait_for_web(self, supervisor: Supervisor, *, port: int) -> tuple[ChildSpec, int] | None:
        deadline = time.monotonic() + WEB_READY_TIMEOUT_SECONDS
        while not port_answers(port):
            exited = supervisor.wait_until_stop_or_exit(timeout=0.2)
            if exited or supervisor.stop_requested.is_set():
                return exited
            if time.monotonic() > deadline:
                raise StartupError(
                    f"the web server did not answer on port {port} within {WEB_READY_TIMEOUT_SECONDS} s"
                )
        return None

    def banner(
        self, *, port: int, password: str, demo_users: list, redis_note: str, env: dict[str, str]
    ) -> str:
        base = f"http://127.0.0.1:{port}"
        rule = "=" * 72
        if settings.QUEUE_API_TOKEN:
            token, bearer = "the QUEUE_API_TOKEN you set", "$QUEUE_API_TOKEN"
        else:
            token = bearer = env.get("QUEUE_API_TOKEN", "")
            token += " (this session's)"
        lines = [
            rule,
            "relevel is running. Ctrl-C stops everything.",
            "",
            f"  Dashboard     {base}/dashboard/",
            f"  App (admin)   {base}/admin/",
            f"  RQ dashboard  {base}/django-rq/",
            f"  Log in as     {ADMIN_USERNAME} / {password}",
            f"  API token     {token}",
            f"                e.g. curl -H 'Authorization: Bearer {bearer}' '{base}/api/health?detail=1'",
            "                (in a browser logged in as staff, the session is enough for GET)",
            f"  Provider      {settings.CALL_PROVIDER}",
            f"  Redis         {redis_note}",
        ]
        if demo_users:
            lines += [
                "",
                f"  Demo users, called by the scheduler tick (cron '{env.get('SCHEDULE_CRON')}'), "
                "with scripted outcomes:",
            ]
            for user in demo_users:
                expect = DEMO_USER_BY_USERNAME[user.username].expect
                lines.append(
                    f"    {user.name:<15} {user.local_tz:<20} {user.call_time:%H:%M} local  {expect}"
                )
        lines.append(rule)
        return "\n".join(lines)
