"""How a channel's send can fail, so that the sender knows whether to try again."""

from __future__ import annotations


class ChannelNotConfigured(Exception):
    """The channel lacks its settings (no Twilio account, say): the message is skipped."""


class SendFailed(Exception):
    """The message was not sent. ``transient``: nothing reached the service (a refused
    connection, a 429), so trying again later cannot send it twice. Anything that may have
    reached it (a read timeout, a 5xx) is not transient: at most once beats twice."""

    def __init__(self, message: str, *, transient: bool = False, code: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.code = code


class RecipientOptedOut(SendFailed):
    """The service refuses this recipient because they opted out with it (Twilio 21610)."""
