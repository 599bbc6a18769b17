import os
import sys

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "relevel.settings")
try:
    application = get_wsgi_application()
except ImproperlyConfigured as exc:
    # Same one line as manage.py gives, instead of a traceback in the server's log.
    sys.stderr.write(f"relevel: configuration error: {exc}\n")
    raise SystemExit(2) from None
