"""gunicorn's logger for relevel's web process (deploy/gunicorn.conf.py selects it).

The access log format there already leaves out what carries phone numbers (the query
string of an admin search, the Referer of the page after it); this logger masks any number
left in a line, in a path or in gunicorn's own error lines, as relevel's log handler does.

An access line is built from the atoms its format names only, and only the atoms a client
sends (the path, headers, the user) are masked, each on its own. gunicorn's own way builds
every atom, every request and response header and every environ variable as atoms for each
line, and the whole line then went through the mask, where the timestamp's digit run made
the full substitution run every time: together about a tenth of a webhook's CPU.
"""

from __future__ import annotations

import logging
import os
import re
import traceback
from functools import lru_cache

from gunicorn import glogging

from calls.logsafe import RedactPhonesFilter, redact_phones

# Set on an access record whose atoms are masked already: the handler's filter lets it by.
MASKED = "relevel_phones_masked"
_ATOM = re.compile(r"%\(([^)]*)\)s")
# Atoms gunicorn makes from its own clock and counts, or that are one of a few fixed words:
# they cannot hold a number a client sent. Every other atom is masked.
_OWN_ATOMS = frozenset({"t", "s", "m", "H", "b", "B", "T", "D", "M", "L", "p", "l"})


class _AlreadyMasked(RedactPhonesFilter):
    def filter(self, record: logging.LogRecord) -> bool:
        return True if getattr(record, MASKED, False) else super().filter(record)


@lru_cache(maxsize=4)
def _atom_names(access_log_format: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_ATOM.findall(access_log_format)))


def _header(headers, name: str) -> str | None:
    """The last value of header ``name`` (gunicorn's atoms keep the last one too)."""
    found = None
    for key, value in headers:
        if key.lower() == name:
            found = value
    return found


class PhoneRedactingLogger(glogging.Logger):
    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            # Only the handlers gunicorn made itself (it tags them), fresh on each setup.
            for handler in log.handlers:
                if getattr(handler, "_gunicorn", False):
                    handler.addFilter(_AlreadyMasked())

    def access(self, resp, req, environ, request_time) -> None:
        """gunicorn's access line (the same format and atoms), built and masked cheaply."""
        if not self.access_log_enabled:
            return
        try:
            line_format = self.cfg.access_log_format
            atoms = self._atoms_named(_atom_names(line_format), resp, req, environ, request_time)
            self.access_log.info(line_format, atoms, extra={MASKED: True})
        except Exception:  # noqa: BLE001 - as gunicorn's own access(): a bad line never fails a request
            self.error(traceback.format_exc())

    def _atoms_named(self, names, resp, req, environ, request_time) -> dict[str, object]:
        """glogging.Logger.atoms, as SafeAtoms wraps them, for ``names`` only; masked."""
        atoms: dict[str, object] = {}
        for name in names:
            value = self._atom(name, resp, req, environ, request_time)
            if value is None and (name.startswith("{") or name not in _SIMPLE):
                value = "-"
            if isinstance(value, str):
                value = value.replace('"', '\\"')
                if name not in _OWN_ATOMS:
                    value = redact_phones(value)
            atoms[name] = value
        return atoms

    def _atom(self, name: str, resp, req, environ, request_time) -> object:
        if name in _SIMPLE:
            return _SIMPLE[name](self, resp, environ, request_time)
        lowered = name.lower()
        if lowered.startswith("{") and len(lowered) > 3 and lowered[-2] == "}":
            key, kind = lowered[1:-2], lowered[-1]
            if kind == "i":
                headers = getattr(req, "headers", req)
                return _header(headers.items() if hasattr(headers, "items") else headers, key)
            if kind == "o":
                headers = resp.headers
                return _header(headers.items() if hasattr(headers, "items") else headers, key)
            if kind == "e":
                return next((value for k, value in environ.items() if k.lower() == key), None)
        return None


def _status(resp) -> object:
    status = resp.status
    return status.split(None, 1)[0] if isinstance(status, str) else status


def _sent(resp) -> object:
    return getattr(resp, "sent", None)


# gunicorn's atoms (glogging.Logger.atoms), one function each.
_SIMPLE = {
    "h": lambda log, resp, environ, rt: environ.get("REMOTE_ADDR", "-"),
    "l": lambda log, resp, environ, rt: "-",
    "u": lambda log, resp, environ, rt: log._get_user(environ) or "-",
    "t": lambda log, resp, environ, rt: log.now(),
    "r": lambda log, resp, environ, rt: (
        f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} {environ['SERVER_PROTOCOL']}"
    ),
    "s": lambda log, resp, environ, rt: _status(resp),
    "m": lambda log, resp, environ, rt: environ.get("REQUEST_METHOD"),
    "U": lambda log, resp, environ, rt: environ.get("PATH_INFO"),
    "q": lambda log, resp, environ, rt: environ.get("QUERY_STRING"),
    "H": lambda log, resp, environ, rt: environ.get("SERVER_PROTOCOL"),
    "b": lambda log, resp, environ, rt: _sent(resp) is not None and str(_sent(resp)) or "-",
    "B": lambda log, resp, environ, rt: _sent(resp),
    "f": lambda log, resp, environ, rt: environ.get("HTTP_REFERER", "-"),
    "a": lambda log, resp, environ, rt: environ.get("HTTP_USER_AGENT", "-"),
    "T": lambda log, resp, environ, rt: rt.seconds,
    "D": lambda log, resp, environ, rt: (rt.seconds * 1000000) + rt.microseconds,
    "M": lambda log, resp, environ, rt: (rt.seconds * 1000) + int(rt.microseconds / 1000),
    "L": lambda log, resp, environ, rt: f"{rt.seconds:d}.{rt.microseconds:06d}",
    "p": lambda log, resp, environ, rt: f"<{os.getpid()}>",
}
