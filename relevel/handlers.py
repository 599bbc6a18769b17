"""The web process's WSGI application (relevel/wsgi.py): Django's full stack for every
page and API, and a lean one for the provider webhooks.

A webhook is a machine's signed POST: it has no session, no cookie, no CSRF token, no user
and no messages, yet the full stack builds and consults each of them on every request, and
resolves its path through every app's URL patterns. Under load that was about a fifth of a
webhook's CPU (BENCHMARKS.md, "Webhook: profile and fix"), and the webhook is the one route
a provider calls for every status of every call. The lean stack keeps every middleware
that is not in WEBHOOK_SKIPPED_MIDDLEWARE (so a middleware added to settings.MIDDLEWARE
later runs for webhooks too, unless it is skipped here on purpose): SecurityMiddleware's
redirect and headers, CommonMiddleware's host check and Content-Length, and
XFrameOptionsMiddleware's header. The views keep their own checks (method, body size,
signature, JSON), which never depended on the middleware.
"""

from __future__ import annotations

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler

# Everything under it takes the lean stack: the routes of relevel/urls_webhooks.py.
WEBHOOK_PATH_PREFIX = "/api/webhooks/"
WEBHOOK_URLCONF = "relevel.urls_webhooks"
# What a webhook never uses: static files (WhiteNoise serves STATIC_URL only), the session
# and the user read from it, CSRF (the webhook views are csrf_exempt: they authenticate
# by the provider's signature), and the admin's flash messages.
WEBHOOK_SKIPPED_MIDDLEWARE = frozenset(
    {
        "whitenoise.middleware.WhiteNoiseMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    }
)


def webhook_middleware() -> list[str]:
    """settings.MIDDLEWARE without what a webhook never uses, in the same order."""
    return [path for path in settings.MIDDLEWARE if path not in WEBHOOK_SKIPPED_MIDDLEWARE]


class WebhookHandler(WSGIHandler):
    """Django's WSGI handler with webhook_middleware() and the webhooks' own URLconf."""

    def load_middleware(self, is_async: bool = False) -> None:
        # BaseHandler.load_middleware reads settings.MIDDLEWARE; this runs once, when the
        # process starts, before any request.
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = webhook_middleware()
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full

    def get_response(self, request):
        # Only the webhook routes to match (request_finished resets the URLconf after).
        request.urlconf = WEBHOOK_URLCONF
        return super().get_response(request)


class Application:
    """Sends /api/webhooks/* to the lean handler and everything else to the full one."""

    def __init__(self) -> None:
        self.full = WSGIHandler()
        self.webhooks = WebhookHandler()

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "").startswith(WEBHOOK_PATH_PREFIX):
            return self.webhooks(environ, start_response)
        return self.full(environ, start_response)
