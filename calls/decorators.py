"""Request checks shared by the HTTP views, as decorators (in the manner of healthchecks'
hc/api/decorators.py): each one answers a request that breaks its rule with a JSON error,
so a view body only ever sees requests it can act on.
"""

from __future__ import annotations

import hmac
import io
import logging
import select
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse, UnreadablePostError
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt
from redis.exceptions import RedisError

from . import monitoring, queues
from .providers import provider_named
from .providers.base import WebhookAuth

logger = logging.getLogger("relevel.api")

View = Callable[..., HttpResponse]

# Run per request by operator_required for session-authenticated callers only; the same
# check CsrfViewMiddleware would have made (csrf_protect builds one the same way).
_csrf = CsrfViewMiddleware(lambda request: HttpResponse())


def error_response(message: str, status: int, *, headers: dict[str, str] | None = None) -> JsonResponse:
    """The one error shape of the API: {"success": false, "error": "<one readable line>"}."""
    return JsonResponse({"success": False, "error": message}, status=status, headers=headers)


def redis_unavailable_response(exc: RedisError) -> JsonResponse:
    reason = monitoring.redis_error_reason(exc)
    logger.error("Redis unavailable: %s", reason)
    return error_response(f"Redis is unavailable: {reason}", 503)


def require_methods(*methods: str) -> Callable[[View], View]:
    """Like django.views.decorators.http.require_http_methods, but the 405 is JSON."""
    allowed = ", ".join(methods)

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method not in methods:
                return error_response(f"method not allowed; use {allowed}", 405, headers={"Allow": allowed})
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def _read_unlengthed_wsgi_body(request: HttpRequest, max_bytes: int) -> bytes | None:
    """The body of a WSGI request sent without Content-Length (``Transfer-Encoding:
    chunked``), read up to one byte past ``max_bytes``; None if there is nothing to do.

    Django sizes a WSGI body by Content-Length alone and reads a body without one as empty,
    so a chunked webhook would fail its signature check. A server that de-chunks the body
    and ends wsgi.input where the body ends says so with ``wsgi.input_terminated`` (gunicorn
    always does); only then may wsgi.input be read to its end without hanging.
    """
    meta = request.META
    if meta.get("CONTENT_LENGTH") or not meta.get("wsgi.input_terminated") or "wsgi.input" not in meta:
        return None
    return meta["wsgi.input"].read(max_bytes + 1)


def limit_body(max_bytes: int) -> Callable[[View], View]:
    """413 for a body over ``max_bytes``, judged on Content-Length before reading and on
    the bytes actually read (ASGI and chunked requests may understate Content-Length).
    A chunked WSGI body (no Content-Length) is read here, within the same limit.

    Django's own DATA_UPLOAD_MAX_MEMORY_SIZE check would answer a plain 400, and an
    unparsable Content-Length would make ``request.body`` raise: both are handled here.
    """
    too_big = f"body larger than {max_bytes // 1024} KB"

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            try:
                declared = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                declared = -1
            if declared < 0:
                return error_response("invalid Content-Length header", 400)
            if declared > max_bytes:
                return error_response(too_big, 413)
            try:
                unlengthed = _read_unlengthed_wsgi_body(request, max_bytes)
            except OSError:  # the client went away mid-body
                return error_response("request body could not be read", 400)
            if unlengthed is not None:
                if len(unlengthed) > max_bytes:
                    return error_response(too_big, 413)
                # What Django reads request.body from: now the whole body, and its length.
                request._stream = io.BytesIO(unlengthed)
                request.META["CONTENT_LENGTH"] = str(len(unlengthed))
            try:
                body = request.body
            except RequestDataTooBig:
                return error_response(too_big, 413)
            except UnreadablePostError:
                return error_response("request body could not be read", 400)
            if len(body) > max_bytes:
                return error_response(too_big, 413)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def provider_webhook_authenticated(view: View) -> View:
    """401 unless the request comes from the provider named by the view's ``provider``
    argument (each provider's own scheme: a URL token, a shared-secret header, an HMAC
    signature; see calls/providers/). Nothing is written for a refused request.

    A provider with no credential configured is accepted only while DEBUG is on; with DEBUG
    off its webhooks are refused (503), and `manage.py check --deploy` says why.
    """

    @wraps(view)
    def wrapper(request: HttpRequest, *args, provider: str, **kwargs) -> HttpResponse:
        try:
            verdict = provider_named(provider).authenticate_webhook(
                body=request.body, headers=request.headers, query=request.GET
            )
        except (TypeError, ValueError):
            verdict = WebhookAuth.DENIED  # a forged header that the comparison refuses
        if verdict is WebhookAuth.UNCONFIGURED:
            if not settings.DEBUG:
                logger.error("Webhook refused: no %s webhook credential is set and DEBUG is off", provider)
                return error_response("webhook authentication not configured", 503)
            logger.warning("Accepting an unauthenticated %s webhook: no credential is set (DEBUG)", provider)
        elif verdict is not WebhookAuth.OK:
            # Never the token or the headers: only who knocked.
            logger.warning(
                "Webhook rejected: invalid or missing %s credentials (from %s)",
                provider,
                request.META.get("REMOTE_ADDR"),
            )
            return error_response("invalid or missing webhook credentials", 401)
        return view(request, *args, provider=provider, **kwargs)

    return wrapper


def connection_checked_without_a_query(view: View) -> View:
    """Django's health check of a persistent connection (CONN_HEALTH_CHECKS) is a SELECT 1
    before each request's first query: a round trip, a third of a webhook's time under
    load. A connection the server has closed (a restart, pg_terminate_backend, an idle
    timeout) has its goodbye waiting on the socket, a FATAL message or the end of the
    stream, which a poll with no timeout sees without asking the server. Only then does
    Django's own check run (and reconnect); a quiet socket counts as checked.

    Not for silent network losses, which the SELECT 1 would only have found after TCP's
    own timeout too."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if (
            connection.vendor == "postgresql"
            and connection.connection is not None
            and connection.health_check_enabled
            and not connection.health_check_done
        ):
            from psycopg import Error as PsycopgError

            try:
                poller = select.poll()
                poller.register(connection.connection.fileno(), select.POLLIN)
                connection.health_check_done = not poller.poll(0)
            except (OSError, ValueError, PsycopgError):
                pass  # Django's check runs, as without this decorator
        return view(request, *args, **kwargs)

    return wrapper


def _bearer_token_response(request: HttpRequest, authorization: str) -> HttpResponse | None:
    """None when the bearer token is QUEUE_API_TOKEN, else the error to answer."""
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return error_response(
            "Authorization header must be 'Bearer <token>'",
            401,
            headers={"WWW-Authenticate": 'Bearer realm="relevel"'},
        )
    expected = settings.QUEUE_API_TOKEN
    if not expected:
        return error_response("token authentication is disabled (QUEUE_API_TOKEN is not set)", 403)
    # Bytes, not str: compare_digest refuses str holding non-ASCII characters.
    if not hmac.compare_digest(token.encode(), expected.encode()):
        logger.warning("API request with a wrong bearer token (from %s)", request.META.get("REMOTE_ADDR"))
        return error_response("invalid API token", 403)
    return None


def operator_required(view: View) -> View:
    """A logged-in staff user (session), or ``Authorization: Bearer <QUEUE_API_TOKEN>``.

    401 without credentials, 403 for a non-staff user or a wrong token. The view is
    csrf_exempt so that scripts with a token need no CSRF cookie; a session is a cookie
    the browser sends on its own, so for session callers the CSRF check is made here.
    Sets ``request.operator`` ("user:<id>" or "token"), the key rate limits count by.
    """

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        authorization = request.headers.get("Authorization")
        if authorization is not None:
            rejected = _bearer_token_response(request, authorization)
            if rejected is not None:
                return rejected
            request.operator = "token"
            return view(request, *args, **kwargs)

        user = request.user
        if not user.is_authenticated:
            return error_response(
                "authentication required: log in as staff or send 'Authorization: Bearer <token>'",
                401,
                headers={"WWW-Authenticate": 'Bearer realm="relevel"'},
            )
        if not (user.is_active and user.is_staff):
            return error_response("staff access required", 403)
        if _csrf.process_view(request, None, (), {}) is not None:
            return error_response(
                "CSRF verification failed: send the csrftoken cookie's value in X-CSRFToken", 403
            )
        request.operator = f"user:{user.pk}"
        return view(request, *args, **kwargs)

    return csrf_exempt(wrapper)


def _count_hit(key: str, period: int) -> tuple[int, int]:
    """Count one request in a fixed window of ``period`` seconds; (count, seconds left)."""
    connection = queues.calls_queue().connection
    # One MULTI: the key is created with its expiry, so a crash between the two can never
    # leave a counter that lasts forever (INCR then EXPIRE could).
    with connection.pipeline(transaction=True) as pipe:
        pipe.set(key, 0, ex=period, nx=True)
        pipe.incr(key)
        pipe.ttl(key)
        _, count, ttl = pipe.execute()
    return int(count), int(ttl)


def rate_limit(*, scope: str, limit: int, period: int) -> Callable[[View], View]:
    """429 with Retry-After beyond ``limit`` requests per ``period`` seconds per operator.

    The counter lives in Redis (the queue's connection), not in Django's cache: the project
    configures no cache, and the default local-memory one would count per gunicorn worker.
    Apply inside operator_required, which names the caller. Redis down: 503.
    """

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            key = f"relevel:ratelimit:{scope}:{request.operator}"
            try:
                count, ttl = _count_hit(key, period)
            except RedisError as exc:
                return redis_unavailable_response(exc)
            if count > limit:
                retry_after = max(ttl, 1)
                logger.warning("Rate limit hit on %s by %s", scope, request.operator)
                return error_response(
                    f"rate limit exceeded: {limit} requests per {period} seconds; retry in {retry_after} s",
                    429,
                    headers={"Retry-After": str(retry_after)},
                )
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
