import os
import sys

import django
from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "relevel.settings")
try:
    # What get_wsgi_application() does, then two handlers instead of one: the provider
    # webhooks take a lean middleware stack (relevel/handlers.py).
    django.setup(set_prefix=False)
    from relevel.handlers import Application

    application = Application()
except ImproperlyConfigured as exc:
    # Same one line as manage.py gives, instead of a traceback in the server's log.
    sys.stderr.write(f"relevel: configuration error: {exc}\n")
    raise SystemExit(2) from None
