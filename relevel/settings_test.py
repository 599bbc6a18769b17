"""Settings for the test suite: the real settings with safe test values for secrets.

DATABASE_URL and REDIS_URL come from the environment as usual (docs/development.md, "Tests").
"""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-" + "x" * 40)
os.environ.setdefault("CALL_PROVIDER", "callkaro")
os.environ.setdefault("CALLKARO_API_KEY", "test-api-key")
# Nothing listens on port 9: a test that forgets to fake the provider fails fast, locally.
os.environ.setdefault("CALLKARO_BASE_URL", "http://127.0.0.1:9")
os.environ.setdefault("CALLKARO_AGENT_ID", "agent-test")
os.environ.setdefault("CALLKARO_WEBHOOK_SECRET", "test-webhook-secret-0123456789abcdef")
os.environ.setdefault("QUEUE_API_TOKEN", "test-queue-token-0123456789abcdefgh")
os.environ.setdefault("CALL_PLACE_RETRY_INTERVALS", "0,0")

from .settings import *  # noqa: E402,F403

# Close connections after each request/placement, so that worker threads in tests leave
# no session open on the test database when it is dropped.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405

WHITENOISE_USE_FINDERS = WHITENOISE_AUTOREFRESH = True

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
