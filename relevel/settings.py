"""Settings for relevel, read from the environment (see .env.example and docs/deploying/configuration.md)."""

import os
from datetime import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from zoneinfo import available_timezones

import environ
from croniter import croniter
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


class _Env(environ.Env):
    """environ.Env whose bad values are configuration errors naming the variable, so every
    process stops with one readable line (manage.py prints it) instead of a traceback."""

    BOOLEAN_WORDS = {"1", "0", "true", "false", "yes", "no", "on", "off", "t", "f", "y", "n", ""}

    def get_value(self, var, cast=None, default=environ.Env.NOTSET, parse_default=False):
        if cast is bool and str(self.ENVIRON.get(var, "")).strip().lower() not in self.BOOLEAN_WORDS:
            raise ImproperlyConfigured(f"{var} must be true or false, not {self.ENVIRON[var]!r}")
        try:
            return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
        except ImproperlyConfigured:
            raise
        except (TypeError, ValueError) as exc:
            raise ImproperlyConfigured(f"{var} has an invalid value: {exc}") from None


env = _Env()
# A developer may keep local values in .env; the file is ignored by git and never required.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)


def _is_strong_secret(value: str, *, length: int) -> bool:
    """Long and not one character repeated: the measure Django's W009 applies to SECRET_KEY."""
    return len(value) >= length and len(set(value)) >= 5


_INSECURE_KEY = "insecure-dev-key-do-not-use-in-production"
SECRET_KEY = env.str("SECRET_KEY", default="" if not DEBUG else _INSECURE_KEY)
# What `check --deploy` accepts (security.W009): 50+ characters, 5+ different ones, not
# Django's generated development key.
if not DEBUG and (
    SECRET_KEY == _INSECURE_KEY
    or SECRET_KEY.startswith("django-insecure-")
    or not _is_strong_secret(SECRET_KEY, length=50)
):
    raise ImproperlyConfigured(
        "SECRET_KEY must be set to a random string of 50+ characters when DEBUG is off"
    )
# Shared secrets that let a caller in (the operator API's token, providers' webhook keys)
# are guessable when short: with DEBUG off, one that is set must be 32+ characters.
SHARED_SECRET_MIN_LENGTH = 32


def _check_shared_secret(name: str, value: str) -> None:
    if value and not DEBUG and not _is_strong_secret(value, length=SHARED_SECRET_MIN_LENGTH):
        raise ImproperlyConfigured(
            f"{name} must be a random string of {SHARED_SECRET_MIN_LENGTH}+ characters "
            f"when DEBUG is off (it has {len(value)})"
        )


ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- Behind TLS -----------------------------------------------------------------------------
# Off by default (runserver, a trial on plain HTTP); docker compose turns them on, with
# nginx terminating TLS in front of gunicorn. docs/deploying/tls.md lists them.
# The header the TLS-terminating proxy sets to "https" (nginx: X-Forwarded-Proto). Only
# name one your proxy always sets itself, overwriting what a client sent.
_proxy_ssl_header = env.str("SECURE_PROXY_SSL_HEADER", default="").strip()
if _proxy_ssl_header:
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# Machine endpoints are never redirected: a redirected POST is lost (providers do not
# follow it), the webhook is authenticated by its signature, not by a cookie, and the
# compose healthcheck and load balancers probe /api/health over plain HTTP from inside.
SECURE_REDIRECT_EXEMPT = [r"^api/health$", r"^api/webhooks/call$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
if SECURE_HSTS_SECONDS < 0:
    raise ImproperlyConfigured("SECURE_HSTS_SECONDS must be seconds >= 0 (0 sends no HSTS header)")

INSTALLED_APPS = [
    # Project apps come before django_rq: our `rqscheduler` command replaces django-rq's
    # (which belongs to the separate rq-scheduler package) with RQ's own cron.
    "relevel",
    "users",
    "calls",
    # The operators' dashboard (/dashboard/): read-only pages over the calls.
    "dashboard",
    # Messages to the people called (SMS, e-mail) when their day is missed.
    "notifications",
    # Signed events to the product's app (webhooks out): the outbox, endpoints, deliveries.
    "events",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_rq",
    # CSV import and export of users in the admin (users/resources.py).
    "import_export",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's and the dashboard's static files from gunicorn, without a CDN.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "relevel.urls"
WSGI_APPLICATION = "relevel.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "relevel.context_processors.operator_banners",
            ],
        },
    },
]

try:
    DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
except (TypeError, ValueError) as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from None
# Persistent connections (seconds): a worker records hundreds of call answers a second on
# its one connection; reconnecting for every job would cost more than the job's queries.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# The few statements every webhook runs bound on the server (calls/bulk.py's array_cursor
# with at most PREPARED_MAX_ROWS rows: the outcome's UPDATE, a day's marks and events) are
# prepared once per connection, so PostgreSQL plans each shape once instead of on every
# run: 0.4 ms less of PostgreSQL's CPU a webhook with events on (BENCHMARKS.md, issue 21).
# Off behind a pooler in transaction mode unless it keeps prepared statements (PgBouncer
# 1.22 or newer with max_prepared_statements above 0); session mode keeps them.
DATABASE_PREPARED_STATEMENTS = env.bool("DATABASE_PREPARED_STATEMENTS", default=True)
if DATABASE_PREPARED_STATEMENTS and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # psycopg prepares only on a connection with a threshold (Django sets None: never).
    # This one is never reached: a statement is prepared only when asked (prepare=True),
    # and only relevel's server-bound cursors ask; Django's own cursors never prepare.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("prepare_threshold", 2**31 - 1)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    from sqlite3 import dbapi2 as _sqlite  # what Django's SQLite backend uses

    # The tick claims calls with INSERT ... ON CONFLICT DO NOTHING RETURNING (calls/bulk.py),
    # which SQLite has from 3.35; Django itself runs on 3.31+, so without this the first
    # tick, not the start, would fail, with a syntax error.
    if _sqlite.sqlite_version_info < (3, 35, 0):
        raise ImproperlyConfigured(
            f"DATABASE_URL is SQLite, and this Python's SQLite is {_sqlite.sqlite_version}; relevel "
            "needs 3.35 or newer (INSERT ... RETURNING): use a newer Python, or PostgreSQL"
        )
    # SQLite (the zero-setup default) has one writer at a time: web, worker and scheduler
    # wait their turn for up to 20 s rather than fail with "database is locked", and take
    # the write lock when a transaction begins, so two writers cannot deadlock on upgrade.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "users.User"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# One date format on every page: YYYY-MM-DD, as relevel's own times (relevel/formats/en).
FORMAT_MODULE_PATH = ["relevel.formats"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# In development (and tests) static files come straight from the apps, no collectstatic.
WHITENOISE_USE_FINDERS = WHITENOISE_AUTOREFRESH = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Redis and queues -------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
try:
    _redis_url = urlsplit(REDIS_URL)
    _redis_url.port  # noqa: B018 - raises ValueError on a port that is not a number
except ValueError:
    _redis_url = None
if (
    _redis_url is None
    or _redis_url.scheme not in ("redis", "rediss", "unix")
    or not (_redis_url.hostname or _redis_url.path)
):
    raise ImproperlyConfigured("REDIS_URL must look like redis://host:port/db")
# Seconds any one Redis command (or connection attempt) may take before it fails. Short,
# so that a Redis that accepts connections but stops answering costs a web request a few
# seconds, not gunicorn's whole worker timeout: the webhook still records its outcome and
# answers (the tick enqueues the retry it could not), /api/health says 503 in time. One
# value for every process: RQ's worker lengthens its own connection's timeout for its
# blocking wait on the queues by itself, and nothing of relevel's blocks on Redis.
REDIS_SOCKET_TIMEOUT = env.float("REDIS_SOCKET_TIMEOUT", default=5.0)
if REDIS_SOCKET_TIMEOUT <= 0:
    raise ImproperlyConfigured("REDIS_SOCKET_TIMEOUT must be positive seconds, such as 5")


def _with_socket_timeouts(url: str, seconds: float) -> str:
    """``url`` with redis-py's socket timeouts as query arguments (unless it sets its own):
    the only way to give them to the connections django-rq makes from RQ_QUEUES (the
    dashboard, the workers and the cron scheduler), which otherwise wait for ever."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    given = {name for name, _ in query}
    query += [
        (name, str(seconds)) for name in ("socket_timeout", "socket_connect_timeout") if name not in given
    ]
    return urlunsplit(parts._replace(query=urlencode(query)))


# The calls queue (the original design's name) carries every call: batches, retries, the
# simulator's webhooks. The tick has a queue of its own that workers serve first, so a tick
# never waits behind a rush of calls (it would find slots whose window closed meanwhile).
# Job retention follows the original design's intent (RQ keeps by age, not count):
# finished jobs about a day, failed ones about a week.
CALLS_QUEUE = "daily-calls"
TICK_QUEUE = "daily-calls-tick"
# Messages to people (notifications/): served after the calls, so a rush of SMS and e-mail
# never delays a call, and a slow mail server never holds a call's job.
NOTIFICATIONS_QUEUE = "notifications"
WORKER_QUEUES = [TICK_QUEUE, CALLS_QUEUE, NOTIFICATIONS_QUEUE]  # in priority order: what `rqworker` is given
# Events to the product's app have a queue and workers of their own (`rqworker
# relevel-events`), so that a slow or dead receiver never delays a call or a webhook.
EVENTS_QUEUE = "relevel-events"
JOB_RESULT_TTL = env.int("JOB_RESULT_TTL", default=24 * 3600)
JOB_FAILURE_TTL = env.int("JOB_FAILURE_TTL", default=7 * 24 * 3600)
RQ_QUEUES = {
    name: {
        "URL": _with_socket_timeouts(REDIS_URL, REDIS_SOCKET_TIMEOUT),
        "DEFAULT_TIMEOUT": 300,
        "DEFAULT_RESULT_TTL": JOB_RESULT_TTL,
    }
    for name in (CALLS_QUEUE, TICK_QUEUE, NOTIFICATIONS_QUEUE, EVENTS_QUEUE)
}
RQ_SHOW_ADMIN_LINK = True
# Worker processes (rqworker-pool --num-workers). 4 x PROVIDER_MAX_CONCURRENCY 200: 50 threads
# a process, each going on to the next call of its CALL_BATCH_SIZE batch as its answer comes.
QUEUE_CONCURRENCY = env.int("QUEUE_CONCURRENCY", default=4)

# --- Events to the product's app (docs/events.md) -----------------------------------------
# One endpoint from the environment, for simple deployments (others are added in the admin).
EVENTS_WEBHOOK_URL = env.str("EVENTS_WEBHOOK_URL", default="").strip()
EVENTS_WEBHOOK_SECRET = env.str("EVENTS_WEBHOOK_SECRET", default="").strip()
if EVENTS_WEBHOOK_URL and not EVENTS_WEBHOOK_SECRET.startswith("whsec_"):
    raise ImproperlyConfigured(
        "EVENTS_WEBHOOK_SECRET must be a Standard Webhooks secret (whsec_ and base64) "
        "when EVENTS_WEBHOOK_URL is set"
    )
# Short: a receiver that does not answer costs a delivery worker this long, nobody else.
EVENTS_CONNECT_TIMEOUT = env.float("EVENTS_CONNECT_TIMEOUT", default=3.0)
EVENTS_READ_TIMEOUT = env.float("EVENTS_READ_TIMEOUT", default=10.0)
# Seconds before each retry of a failed delivery (then it is given up): 30 s, 5 min,
# 30 min, 2 h, 5 h, 10 h, 14 h, so the last try is 31 h 35 min after the first.
EVENTS_RETRY_SCHEDULE_SECONDS = env.list(
    "EVENTS_RETRY_SCHEDULE_SECONDS", cast=int, default=[30, 300, 1800, 7200, 18000, 36000, 50400]
)
# An endpoint whose deliveries have all failed for this long is disabled (an alert fires).
EVENTS_DISABLE_AFTER_SECONDS = env.int("EVENTS_DISABLE_AFTER_SECONDS", default=24 * 3600)
# When rqscheduler re-sends what was never delivered (a lost job, a killed worker).
EVENTS_SWEEP_CRON = env.str("EVENTS_SWEEP_CRON", default="* * * * *").strip()
# A delivery job claims at most this many of an endpoint's due deliveries at a time, and
# claims again until none is due or EVENTS_BATCH_SECONDS are up (then asks for another job).
EVENTS_BATCH_SIZE = env.int("EVENTS_BATCH_SIZE", default=100)
EVENTS_BATCH_SECONDS = env.float("EVENTS_BATCH_SECONDS", default=10.0)
# A fan-out or delivery job waits this long after the commit that asked for it, so that the
# commits of those moments share it (events/pump.py): events go out this much later, in
# far fewer jobs when webhooks come steadily.
EVENTS_GATHER_SECONDS = env.float("EVENTS_GATHER_SECONDS", default=0.25)
# How long a process trusts its list of the endpoints (a new one is used within this).
EVENTS_ENDPOINTS_CACHE_SECONDS = env.float("EVENTS_ENDPOINTS_CACHE_SECONDS", default=30.0)

# --- Call scheduling ----------------------------------------------------------------------
DEFAULT_TIMEZONE = env.str("DEFAULT_TIMEZONE", default="UTC")
if DEFAULT_TIMEZONE not in available_timezones():
    raise ImproperlyConfigured(f"DEFAULT_TIMEZONE {DEFAULT_TIMEZONE!r} is not an IANA time zone")
try:
    DEFAULT_CALL_TIME = time.fromisoformat(env.str("DEFAULT_CALL_TIME", default="20:30:00"))
except ValueError:
    raise ImproperlyConfigured("DEFAULT_CALL_TIME must be a time such as 20:30:00") from None
CALL_TIME_WINDOW_MINUTES = env.int("CALL_TIME_WINDOW_MINUTES", default=15)
CALL_MAX_RETRIES = env.int("CALL_MAX_RETRIES", default=2)
CALL_RETRY_DELAY_SECONDS = env.int("CALL_RETRY_DELAY_SECONDS", default=1800)
# What relevel listens for in a call's result (docs/conversation.md): the agent's structured
# fields for an opt-out and a call-back, and opt-out phrases beyond the built-in English ones.
CALL_OPT_OUT_FIELD = env.str("CALL_OPT_OUT_FIELD", default="opt_out")
CALL_CALLBACK_FIELD = env.str("CALL_CALLBACK_FIELD", default="callback_at")
CALL_OPT_OUT_PHRASES = env.list("CALL_OPT_OUT_PHRASES", default=[])
SCHEDULE_CRON = env.str("SCHEDULE_CRON", default="*/5 * * * *")
if not croniter.is_valid(SCHEDULE_CRON):
    raise ImproperlyConfigured(f"SCHEDULE_CRON {SCHEDULE_CRON!r} is not a valid cron expression")
# The dashboard's rollup refresh (dashboard.jobs.refresh_daily_stats) on the tick queue; empty: off.
DASHBOARD_REFRESH_CRON = env.str("DASHBOARD_REFRESH_CRON", default="*/10 * * * *").strip()
if DASHBOARD_REFRESH_CRON and not croniter.is_valid(DASHBOARD_REFRESH_CRON):
    raise ImproperlyConfigured(
        f"DASHBOARD_REFRESH_CRON {DASHBOARD_REFRESH_CRON!r} is not a valid cron expression (empty: off)"
    )
# Ended calls' analysis (calls.analysis): the webhook only notes the call in a Redis list;
# this cron hands the noted calls to workers in batches. Empty: off.
ANALYSIS_CRON = env.str("ANALYSIS_CRON", default="* * * * *").strip()
if ANALYSIS_CRON and not croniter.is_valid(ANALYSIS_CRON):
    raise ImproperlyConfigured(f"ANALYSIS_CRON {ANALYSIS_CRON!r} is not a valid cron expression (empty: off)")
# Data lifecycle (calls.retention, docs/operating/data-lifecycle.md): what was said on a
# call (transcript, recording link, raw provider payloads) is erased after
# RETENTION_DAYS_CONTENT days; the call rows themselves after RETENTION_DAYS_CALLS, once the
# dashboard's daily rollup of their day is stored. RETENTION_CRON runs the prune (empty: off).
RETENTION_DAYS_CONTENT = env.int("RETENTION_DAYS_CONTENT", default=90)
RETENTION_DAYS_CALLS = env.int("RETENTION_DAYS_CALLS", default=400)
RETENTION_CRON = env.str("RETENTION_CRON", default="30 2 * * *").strip()
RETENTION_BATCH_SIZE = env.int("RETENTION_BATCH_SIZE", default=1000)
if RETENTION_CRON and not croniter.is_valid(RETENTION_CRON):
    raise ImproperlyConfigured(
        f"RETENTION_CRON {RETENTION_CRON!r} is not a valid cron expression (empty: off)"
    )
# The dashboard shows 31 days and a day's rollup is final two days after it: calls younger
# than that are never pruned, whatever the setting says.
if RETENTION_DAYS_CONTENT < 1 or RETENTION_DAYS_CALLS < 35 or not 1 <= RETENTION_BATCH_SIZE <= 100_000:
    raise ImproperlyConfigured(
        "RETENTION_DAYS_CONTENT must be >= 1, RETENTION_DAYS_CALLS >= 35 and RETENTION_BATCH_SIZE "
        f"1 to 100000 (got {RETENTION_DAYS_CONTENT}, {RETENTION_DAYS_CALLS}, {RETENTION_BATCH_SIZE})"
    )
if CALL_TIME_WINDOW_MINUTES < 1 or CALL_MAX_RETRIES < 0 or CALL_RETRY_DELAY_SECONDS < 0:
    raise ImproperlyConfigured(
        "CALL_TIME_WINDOW_MINUTES must be >= 1; CALL_MAX_RETRIES and CALL_RETRY_DELAY_SECONDS >= 0"
    )

# --- Call provider ------------------------------------------------------------------------
CALL_PROVIDERS = ("callkaro", "vapi", "retell", "simulator")
# The simulator is the default only for local development, so that production never
# silently runs a fake. CALL_PROVIDER chooses who places *new* calls; every provider's
# webhook keeps settling the calls it placed, so its settings stay after a switch.
CALL_PROVIDER = env.str("CALL_PROVIDER", default="simulator" if DEBUG else "callkaro")
if CALL_PROVIDER not in CALL_PROVIDERS:
    raise ImproperlyConfigured(f"CALL_PROVIDER must be one of {', '.join(CALL_PROVIDERS)}")
CALLKARO_API_KEY = env.str("CALLKARO_API_KEY", default="")
CALLKARO_BASE_URL = env.str("CALLKARO_BASE_URL", default="https://api.callkaro.ai").rstrip("/")
CALLKARO_AGENT_ID = env.str("CALLKARO_AGENT_ID", default="")
# CallKaro signs nothing: its webhook URL carries this token (?token=...). The HMAC secret
# is relevel's own signature (the original design's, and the simulator's).
CALLKARO_WEBHOOK_TOKEN = env.str("CALLKARO_WEBHOOK_TOKEN", default="")
CALLKARO_WEBHOOK_SECRET = env.str("CALLKARO_WEBHOOK_SECRET", default="")
_check_shared_secret("CALLKARO_WEBHOOK_TOKEN", CALLKARO_WEBHOOK_TOKEN)
_check_shared_secret("CALLKARO_WEBHOOK_SECRET", CALLKARO_WEBHOOK_SECRET)
CALLKARO_CONNECT_TIMEOUT = env.float("CALLKARO_CONNECT_TIMEOUT", default=5.0)
CALLKARO_READ_TIMEOUT = env.float("CALLKARO_READ_TIMEOUT", default=15.0)
# The same for Vapi and Retell (CallKaro's own settings are their defaults).
PROVIDER_CONNECT_TIMEOUT = env.float("PROVIDER_CONNECT_TIMEOUT", default=CALLKARO_CONNECT_TIMEOUT)
PROVIDER_READ_TIMEOUT = env.float("PROVIDER_READ_TIMEOUT", default=CALLKARO_READ_TIMEOUT)
if min(CALLKARO_CONNECT_TIMEOUT, CALLKARO_READ_TIMEOUT, PROVIDER_CONNECT_TIMEOUT, PROVIDER_READ_TIMEOUT) <= 0:
    raise ImproperlyConfigured(
        "CALLKARO_CONNECT_TIMEOUT, CALLKARO_READ_TIMEOUT, PROVIDER_CONNECT_TIMEOUT and "
        "PROVIDER_READ_TIMEOUT must be positive seconds"
    )
VAPI_BASE_URL = env.str("VAPI_BASE_URL", default="https://api.vapi.ai").rstrip("/")
VAPI_API_KEY = env.str("VAPI_API_KEY", default="")
VAPI_ASSISTANT_ID = env.str("VAPI_ASSISTANT_ID", default="")
VAPI_PHONE_NUMBER_ID = env.str("VAPI_PHONE_NUMBER_ID", default="")
VAPI_WEBHOOK_SECRET = env.str("VAPI_WEBHOOK_SECRET", default="")
_check_shared_secret("VAPI_WEBHOOK_SECRET", VAPI_WEBHOOK_SECRET)
RETELL_BASE_URL = env.str("RETELL_BASE_URL", default="https://api.retellai.com").rstrip("/")
RETELL_API_KEY = env.str("RETELL_API_KEY", default="")
RETELL_FROM_NUMBER = env.str("RETELL_FROM_NUMBER", default="")
RETELL_AGENT_ID = env.str("RETELL_AGENT_ID", default="")
# Retell signs webhooks with the API key that has the "webhook" badge in its dashboard.
RETELL_WEBHOOK_API_KEY = env.str("RETELL_WEBHOOK_API_KEY", default=RETELL_API_KEY)
# What the chosen provider cannot place calls without: start-up stops naming the first gap.
PROVIDER_REQUIRED_SETTINGS = {
    "callkaro": ("CALLKARO_API_KEY",),
    "vapi": ("VAPI_API_KEY", "VAPI_ASSISTANT_ID", "VAPI_PHONE_NUMBER_ID"),
    "retell": ("RETELL_API_KEY", "RETELL_FROM_NUMBER", "RETELL_AGENT_ID"),
    "simulator": (),
}
for _name in PROVIDER_REQUIRED_SETTINGS[CALL_PROVIDER]:
    if not globals()[_name]:
        raise ImproperlyConfigured(f"{_name} must be set when CALL_PROVIDER={CALL_PROVIDER}")
# How long a call sent whose answer was lost (read timeout, 5xx) waits for its webhook
# before it is failed and the retry policy applies.
CALL_UNCONFIRMED_TIMEOUT_SECONDS = env.int("CALL_UNCONFIRMED_TIMEOUT_SECONDS", default=900)
if CALL_UNCONFIRMED_TIMEOUT_SECONDS < 1:
    raise ImproperlyConfigured("CALL_UNCONFIRMED_TIMEOUT_SECONDS must be at least 1")
# Simulator: where it posts its webhooks (our own endpoint), after how long, and the mix.
SIMULATOR_WEBHOOK_URL = env.str(
    "SIMULATOR_WEBHOOK_URL", default="http://127.0.0.1:8000/api/webhooks/simulator"
)
SIMULATOR_DELAY_SECONDS = env.int("SIMULATOR_DELAY_SECONDS", default=5)
SIMULATOR_OUTCOMES = env.str("SIMULATOR_OUTCOMES", default="completed:70,no_answer:15,busy:10,failed:5")
# Scripted outcomes for some numbers, one per attempt (the last repeats), instead of the mix:
# "+12025550143=no_answer,completed;+819012345678=busy". `dev.py start` sets it for its demo
# users, so that every first run shows each outcome and a retry; other numbers get the mix.
SIMULATOR_OUTCOME_NAMES = ("completed", "no_answer", "voicemail", "busy", "failed")


def _simulator_script(text: str) -> dict[str, tuple[str, ...]]:
    script = {}
    for entry in filter(None, (part.strip() for part in text.split(";"))):
        number, _, names = entry.partition("=")
        outcomes = tuple(name.strip() for name in names.split(",") if name.strip())
        if not number.strip().startswith("+") or not outcomes or set(outcomes) - set(SIMULATOR_OUTCOME_NAMES):
            raise ImproperlyConfigured(
                "SIMULATOR_SCRIPT must be number=outcome,outcome entries separated by ';', such as "
                f"+12025550143=no_answer,completed, with outcomes among {', '.join(SIMULATOR_OUTCOME_NAMES)}"
            )
        script[number.strip()] = outcomes
    return script


SIMULATOR_SCRIPT = _simulator_script(env.str("SIMULATOR_SCRIPT", default=""))

# --- HTTP API -------------------------------------------------------------------------------
QUEUE_API_TOKEN = env.str("QUEUE_API_TOKEN", default="")
_check_shared_secret("QUEUE_API_TOKEN", QUEUE_API_TOKEN)

# Every record the console prints (relevel's, Django's, RQ's, with its tracebacks) has its
# phone numbers masked to the last four digits, whoever logged it and however the number
# was written (calls/logsafe.py). RQ's loggers find this handler on the root and use it.
# Django's own handlers (its DEFAULT_LOGGING: a console one for DEBUG, runserver's access
# log) and redis-py's are replaced by masked ones: "django" goes to the root's handler,
# runserver's lines keep their look.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s [%(name)s] %(message)s"},
        "django.server": {
            "()": "django.utils.log.ServerFormatter",
            "format": "[{server_time}] {message}",
            "style": "{",
        },
    },
    "filters": {
        "redact_phones": {"()": "calls.logsafe.RedactPhonesFilter"},
        # What the console leaves out (relevel/log_filters.py): static files' access lines,
        # the favicon's 404, RQ's bookkeeping around every job.
        "quiet_static": {"()": "relevel.log_filters.QuietStaticRequestsFilter"},
        "quiet_rq": {"()": "relevel.log_filters.QuietRQBookkeepingFilter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact_phones"]},
        "django.server": {
            "class": "logging.StreamHandler",
            "formatter": "django.server",
            "filters": ["redact_phones"],
        },
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django": {"handlers": [], "propagate": True},
        "django.server": {
            "handlers": ["django.server"],
            "level": "INFO",
            "propagate": False,
            "filters": ["quiet_static"],
        },
        "django.request": {"filters": ["quiet_static"]},
        "django.db.backends": {"level": "WARNING"},
        # On the loggers (not the handlers): RQ's records are made on these two.
        "rq.worker": {"filters": ["quiet_rq"]},
        "rq.cron": {"filters": ["quiet_rq"]},
        # The twilio library logs each request's URL and headers at INFO.
        "twilio.http_client": {"level": "WARNING"},
        # redis-py gives this logger a bare handler of its own, unless it is configured.
        "push_response": {"handlers": [], "propagate": True},
    },
}

# --- Jobs ---------------------------------------------------------------------------------
# Seconds between the RQ attempts of a place-call job after a transient provider error.
CALL_PLACE_RETRY_INTERVALS = env.list("CALL_PLACE_RETRY_INTERVALS", cast=int, default=[2, 4])
if any(seconds < 0 for seconds in CALL_PLACE_RETRY_INTERVALS):
    raise ImproperlyConfigured("CALL_PLACE_RETRY_INTERVALS must be seconds >= 0, such as 2,4")
CALL_JOB_TIMEOUT = env.int("CALL_JOB_TIMEOUT", default=120)
# A queued call whose job is not in Redis this long after it was due is enqueued again.
CALL_STRANDED_AFTER_SECONDS = env.int("CALL_STRANDED_AFTER_SECONDS", default=120)
# Outcome retries are gathered into shared batch jobs: each retry's time is rounded up to
# the next multiple of this many seconds, and one job releases all the retries of that
# instant. A retry may start up to this long after its computed time (inside its window).
RETRY_GATHER_SECONDS = env.int("RETRY_GATHER_SECONDS", default=5)
if not 1 <= RETRY_GATHER_SECONDS <= 60:
    raise ImproperlyConfigured(f"RETRY_GATHER_SECONDS must be 1 to 60 (got {RETRY_GATHER_SECONDS})")
# A call left in "dialing" this long (its worker died mid-request) is failed and retried.
CALL_DIALING_TIMEOUT_SECONDS = env.int("CALL_DIALING_TIMEOUT_SECONDS", default=600)
# A call left ringing or in progress this long never got its final webhook: it is failed
# (and retried if it was only ringing).
CALL_OUTCOME_TIMEOUT_SECONDS = env.int("CALL_OUTCOME_TIMEOUT_SECONDS", default=3600)
# First attempts are placed in batch jobs of this many calls, each batch on a thread pool:
# RQ runs one job per process, and a provider answers in ~200 ms, so one call per job would
# leave a worker idle waiting on the network. Twice a process's threads (100 for 50): a
# thread whose answer came goes on to the batch's next call, so the threads wait on the
# provider, not on the job's take and record (78% of a bare client at 50, 89% at 100 on the
# bench host: BENCHMARKS.md, issue 21).
CALL_BATCH_SIZE = env.int("CALL_BATCH_SIZE", default=100)
# Calls in flight at once to the provider, in total across the QUEUE_CONCURRENCY worker
# processes (each process gets an equal share of at least one). At 200 (50 a process, one
# per call of a batch) a worker box sends up to 200 requests at once, about 1,000 a second
# at a 200 ms answer: lower it for an account whose API rate limit is below that
# (docs/deploying/scale-out.md).
PROVIDER_MAX_CONCURRENCY = env.int("PROVIDER_MAX_CONCURRENCY", default=200)
if CALL_BATCH_SIZE < 1 or PROVIDER_MAX_CONCURRENCY < 1 or QUEUE_CONCURRENCY < 1:
    raise ImproperlyConfigured(
        "CALL_BATCH_SIZE, PROVIDER_MAX_CONCURRENCY and QUEUE_CONCURRENCY must be at least 1"
    )


def _per_provider(name: str) -> dict[str, int]:
    """A limit for every provider ("10") or for some ("vapi=10,retell=20"; the others 0).
    0 means no limit."""
    text = env.str(name, default="0").strip()
    try:
        if "=" not in text:
            limits = dict.fromkeys(CALL_PROVIDERS, int(text))
        else:
            limits = dict.fromkeys(CALL_PROVIDERS, 0)
            for part in filter(None, (item.strip() for item in text.split(","))):
                provider, _, value = part.partition("=")
                if provider.strip() not in CALL_PROVIDERS:
                    raise ValueError
                limits[provider.strip()] = int(value)
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} must be a number (every provider) or provider=number pairs such as "
            f"vapi=10,retell=20, with providers among {', '.join(CALL_PROVIDERS)}"
        ) from None
    if any(limit < 0 for limit in limits.values()):
        raise ImproperlyConfigured(f"{name} must be 0 (no limit) or more")
    return limits


# --- Provider capacity ---------------------------------------------------------------------
# Providers cap live calls, not requests (Vapi: 10 concurrent by default; Retell: 429
# concurrency_limit_reached). A call is live from the moment it is sent until its outcome,
# or until PROVIDER_LIVE_CALL_TIMEOUT_SECONDS if no outcome comes. 0 = no cap.
PROVIDER_MAX_LIVE_CALLS = _per_provider("PROVIDER_MAX_LIVE_CALLS")
PROVIDER_MAX_CALLS_PER_SECOND = _per_provider("PROVIDER_MAX_CALLS_PER_SECOND")
PROVIDER_LIVE_CALL_TIMEOUT_SECONDS = env.int("PROVIDER_LIVE_CALL_TIMEOUT_SECONDS", default=900)
# The forecast's guess of a call's length until there are 7 days of measured ones.
CALL_AVERAGE_DURATION_SECONDS = env.int("CALL_AVERAGE_DURATION_SECONDS", default=180)
# Users sharing a slot are dialed across its first CALL_SPREAD_MINUTES, each at a stable
# offset, instead of all in its first second. 0 = all at once.
CALL_SPREAD_MINUTES = env.int("CALL_SPREAD_MINUTES", default=0)
if PROVIDER_LIVE_CALL_TIMEOUT_SECONDS < 1 or CALL_AVERAGE_DURATION_SECONDS < 1:
    raise ImproperlyConfigured(
        "PROVIDER_LIVE_CALL_TIMEOUT_SECONDS and CALL_AVERAGE_DURATION_SECONDS must be at least 1"
    )
# The spread must fit the window with a minute to spare: its last step is released a minute
# before the window closes (calls/slots.py), and the call policy refuses a window_minutes
# the spread does not fit in the same way (calls/forms.py).
if not 0 <= CALL_SPREAD_MINUTES < CALL_TIME_WINDOW_MINUTES:
    raise ImproperlyConfigured(
        f"CALL_SPREAD_MINUTES={CALL_SPREAD_MINUTES} does not fit CALL_TIME_WINDOW_MINUTES="
        f"{CALL_TIME_WINDOW_MINUTES}: it must be 0 or more and at most {CALL_TIME_WINDOW_MINUTES - 1}, "
        "a minute less than the window"
    )

# --- Notifications (docs/notifications.md) ------------------------------------------------
# A message due outside the calling hours waits for them; one that would go out more than
# this many hours after the day was missed is dropped, with the reason.
NOTIFY_MAX_DELAY_HOURS = env.int("NOTIFY_MAX_DELAY_HOURS", default=12)
# Tries of a send that failed where nothing reached the service (connection refused, 429),
# NOTIFY_RETRY_DELAY_SECONDS times the try number apart.
NOTIFY_SEND_MAX_ATTEMPTS = env.int("NOTIFY_SEND_MAX_ATTEMPTS", default=3)
NOTIFY_RETRY_DELAY_SECONDS = env.int("NOTIFY_RETRY_DELAY_SECONDS", default=60)
NOTIFY_JOB_TIMEOUT = env.int("NOTIFY_JOB_TIMEOUT", default=60)
# The sweep: messages whose job Redis lost, and sends a dead worker left unfinished
# (claimed this many seconds ago), on the tick queue. Empty: off.
NOTIFY_SWEEP_CRON = env.str("NOTIFY_SWEEP_CRON", default="*/5 * * * *").strip()
NOTIFY_SWEEP_BATCH = 1_000
NOTIFY_SENDING_STALE_SECONDS = env.int("NOTIFY_SENDING_STALE_SECONDS", default=600)
if NOTIFY_SWEEP_CRON and not croniter.is_valid(NOTIFY_SWEEP_CRON):
    raise ImproperlyConfigured(
        f"NOTIFY_SWEEP_CRON {NOTIFY_SWEEP_CRON!r} is not a valid cron expression (empty: off)"
    )
if NOTIFY_MAX_DELAY_HOURS < 0 or NOTIFY_SEND_MAX_ATTEMPTS < 1 or NOTIFY_RETRY_DELAY_SECONDS < 0:
    raise ImproperlyConfigured(
        "NOTIFY_MAX_DELAY_HOURS and NOTIFY_RETRY_DELAY_SECONDS must be >= 0, NOTIFY_SEND_MAX_ATTEMPTS >= 1"
    )

# SMS through Twilio. Without an account SID, token and sender, SMS messages are skipped
# (recorded with the reason); nothing else needs Twilio.
TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env.str("TWILIO_AUTH_TOKEN", default="")
# The sender: a Twilio number in E.164, or a Messaging Service (which wins when both are set).
TWILIO_FROM_NUMBER = env.str("TWILIO_FROM_NUMBER", default="")
TWILIO_MESSAGING_SERVICE_SID = env.str("TWILIO_MESSAGING_SERVICE_SID", default="")
# Where the API is: Twilio's own, or a fake on 127.0.0.1 for tests and staging.
TWILIO_API_BASE_URL = env.str("TWILIO_API_BASE_URL", default="https://api.twilio.com").rstrip("/")
TWILIO_CONNECT_TIMEOUT = env.float("TWILIO_CONNECT_TIMEOUT", default=5.0)
TWILIO_READ_TIMEOUT = env.float("TWILIO_READ_TIMEOUT", default=15.0)
# The inbound webhook's URL exactly as configured in Twilio (its signature covers it). Empty:
# the URL the request arrived at, which is right unless a proxy rewrites the host, scheme
# or path on the way (then set this, e.g. https://relevel.example.com/api/webhooks/twilio/sms).
TWILIO_SMS_WEBHOOK_URL = env.str("TWILIO_SMS_WEBHOOK_URL", default="")

# E-mail through Django's backends. EMAIL_URL picks one (django-environ): smtp://user:pass@host:587
# with STARTTLS is smtp+tls://, implicit TLS smtp+ssl://. Development logs each message
# instead (notifications.email_backends.LoggedEmailBackend, addresses masked). EMAIL_BACKEND,
# when set, wins: e.g. anymail.backends.postmark.EmailBackend with ANYMAIL_POSTMARK_SERVER_TOKEN.
_email_url = env.str("EMAIL_URL", default="")
if _email_url:
    vars().update(environ.Env.email_url_config(_email_url))
elif DEBUG:
    EMAIL_BACKEND = "notifications.email_backends.LoggedEmailBackend"
else:
    vars().update(environ.Env.email_url_config("smtp://localhost:25"))
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="") or EMAIL_BACKEND  # noqa: F821 - set just above
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="relevel <noreply@localhost>")
# The domain of the Message-ID of each e-mail; empty: this host's name.
NOTIFY_EMAIL_MESSAGE_ID_DOMAIN = env.str("NOTIFY_EMAIL_MESSAGE_ID_DOMAIN", default="") or None
# django-anymail's settings, from every ANYMAIL_<NAME> variable (ANYMAIL_POSTMARK_SERVER_TOKEN
# -> ANYMAIL["POSTMARK_SERVER_TOKEN"]): https://anymail.dev/en/stable/esps/
ANYMAIL = {
    name[len("ANYMAIL_") :]: value for name, value in os.environ.items() if name.startswith("ANYMAIL_")
}
