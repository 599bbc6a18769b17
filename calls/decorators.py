"""The calls app's own request checks, as decorators: provider webhooks' authentication and
connection check, rate limits counted in Redis, and Redis being down. The ones every app
shares (JSON errors, methods, body limits, operator auth) are web/http.py's."""

from __future__ import annotations

import logging
import select
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from redis.exceptions import RedisError

from web.http import View, error_response

from . import monitoring, queues
from .providers import provider_named
from .providers.base import WebhookAuth

logger = logging.getLogger("relevel.api")


def redis_unavailable_response(exc: RedisError) -> JsonResponse:
    reason = monitoring.redis_error_reason(exc)
    logger.error("Redis unavailable: %s", reason)
    return error_response(f"Redis is unavailable: {reason}", 503)


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
