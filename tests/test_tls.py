"""Behind TLS (docker compose's settings): browsers are sent to HTTPS and get Secure cookies
and HSTS; machine endpoints that reach gunicorn over plain HTTP from inside still answer."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db

PROXIED_HTTPS = {"HTTP_X_FORWARDED_PROTO": "https"}


@pytest.fixture
def behind_tls(settings):
    # SecurityMiddleware reads these when the client's handler first loads it: set them before.
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = settings.SECURE_HSTS_PRELOAD = True
    return Client()


def test_a_browser_on_plain_http_is_sent_to_https(behind_tls):
    response = behind_tls.get("/admin/login/")
    assert response.status_code == 301
    assert response["Location"] == "https://testserver/admin/login/"


def test_through_the_proxy_pages_get_hsts_and_secure_cookies(behind_tls, admin_user):
    response = behind_tls.get("/admin/login/", **PROXIED_HTTPS)
    assert response.status_code == 200
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert response.cookies["csrftoken"]["secure"] is True
    csrf = response.cookies["csrftoken"].value
    login = behind_tls.post(
        "/admin/login/?next=/admin/",
        {"username": admin_user.username, "password": "password", "csrfmiddlewaretoken": csrf},
        **PROXIED_HTTPS,
    )
    assert login.status_code == 302
    assert login.cookies["sessionid"]["secure"] is True


def test_health_and_the_webhook_answer_over_plain_http_from_inside(behind_tls):
    # The compose healthcheck and a load balancer probe gunicorn directly; the simulator
    # posts to http://web:8000. A redirected POST would be lost.
    assert behind_tls.get(reverse("health")).status_code in (200, 503)
    webhook = behind_tls.post(reverse("call-webhook"), data=b"{}", content_type="application/json")
    assert webhook.status_code == 401  # reached the view: refused for its signature, not redirected
