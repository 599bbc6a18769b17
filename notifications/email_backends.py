"""The development e-mail backend: each message in `dev.py start`'s log instead of sent.

Django's console backend prints the whole message, To: header and all; this one logs the
same through logging, with the address masked, so that the dev log follows the rule that
logs never carry a whole address."""

from __future__ import annotations

import logging

from django.core.mail.backends.base import BaseEmailBackend

from .masking import mask_email

logger = logging.getLogger("relevel.notifications.email")


class LoggedEmailBackend(BaseEmailBackend):
    def send_messages(self, email_messages) -> int:
        for message in email_messages:
            logger.info(
                "E-mail not sent (development backend) to %s, subject %r:\n%s",
                ", ".join(mask_email(address) for address in message.recipients()),
                message.subject,
                message.body,
            )
        return len(email_messages)
