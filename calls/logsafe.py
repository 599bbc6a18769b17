"""What may go into a log line: phone numbers masked to their last four digits."""

from __future__ import annotations


def mask_phone(phone: str | None) -> str:
    """+919876543210 -> ********3210: logs never carry a whole number."""
    if not phone:
        return "-"
    return "*" * max(len(phone) - 4, 0) + phone[-4:]
