"""What may go into a log line: phone numbers masked to their last four digits.

``mask_phone`` masks a number we know is one (a user's phone). ``redact_phones`` masks
every phone number found in free text (a provider's message, an exception, a whole log
record), however it is written: E.164 with or without its ``+``, with spaces, dashes,
dots or parentheses. ``RedactPhonesFilter`` applies it to every record a handler emits.
"""

from __future__ import annotations

import logging
import re

# A regex rather than phonenumbers.PhoneNumberMatcher: the matcher finds a number without
# "+" only given its region, so "919876543210" (a provider quoting our number without its
# plus) would be missed, and a missed number is a leak. The rule errs on masking:
#   - "+" (or "%2B", URL-encoded) then at least 7 digits, in groups joined by up to two
#     separators (" ", "-", ".", "(", ")", and a URL's "+" and "%20"): "+919876543210",
#     "+91 98765 43210", "+1 (312) 555-0147", "%2B91+98765+43210";
#   - without "+", at least 8 digits the same way, not inside a word, a decimal, a time
#     or a dashed id (an underscore is no shield): "919876543210", "91 98765 43210", "(030) 1234-5678".
# Tokens that look like numbers but are not phones, and that operators need intact, are
# matched first and kept: ISO dates and times (the tick's summary line), UUIDs (job ids),
# IPv4 addresses (who sent a webhook).
# "+" and "%20" too: a space in a URL's query string ("?q=%2B91+98765+43210").
_SEPARATOR = r"(?:[ \t\u00a0\-.()+]|%20){0,2}"
_KEEP = (
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?"
    r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])"
)
_DIGITS = rf"\(?\d(?:{_SEPARATOR}\d)*"
_PHONE_RE = re.compile(
    rf"(?P<keep>{_KEEP})"
    # (A date in brackets, "(2026-11-28)", is kept too: the bracket must not start a phone.)
    rf"|(?P<phone>(?:\+|%2[Bb]){_DIGITS}|(?<![A-Za-z0-9:.+\-/%])(?!\(\d{{4}}-\d{{2}}-\d{{2}}){_DIGITS})(?!\w)"
)
_MIN_DIGITS_WITH_PLUS = 7
_MIN_DIGITS_WITHOUT_PLUS = 8
# What every phone _PHONE_RE masks contains: 7 digits, none more than two characters from
# the next (two one-character separators; "%20" has digits of its own). A line without
# such a run (most log lines: ids, counts, statuses) cannot hold a number, and this simple
# search costs a tenth of the substitution; it runs on every record a handler emits.
_MAYBE_PHONE_RE = re.compile(rf"\d(?:\D{{0,2}}\d){{{_MIN_DIGITS_WITH_PLUS - 1}}}")


def mask_phone(phone: str | None) -> str:
    """+919876543210 -> *********3210: logs never carry a whole number."""
    if not phone:
        return "-"
    return "*" * max(len(phone) - 4, 0) + phone[-4:]


def _mask_match(match: re.Match) -> str:
    candidate = match["phone"]
    if candidate is None:
        return match[0]
    plus = candidate[:1] == "+" or candidate[:3].upper() == "%2B"
    body = candidate[3:] if candidate[:1] == "%" else candidate
    digits = "".join(char for char in body.replace("%20", " ") if char.isdigit())
    if len(digits) < (_MIN_DIGITS_WITH_PLUS if plus else _MIN_DIGITS_WITHOUT_PLUS):
        return candidate
    # Written compactly, so that a number comes out masked as mask_phone masks it.
    return mask_phone(("+" if plus else "") + digits)


def redact_phones(text: str) -> str:
    """``text`` with every phone number in it masked to its last four digits."""
    if not text or _MAYBE_PHONE_RE.search(text) is None:
        return text
    return _PHONE_RE.sub(_mask_match, text)


class RedactPhonesFilter(logging.Filter):
    """Masks phone numbers in everything a record will print: its message with its
    arguments, its traceback (RQ logs a failed job's traceback, exception text and all)
    and its stack. Installed on the console handler (settings.LOGGING), so that no line
    relevel, Django or RQ writes holds a whole number, whoever logged it."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not stop the logging call
            message = f"{record.msg} (arguments that did not fit: {record.args!r})"
        redacted = redact_phones(message)
        if redacted != message or record.args:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_phones(record.exc_text)
            # Formatters print exc_text when set; a handler reading exc_info itself (and
            # formatting it again, unmasked) must not get the chance.
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact_phones(record.stack_info)
        return True
