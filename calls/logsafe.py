"""What may go into a log line: phone numbers masked to their last four digits."""

from __future__ import annotations


def mask_phone(phone: str | None) -> str:
    """+919876543210 -> ********3210: logs never carry a whole number."""
    if not phone:
        return "-"
    return "*" * max(len(phone) - 4, 0) + phone[-4:]


def redact_phones(text: str) -> str:
    """Mask every run of 7+ digits (with the separators people write) to its last four."""
    import re

    return re.sub(
        r"\+?\d[\d\s().-]{5,}\d",
        lambda m: mask_phone(re.sub(r"\D", "", m.group(0))),
        text,
    )
