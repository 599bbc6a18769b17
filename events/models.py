"""Events to the product's app: the outbox (Event), where they go (Endpoint) and how each
one fared there (Delivery, DeliveryAttempt). docs/events.md is the receiver's side."""

from __future__ import annotations

import base64
import os

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models


class EventType(models.TextChoices):
    CALL_ENDED = "call.ended", "call.ended: an attempt's final outcome"
    DAY_REACHED = "day.reached", "day.reached: the first answered attempt of a local day"
    DAY_MISSED = "day.missed", "day.missed: a local day ended with no answered attempt"
    USER_OPTED_OUT = "user.opted_out", "user.opted_out: the user opted out of calls"
    USER_SCHEDULE_CHANGED = "user.schedule_changed", "user.schedule_changed: time, zone, phone or on/off"


def new_secret() -> str:
    """A Standard Webhooks secret: whsec_ and 32 random bytes in base64 (the spec asks for
    24 to 64)."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def validate_secret(value: str) -> None:
    if not value.startswith("whsec_"):
        raise ValidationError("A secret starts with whsec_ (Standard Webhooks), then base64.")
    try:
        key = base64.b64decode(value.removeprefix("whsec_") + "==", validate=False)
    except ValueError as exc:
        raise ValidationError("After whsec_ the secret must be base64.") from exc
    if not 24 <= len(key) <= 64:
        raise ValidationError(f"The secret is {len(key)} bytes; Standard Webhooks asks for 24 to 64.")


def validate_event_types(value: object) -> None:
    known = set(EventType.values)
    if not isinstance(value, list) or not all(isinstance(name, str) and name in known for name in value):
        raise ValidationError(f"A list of event types among {', '.join(sorted(known))} (empty: all).")


class Endpoint(models.Model):
    """A URL of the product's app that receives events, signed with its own secret."""

    name = models.CharField(max_length=100, unique=True)
    url = models.URLField("URL", max_length=2000)
    secret = models.CharField(
        max_length=200,
        default=new_secret,
        validators=[validate_secret],
        help_text="whsec_ and base64: the receiver verifies each event's signature with it.",
    )
    event_types = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_event_types],
        help_text='Which events it receives, e.g. ["day.missed", "day.reached"]; empty: all.',
    )
    active = models.BooleanField(default=True)
    # Configured by EVENTS_WEBHOOK_URL and EVENTS_WEBHOOK_SECRET, kept in step with them.
    from_environment = models.BooleanField(default=False, editable=False)
    # Since when every delivery has failed (None: the last one succeeded). After
    # EVENTS_DISABLE_AFTER_SECONDS the endpoint is disabled.
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_reason = models.CharField(max_length=200, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class Event(models.Model):
    """One event in the outbox, written in the transaction of the change it reports."""

    # The stable id: the webhook-id header of every delivery of it, retries and replays alike.
    # Unique through Meta.constraints: unique=True would also build a LIKE-pattern index on
    # PostgreSQL that no query uses (the admin's "=webhook_id" search is case-insensitive),
    # one more index write for each of a rush's thousands of events.
    webhook_id = models.CharField("webhook id", max_length=40)
    type = models.CharField(max_length=32, choices=EventType.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    external_id = models.CharField(max_length=128, null=True, blank=True)
    # Per user, 1, 2, 3... without gaps (events.services.events_emit): a receiver orders by it.
    sequence = models.PositiveBigIntegerField()
    local_date = models.DateField(null=True, blank=True)
    occurred_at = models.DateTimeField(db_index=True)
    data = models.JSONField(default=dict)
    # When its deliveries were created (None: not yet; the sweep looks for those).
    fanned_out_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [("replay_event", "Can replay events to an endpoint")]
        constraints = [
            models.UniqueConstraint(fields=["user", "sequence"], name="event_user_sequence"),
            models.UniqueConstraint(fields=["webhook_id"], name="event_unique_webhook_id"),
        ]
        indexes = [
            models.Index(
                fields=["occurred_at"],
                condition=models.Q(fanned_out_at__isnull=True),
                name="event_unfanned_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.webhook_id}"


class UserEventSequence(models.Model):
    """The last sequence number given to a user's events. Incremented in the transaction
    that writes the event: its row lock orders concurrent writers, and a rollback takes the
    number back, so a user's sequence has no gaps."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE)
    last = models.PositiveBigIntegerField(default=0)


class DayMark(models.Model):
    """A user's local day was found reached or missed: at most one such event per day."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, db_index=False)
    local_date = models.DateField()
    type = models.CharField(max_length=32, choices=EventType.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "local_date", "type"], name="daymark_one_per_day"),
        ]


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    # Every retry of the schedule failed.
    FAILED = "failed", "Given up"


class Delivery(models.Model):
    """One event to one endpoint: tried until a 2xx, on EVENTS_RETRY_SCHEDULE_SECONDS."""

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(
        Endpoint, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    # When the next try is due. A worker that takes it moves this a lease ahead first, so a
    # worker killed mid-request leaves it due again once the lease is over.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event"], name="delivery_one_per_endpoint"),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status="pending"),
                name="delivery_pending_due_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"Delivery {self.pk} ({self.get_status_display()})"


class DeliveryAttempt(models.Model):
    """One HTTP request of a delivery, as the admin shows it."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    attempted_at = models.DateTimeField()
    # None: no HTTP answer (refused, timed out).
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField()
    response_excerpt = models.CharField(max_length=500, blank=True)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ("attempted_at", "pk")
