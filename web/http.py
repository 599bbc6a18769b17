"""The HTTP edges every app's JSON views share, as decorators and helpers (in the manner of
healthchecks' hc/api/decorators.py): each decorator answers a request that breaks its rule
with the one JSON error shape, so a view body only ever sees requests it can act on.
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import math
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, UnreadablePostError
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

logger = logging.getLogger("relevel.api")

View = Callable[..., HttpResponse]

# Run per request by operator_required for session-authenticated callers only; the same
# check CsrfViewMiddleware would have made (csrf_protect builds one the same way).
_csrf = CsrfViewMiddleware(lambda request: HttpResponse())

# How deeply a JSON body may nest: deeper is refused before it reaches the database.
JSON_MAX_DEPTH = 32


def error_response(message: str, status: int, *, headers: dict[str, str] | None = None) -> JsonResponse:
    """The one error shape of the API: {"success": false, "error": "<one readable line>"}."""
    return JsonResponse({"success": False, "error": message}, status=status, headers=headers)


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


class BadPayload(ValueError):
    """A JSON body we will not store; the message is safe to return to the caller."""


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e999: JSON allows it, PostgreSQL's jsonb does not
        raise ValueError("number out of range")
    return number


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_body_decode(body: bytes) -> Any:
    """The body as JSON that the database can store, or BadPayload.

    PostgreSQL refuses NUL characters and unpaired surrogates in text and jsonb, and
    NaN/Infinity in jsonb; Python's json accepts all of them, so they are refused here
    rather than turning into a 500 when the payload is saved.
    """
    try:
        payload = json.loads(body, parse_float=_finite_float, parse_constant=_reject_constant)
    except RecursionError:
        raise BadPayload("JSON is nested too deeply") from None
    except ValueError:  # also UnicodeDecodeError, and integers of more than 4300 digits
        raise BadPayload("body is not valid JSON") from None
    stack = [(payload, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > JSON_MAX_DEPTH:
            raise BadPayload("JSON is nested too deeply")
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key)
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            _check_text(value)
    return payload


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadPayload("JSON strings must not contain unpaired surrogates") from None
    if "\x00" in text:
        raise BadPayload("JSON strings must not contain NUL characters")
