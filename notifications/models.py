"""Messages to the people relevel calls: the templates operators edit, every message sent
(or held, dropped, skipped), and the SMS opt-outs people asked for by replying STOP."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Channel(models.TextChoices):
    SMS = "sms", "SMS"
    EMAIL = "email", "E-mail"


class Kind(models.TextChoices):
    DAY_MISSED = "day_missed", "Day missed"


class MessageTemplate(models.Model):
    """The text of one kind of message on one channel, in Django's template language.

    The context (notifications.rendering.message_context) holds ``name``, ``first_name``,
    ``local_date``, ``time_zone``, ``external_id``, ``user`` and ``context``, the per-user
    context variables."""

    kind = models.CharField(max_length=32, choices=Kind.choices, default=Kind.DAY_MISSED)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    subject = models.CharField(
        max_length=200,
        blank=True,
        help_text="E-mail only: the subject line (a template too). SMS messages have none.",
    )
    body = models.TextField(
        help_text="The message, in Django's template language: {{ name }}, {{ local_date }}."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "channel"], name="message_template_one_per_channel")
        ]
        ordering = ["kind", "channel"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.get_channel_display()})"


class NotificationStatus(models.TextChoices):
    # Waiting for its time: now, or when the calling hours open in the user's zone.
    PENDING = "pending", "Waiting"
    # Claimed by a worker, which is talking to Twilio or the mail server.
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    # Not sent on purpose: more than NOTIFY_MAX_DELAY_HOURS late.
    DROPPED = "dropped", "Dropped"
    # Not sent because it could not be: no address, replied STOP, channel not configured.
    SKIPPED = "skipped", "Skipped"


FINAL_STATUSES = frozenset(
    {
        NotificationStatus.SENT,
        NotificationStatus.FAILED,
        NotificationStatus.DROPPED,
        NotificationStatus.SKIPPED,
    }
)


class Notification(models.Model):
    """One message to one user on one channel, from the moment it is due to its outcome.

    The unique (user, kind, local_date, channel) constraint is what makes "at most one
    day-missed message per user per local day per channel" hold whatever happens: a second
    tick, a replay, two concurrent callers all meet it at the INSERT (notifications.services)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=32, choices=Kind.choices, default=Kind.DAY_MISSED)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    local_date = models.DateField(help_text="The user's local day the message is about.")
    status = models.CharField(
        max_length=16, choices=NotificationStatus.choices, default=NotificationStatus.PENDING
    )
    # When it may be sent: at once, or when the calling hours open in the user's zone.
    due_at = models.DateTimeField()
    # Masked (last four digits of a phone, first letter and domain of an address): the
    # admin's list and the logs never show a whole number or address.
    recipient = models.CharField("to", max_length=254, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    provider_message_id = models.CharField(max_length=255, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "kind", "local_date", "channel"], name="notification_one_per_user_day_channel"
            )
        ]
        indexes = [
            # The sweep reads the few messages still waiting or in flight.
            models.Index(
                fields=["due_at"],
                name="notification_open_idx",
                condition=models.Q(status__in=["pending", "sending"]),
            ),
            models.Index(fields=["-created_at"], name="notification_created_idx"),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        channel = self.get_channel_display()
        return f"{self.get_kind_display()} {channel} for user {self.user_id} on {self.local_date}"


class SmsOptOut(models.Model):
    """A user who replied STOP (or STOP CALLS) to our SMS: no SMS until they reply START.

    One row per user, kept after a resume (``resumed_at``) so that operators see when and
    how each change came."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sms_opt_out"
    )
    opted_out_at = models.DateTimeField()
    # Where the opt-out came from: "sms" (a reply), "twilio" (Twilio refused a send with
    # error 21610, the number replied STOP to Twilio directly), "admin".
    source = models.CharField(max_length=32)
    keyword = models.CharField(max_length=64, blank=True, help_text="The reply, such as STOP.")
    message_sid = models.CharField(max_length=64, blank=True)
    also_calls = models.BooleanField("calls too", default=False, help_text="The reply was STOP CALLS.")
    resumed_at = models.DateTimeField(null=True, blank=True)
    resumed_keyword = models.CharField(max_length=64, blank=True)

    class Meta:
        verbose_name = "SMS opt-out"

    def __str__(self) -> str:
        return f"SMS opt-out of user {self.user_id}"

    @property
    def active(self) -> bool:
        return self.resumed_at is None
