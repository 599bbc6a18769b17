"""Recipients as logs and the admin may show them: a phone to its last four digits (as the
calls' logs do), an e-mail address to its first letter and its domain."""

from __future__ import annotations

import re

from calls.logsafe import mask_phone

from .models import Channel

_EMAIL_RE = re.compile(r"([A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]*@([A-Za-z0-9.\-]+\.[A-Za-z]{2,})")


def mask_email(address: str | None) -> str:
    """jane.doe@example.com -> j***@example.com"""
    if not address or "@" not in address:
        return "-"
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}"


def mask_recipient(*, channel: str, address: str | None) -> str:
    return mask_phone(address) if channel == Channel.SMS else mask_email(address)


def redact_emails(text: str) -> str:
    """Every e-mail address in free text (an SMTP server's refusal quotes the address), masked."""
    return _EMAIL_RE.sub(lambda match: f"{match[1]}***@{match[2]}", text)
