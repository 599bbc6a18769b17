"""gunicorn's logger for relevel's web process (deploy/gunicorn.conf.py selects it).

The access log format there already leaves out what carries phone numbers (the query
string of an admin search, the Referer of the page after it); this logger masks any number
left in a line, in a path or in gunicorn's own error lines, as relevel's log handler does.
"""

from __future__ import annotations

from gunicorn import glogging

from calls.logsafe import RedactPhonesFilter


class PhoneRedactingLogger(glogging.Logger):
    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            # Only the handlers gunicorn made itself (it tags them), fresh on each setup.
            for handler in log.handlers:
                if getattr(handler, "_gunicorn", False):
                    handler.addFilter(RedactPhonesFilter())
