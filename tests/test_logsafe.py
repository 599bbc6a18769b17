"""No log line of relevel's, Django's or RQ's holds a whole phone number, however it is written."""

from __future__ import annotations

import io
import logging
import random
import subprocess
from contextlib import contextmanager
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from rq import SimpleWorker

from calls import logsafe, queues
from calls.logsafe import RedactPhonesFilter, mask_phone, redact_phones
from calls.models import Call, CallStatus
from calls.providers.base import ProviderPermanentError, ProviderTransientError

PHONE = "+919876543210"
# The one number as providers and people write it.
WRITTEN = [
    "+919876543210",
    "919876543210",
    "+91 98765 43210",
    "91 98765 43210",
    "+91-98765-43210",
    "(+91) 98765-43210",
    "+91.98765.43210",
    "%2B919876543210",
    "%2B91+98765+43210",  # a URL's query string, spaces as "+"
    "%2B91%2098765%2043210",
    "9876543210",
]
# Any of these in a line gives the number away.
GIVEAWAYS = ["919876543210", "9876543210", "98765 43210", "98765-43210", "98765.43210", "98765+43210"]


def assert_no_number(text: str) -> None:
    for giveaway in GIVEAWAYS:
        assert giveaway not in text, f"{giveaway!r} leaked into: {text!r}"


@pytest.mark.parametrize("written", WRITTEN)
def test_a_number_is_masked_to_its_last_four_digits_however_it_is_written(written):
    redacted = redact_phones(f"Provider says {written} is not reachable")
    assert_no_number(redacted)
    assert redacted.startswith("Provider says ") and redacted.endswith("*3210 is not reachable")


def test_an_e164_number_is_masked_as_mask_phone_masks_it():
    assert redact_phones(f"to {PHONE}.") == f"to {mask_phone(PHONE)}."
    assert redact_phones(mask_phone(PHONE)) == mask_phone(PHONE)  # masking twice changes nothing


@pytest.mark.parametrize(
    "text",
    [
        "+1 (312) 555-0147 is busy",
        "+49 30 1234 56789 is busy",
        "Key (phone)=(+4930123456789) already exists.",
        '{"to_number": "+4930123456789"}',
    ],
)
def test_other_countries_formats_and_quoted_numbers_are_masked(text):
    redacted = redact_phones(text)
    for digits in ("3125550147", "312) 555", "30 1234 5", "4930123456789", "3012345"):
        assert digits not in redacted
    assert any(last in redacted for last in ("0147", "6789"))


@pytest.mark.parametrize(
    "line",
    [
        "Tick at 2026-11-28T15:00:00+00:00: due=120 claimed=118 enqueued=118 missed=2",
        "2026-11-28 15:00:00,123 INFO [rq.worker] daily-calls: Job OK (call-42)",
        "Worker 3f2c: job 550e8400-e29b-41d4-a716-446655440000: exception raised",
        "Webhook rejected: invalid or missing signature (from 192.168.100.200)",
        "Scheduled retry 1/2 for call 42 in 30 minutes",
        "Placed a batch of 50 calls: {'placed': 48, 'transient': 2}",
        "redis: ConnectionError: Error 111 connecting to 127.0.0.1:6379.",
        "Successfully completed job in 0:00:00.012345s",
        "Call 12: no retry, 2026-11-29 00:15 IST is past its local day (2026-11-28)",
    ],
)
def test_what_operators_grep_for_is_left_alone(line):
    assert redact_phones(line) == line


def test_the_quick_test_for_a_number_never_skips_a_line_that_holds_one():
    """redact_phones skips the substitution for lines without seven close digits: over
    many made-up lines of digits and separators, skipping changes no result."""
    rng = random.Random(12)
    alphabet = "0123456789 -.()+%2B20x:/\t\u00a0T_"
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30)))
        assert redact_phones(text) == logsafe._PHONE_RE.sub(logsafe._mask_match, text), repr(text)


def test_a_provider_error_masks_the_numbers_in_its_own_text():
    # The text of the exception itself is safe: a job that re-raises it, RQ's traceback of
    # that job and the call's stored error all carry the masked form.
    for error_class in (ProviderTransientError, ProviderPermanentError):
        error = error_class(f"CallKaro HTTP 503: {'919876543210'} / +91 98765 43210 unreachable")
        assert_no_number(str(error))
        assert_no_number(repr(error))
        assert "3210 unreachable" in str(error)


def emit_through(handler: logging.Handler, logger: logging.Logger, *args, **kwargs) -> str:
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        logger.error(*args, **kwargs)
    finally:
        handler.setStream(previous)
    return stream.getvalue()


def configured_console_handler() -> logging.StreamHandler:
    """The console handler settings.LOGGING installs on the root logger."""
    [handler] = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler) and any(isinstance(f, RedactPhonesFilter) for f in h.filters)
    ]
    return handler


def test_the_console_handler_masks_messages_arguments_tracebacks_and_stacks():
    handler = configured_console_handler()
    logger = logging.getLogger("some.library")
    out = emit_through(handler, logger, "Dialing %s (%s)", "919876543210", {"to": "+91 98765 43210"})
    assert_no_number(out)
    assert "Dialing ********3210" in out

    try:
        raise RuntimeError("Key (phone)=(+919876543210) already exists")
    except RuntimeError:
        out = emit_through(handler, logger, "Job failed", exc_info=True, stack_info=True)
    assert_no_number(out)
    assert "RuntimeError: Key (phone)=(*********3210) already exists" in out
    assert "Stack (most recent call last)" in out


def test_every_handler_logging_has_masks_numbers():
    # Django's DEFAULT_LOGGING adds handlers of its own (a console one for DEBUG, runserver's
    # access log): settings.LOGGING replaces them, so no line escapes the filter.
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in logging.Logger.manager.loggerDict)]
    for logger in loggers:
        for handler in logger.handlers:
            if type(handler).__module__.startswith("_pytest") or isinstance(handler, logging.NullHandler):
                continue  # the suite's own capture; a handler that writes nothing
            assert any(isinstance(f, RedactPhonesFilter) for f in handler.filters), (logger.name, handler)


def test_runservers_access_log_masks_a_searched_number():
    [handler] = [
        h for h in logging.getLogger("django.server").handlers if not type(h).__module__.startswith("_")
    ]
    out = emit_through(
        handler,
        logging.getLogger("django.server"),
        '"%s" %s %s',
        "GET /admin/users/user/?q=%2B91+98765+43210 HTTP/1.1",
        "200",
        "4142",
    )
    assert_no_number(out)
    assert '"GET /admin/users/user/?q=*********3210 HTTP/1.1" 200 4142' in out


@contextmanager
def console_output():
    """What the configured console handler prints while the block runs."""
    handler = configured_console_handler()
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        yield stream
    finally:
        handler.setStream(previous)


def due_call(make_call, make_user):
    """A call due now, for a user whose local clock shows about noon: its worker (in this
    process or another) dials it inside its window, and its retry falls on the same day."""
    from django.utils import timezone

    from tests.clock import midday_user_fields

    now = timezone.now()
    user = make_user(phone=PHONE, **midday_user_fields(now))
    return make_call(user=user, scheduled_for=now, local_date=now.astimezone(ZoneInfo(user.local_tz)).date())


def quoting_provider(fake_callkaro, answer_status: int) -> None:
    message = f"{PHONE} unreachable (dialed 919876543210, +91 98765 43210)"
    fake_callkaro.respond_with((answer_status, {"status": "error", "message": message}))


@pytest.mark.django_db(transaction=True)
def test_a_worker_running_a_job_that_re_raises_the_providers_error_logs_no_number(
    fake_callkaro, make_call, make_user, redis_conn
):
    # A transient error with tries left is raised out of the job: RQ logs the job's
    # traceback on rq.worker, exception text and all; relevel logs the attempts.
    quoting_provider(fake_callkaro, 503)
    call = due_call(make_call, make_user)
    queues.enqueue_place_call(call.pk)
    queue = queues.calls_queue()
    with console_output() as out:
        SimpleWorker([queue], connection=queue.connection).work(burst=True, with_scheduler=True)
    log = out.getvalue()
    assert "exception raised while executing (calls.jobs.place_call)" in log  # RQ's traceback
    assert "ProviderNotSentError: CallKaro HTTP 503: *********3210 unreachable" in log
    assert_no_number(log)
    call.refresh_from_db()
    assert call.status == CallStatus.FAILED and len(fake_callkaro.requests) == 3
    assert_no_number(call.error)
    assert Call.objects.filter(retry_of=call).exists()


@pytest.mark.slow
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="a worker process shares the database: PostgreSQL"
)
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_process_logs_no_number(fake_callkaro, make_call, make_user, redis_conn):
    from tests.test_faults import ROOT, burst_worker_command, child_env

    quoting_provider(fake_callkaro, 503)
    call = due_call(make_call, make_user)
    queues.enqueue_place_call(call.pk)
    result = subprocess.run(
        burst_worker_command("--with-scheduler"),
        cwd=ROOT,
        env=child_env(CALLKARO_BASE_URL=fake_callkaro.url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "Traceback" in log and "failed, provider unreachable" in log
    assert_no_number(log)
