from __future__ import annotations

from datetime import date, datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Max, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from calls.models import MAX_DELAY_MINUTES, MAX_RETRIES
from calls.slots import zone_or_none

from .call_days import ALL_CALL_DAYS, next_call_for
from .validators import (
    validate_context,
    validate_e164_phone,
    validate_external_id,
    validate_iana_time_zone,
)

# The fields that decide when (and whether) a user is called next.
SCHEDULE_FIELDS = frozenset({"phone", "local_tz", "call_enabled", "call_time", "call_days", "pause_until"})

# Two kinds of login share the users table: operators (staff or superuser: they log in to
# the admin) and the people relevel calls (never either). One test for both, here: the
# people list, the users API, the export and the tick read PEOPLE; the Operators admin
# reads OPERATORS. An operator is never called, whatever their phone and call fields say.
OPERATORS = Q(is_staff=True) | Q(is_superuser=True)
PEOPLE = Q(is_staff=False, is_superuser=False)


def default_time_zone() -> str:
    return settings.DEFAULT_TIMEZONE


def default_call_time():
    return settings.DEFAULT_CALL_TIME


def unknown_zone_error(local_tz: str) -> str | None:
    """Why a callable user with this ``local_tz`` cannot be scheduled, or None if they can.

    Stored on the user (``schedule_error``) when they are parked, so the tick looks at them
    once rather than every five minutes, and operators see why in the admin."""
    if zone_or_none(local_tz) is None:
        return f"Time zone {local_tz!r} is not an IANA time zone this host knows."
    return None


def first_attempts(*, now: datetime | None = None) -> QuerySet:
    """The calls that make a local day's first attempt: a date with one is not scheduled
    again (next_open_slot's ``after``). The one place that says so, for User.save and the
    writes in bulk (users.upsert.last_first_attempts).

    With ``now``, a first attempt the tick claimed ahead of its time (calls/claim.py) and
    still queued does not count: a schedule change releases it (users.services.
    users_cancel_pending_calls deletes it), so the day gets its call at the new time."""
    from calls.models import Call, CallStatus

    calls = Call.objects.filter(attempt=1, manual=False)
    if now is not None:
        calls = calls.exclude(status=CallStatus.QUEUED, scheduled_for__gt=now)
    return calls


class OptOutSource(models.TextChoices):
    """Who told us: an operator, the product (its app, its web site, its own API call), the
    person on one of our calls, an SMS reply, or a CSV import."""

    ADMIN = "admin", "admin"
    API = "api", "API"
    APP = "app", "app"
    WEB = "web", "web"
    VERBAL = "verbal", "verbal"
    CALL = "call", "on a call"
    SMS = "sms", "SMS"
    IMPORT = "import", "import"


class User(AbstractUser):
    # AbstractUser's username, unique through Meta.constraints instead of unique=True (the
    # same validation message): unique=True also builds a LIKE-pattern index on PostgreSQL
    # that no query uses (the admin's search is a case-insensitive LIKE '%...%', which no
    # index serves), and every claimed user's next_call_at update writes into it.
    username = models.CharField(
        _("username"),
        max_length=150,
        help_text=_("Required. 150 characters or fewer. Letters, digits and @/./+/-/_ only."),
        validators=[UnicodeUsernameValidator()],
        error_messages={"unique": _("A user with that username already exists.")},
    )
    name = models.CharField(max_length=150, blank=True)
    # NULL rather than "" for "no phone", so that the unique constraint allows many of them.
    # Unique through Meta.constraints (same validation message): unique=True would also build
    # a LIKE-pattern index on PostgreSQL that no query uses, written by every tick's update.
    phone = models.CharField(
        max_length=16,
        null=True,
        blank=True,
        validators=[validate_e164_phone],
        help_text="E.164, such as +919876543210. A user without a phone is never called.",
    )
    local_tz = models.CharField(
        "time zone",
        max_length=64,
        default=default_time_zone,
        validators=[validate_iana_time_zone],
        help_text="IANA time zone name, such as Asia/Kolkata.",
    )
    call_enabled = models.BooleanField("calls enabled", default=True)
    call_time = models.TimeField(
        default=default_call_time, help_text="Local wall-clock time of the daily call."
    )
    # Denormalised on purpose: the UTC instant of the next slot to call, NULL when the user
    # is not callable. The scheduler tick selects `next_call_at <= now` on a partial index,
    # so its cost grows with the number of due users, not with the number of users.
    next_call_at = models.DateTimeField("next call", null=True, blank=True, editable=False)
    # Why a callable user has no next call ("parked"): a time zone put there by a raw UPDATE
    # or an import. NULL when there is nothing wrong, so that the repair's partial index below
    # leaves parked users out; saving the user with a valid zone clears it.
    schedule_error = models.TextField("parked because", null=True, blank=True, editable=False)
    # The product's own id for this person (the users API's key); NULL for users made in
    # the admin, so that the unique constraint allows many of them. Unique through
    # Meta.constraints, as phone and username are: no LIKE-pattern index for the tick to write.
    external_id = models.CharField(
        max_length=128,
        null=True,
        blank=True,
        validators=[validate_external_id],
        help_text="The product's own id for this user (the users API's key): letters, digits and . _ : -",
    )
    # Per-user overrides of the call policy; blank: the policy applies. The same bounds as
    # the policy's own (calls/models.py).
    max_retries = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(MAX_RETRIES)],
        help_text="Retries per day for this user; blank: the call policy's.",
    )
    # The agent variant this user is assigned (calls.variants), kept until deactivated.
    agent_variant = models.ForeignKey(
        "calls.AgentVariant",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="users",
        editable=False,
    )
    # The product's own facts about the person, sent with every call as agent variables
    # (calls.context); a JSON object of at most 4,096 bytes (users.validators).
    context = models.JSONField(default=dict, db_default={}, blank=True, validators=[validate_context])
    retry_delay_minutes = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_DELAY_MINUTES)],
        help_text="Minutes before each retry for this user; blank: the call policy's.",
    )
    # Whether the person wants to hear from us on that channel when their day was missed
    # (notifications/). Off unless the product turns them on for that person; the address
    # is AbstractUser's ``email``.
    # db_default too: the column is added to a large table in one step, and rows written
    # by raw SQL (tests, scripts) get it.
    notify_sms = models.BooleanField(
        "SMS when a day is missed",
        default=False,
        db_default=False,
        help_text="Text the user's phone when a day's calls all fail (unless they replied STOP).",
    )
    notify_email = models.BooleanField(
        "e-mail when a day is missed",
        default=False,
        db_default=False,
        help_text="E-mail the user's address when a day's calls all fail.",
    )

    # The person's calendar (users/calendar.py): the weekdays they may be called on, and a
    # break (no call on local dates up to and including pause_until). db_default: the column
    # is added to a large table in one step, and the bulk writers name only what they set.
    call_days = models.PositiveSmallIntegerField(
        "call days",
        default=ALL_CALL_DAYS,
        db_default=ALL_CALL_DAYS,
        help_text="The weekdays the person may be called on, in their own time zone.",
    )
    pause_until = models.DateField(
        "no calls until",
        null=True,
        blank=True,
        help_text="No call on the person's local dates up to and including this one (travel, a break).",
    )

    # One opt-out state, whatever asked for it (users/consent.py). Its call is an id, not a
    # foreign key: calls already depend on users, and the call may be pruned before the
    # opt-out is.
    opted_out_at = models.DateTimeField("opted out at", null=True, blank=True, editable=False)
    # A database default too: the bulk writers (COPY, the benchmarks' seeding) name only the
    # columns they set.
    opt_out_source = models.CharField(
        "opted out through",
        max_length=16,
        choices=OptOutSource.choices,
        blank=True,
        default="",
        db_default="",
        editable=False,
    )
    opt_out_call_id = models.BigIntegerField("opted out on call", null=True, blank=True, editable=False)
    # When the current consent was given (users.consent.user_consent_record keeps it), NULL
    # with none or after an opt-out: the tick reads it with the due users' other columns,
    # so "require consent" costs no join and no query of its own.
    consented_at = models.DateTimeField("consent given at", null=True, blank=True, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["phone"], name="user_unique_phone"),
            models.UniqueConstraint(fields=["username"], name="user_unique_username"),
            models.UniqueConstraint(fields=["external_id"], name="user_unique_external_id"),
            # Whatever path tries it (a form, the API, an import, a raw UPDATE), an opted-out
            # person is never switched back on: only users.consent.user_opt_in does that.
            models.CheckConstraint(
                condition=models.Q(opted_out_at__isnull=True) | models.Q(call_enabled=False),
                name="user_opted_out_not_called",
                violation_error_message="This person opted out of calls: record a new opt-in first.",
            ),
            models.CheckConstraint(
                condition=models.Q(call_days__gte=1, call_days__lte=ALL_CALL_DAYS),
                name="user_call_days_some",
                violation_error_message="Choose at least one call day.",
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_call_at"],
                name="user_next_call_at_idx",
                condition=models.Q(next_call_at__isnull=False),
            ),
            # Callable users with no next call and not parked: normally none, so the tick's
            # repair query reads an empty index rather than scanning the table.
            models.Index(
                fields=["id"],
                name="user_unscheduled_idx",
                condition=models.Q(
                    next_call_at__isnull=True,
                    call_enabled=True,
                    phone__isnull=False,
                    schedule_error__isnull=True,
                ),
            ),
        ]

    def __str__(self) -> str:
        return self.name or self.username

    @property
    def is_operator(self) -> bool:
        return bool(self.is_staff or self.is_superuser)

    @property
    def is_callable(self) -> bool:
        return bool(self.call_enabled and self.phone) and not self.is_operator

    def compute_next_call_at(self, *, now: datetime | None = None) -> datetime | None:
        """The next slot to call, skipping local dates that already have their first call;
        None if the user cannot be called, or has a time zone this host does not know."""
        return self.next_call_at_after(last_called=self._last_first_attempt_date(), now=now)

    def _last_first_attempt_date(self) -> date | None:
        if self.pk is None or not self.is_callable:
            return None
        standing = first_attempts(now=timezone.now())
        return standing.filter(user_id=self.pk).aggregate(last=Max("local_date"))["last"]

    def next_call_at_after(
        self, *, last_called: date | None, now: datetime | None = None, skips: frozenset[date] | None = None
    ) -> datetime | None:
        """compute_next_call_at with the last local date that has a first attempt given, for
        writes in bulk that read those dates for many users in one query (and ``skips``, the
        person's skipped dates, read here when not given). The next slot on a local date
        the person's calendar leaves open (users/calendar.py)."""
        from calls.policy import policy_current

        tz = zone_or_none(self.local_tz)
        if not self.is_callable or tz is None:
            return None
        now = now or timezone.now()
        if skips is None:
            skips = user_skips_from(user_id=self.pk, local_date=now.astimezone(tz).date() - timedelta(days=1))
        return next_call_for(
            local_tz=self.local_tz,
            call_time=self.call_time,
            call_days=self.call_days,
            pause_until=self.pause_until,
            last_called=last_called,
            skips=skips,
            now=now,
            rules=policy_current(),
        )

    def refresh_schedule(
        self, *, last_called: date | None, now: datetime | None = None, skips: frozenset[date] | None = None
    ) -> None:
        """Set next_call_at and schedule_error from the schedule fields (not saved)."""
        self.next_call_at = self.next_call_at_after(last_called=last_called, now=now, skips=skips)
        self.schedule_error = unknown_zone_error(self.local_tz) if self.is_callable else None

    def save(self, *args, **kwargs):
        # Kept here rather than in a service because *every* way of saving a user (admin
        # form, list_editable, the shell, a data migration) must keep next_call_at in step
        # with the schedule fields, or that user is silently never called (or called at a
        # stale time): it is a value derived from this row's own fields, not a workflow.
        # Claiming a slot never relies on this value alone: the unique (user, local_date,
        # attempt) constraint is what prevents a second call on the same day. What a change
        # of schedule does to calls already queued is a workflow: users.services.user_save.
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and not SCHEDULE_FIELDS & set(update_fields):
            super().save(*args, **kwargs)
            return
        self.refresh_schedule(last_called=self._last_first_attempt_date())
        if update_fields is not None:
            kwargs["update_fields"] = {*update_fields, "next_call_at", "schedule_error"}
        super().save(*args, **kwargs)


class CallSkip(models.Model):
    """A local date on which the person is not called ("skip today, they already checked
    in"), asked for through the API or the admin: stored, so that a future date holds too
    (users/calendar.py user_skip_day)."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="call_skips", db_index=False)
    local_date = models.DateField(help_text="The person's local date with no call.")
    requested_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Its index (user first) is what the tick and the dialer read a batch's skips by.
            models.UniqueConstraint(fields=["user", "local_date"], name="callskip_one_per_user_day"),
        ]
        verbose_name = "skipped day"

    def __str__(self) -> str:
        return f"{self.local_date} skipped"


class Operator(User):
    """An admin login (staff or superuser), listed apart from the people who are called."""

    class Meta:
        proxy = True
        verbose_name = "operator"
        verbose_name_plural = "operators"


class ConsentSource(models.TextChoices):
    """How the person gave their consent to be called."""

    WEB = "web", "web"
    APP = "app", "app"
    API = "api", "API"
    IMPORT = "import", "import"
    ADMIN = "admin", "admin"
    VERBAL = "verbal", "verbal"


class Consent(models.Model):
    """One consent to be called, as given: the newest (by given_at) is the person's current
    one, the older ones its history. Never edited: a new consent is a new row."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="consents", db_index=False)
    given_at = models.DateTimeField("given at")
    source = models.CharField(max_length=16, choices=ConsentSource.choices)
    text = models.TextField(
        help_text="The wording the person agreed to, or a reference to it (a URL, a version)."
    )
    # Who recorded it: an operator's username, "api: <operator>", "import". Text rather than
    # a foreign key: the record outlives the operator's login.
    recorded_by = models.CharField(max_length=150, blank=True)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["user", "-given_at"], name="consent_user_given_idx")]

    def __str__(self) -> str:
        return f"Consent {self.pk} ({self.get_source_display()}, {self.given_at:%Y-%m-%d})"


class Suppression(models.Model):
    """A number that is never dialed, whoever carries it now or later (the do-not-call list).

    Every row holds the number's keyed hash (users.suppression.number_hash); ``number`` may be
    blank, for a person who asked to be forgotten: the list still stops their number, and no
    longer says what it is. Checks match either column."""

    # On PostgreSQL both columns use the collation "C" (migration users/0010): the checks
    # look up a claiming batch's thousand numbers and hashes at once, and bytewise comparison
    # is what an exact match needs; the locale's collation made the thousand hash probes
    # fifteen times slower. Not declared here (db_collation): SQLite has no "C" collation,
    # and the zero-setup first run migrates SQLite.
    number = models.CharField(max_length=16, null=True, blank=True, validators=[validate_e164_phone])
    number_hash = models.CharField(max_length=64, editable=False)
    reason = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=16, choices=ConsentSource.choices, default=ConsentSource.ADMIN)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["number"], name="suppression_unique_number"),
            models.UniqueConstraint(fields=["number_hash"], name="suppression_unique_hash"),
        ]
        indexes = [
            # The checks match a row with a number by its number (a batch's numbers sit close
            # together in that index), and only a forgotten row by its hash: random keys,
            # probed in this index of the forgotten rows alone, not in the whole list's.
            models.Index(
                fields=["number_hash"],
                name="suppression_forgotten_idx",
                condition=models.Q(number__isnull=True),
            ),
        ]
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return self.number or f"forgotten number {self.number_hash[:12]}"


class Erasure(models.Model):
    """That a person was forgotten (users.erasure.forget_person): when, by whom, which id.
    Nothing personal: the user's row is the anonymised tombstone ``user_id`` names."""

    # An id, not a foreign key: the record outlives whatever happens to the tombstone.
    user_id = models.BigIntegerField(db_index=True)
    # The product's id the erasure was asked for (its proof that the request was honoured).
    external_id = models.CharField(max_length=128, blank=True)
    erased_at = models.DateTimeField()
    actor = models.CharField("by", max_length=150)
    # How many rows each app's eraser changed, e.g. {"calls": 412, "notifications": 3}.
    counts = models.JSONField(default=dict, blank=True)
    suppressed = models.BooleanField(
        default=False,
        help_text=(
            "The number stays on the do-not-call list as its hash only "
            "(the person had opted out, or it was on the list)."
        ),
    )

    class Meta:
        ordering = ("-erased_at",)

    def __str__(self) -> str:
        return f"Erasure of user {self.user_id} on {self.erased_at:%Y-%m-%d}"


def user_skips_from(*, user_id: int | None, local_date: date) -> frozenset[date]:
    """The person's skipped dates from ``local_date`` on."""
    if user_id is None:
        return frozenset()
    return frozenset(
        CallSkip.objects.filter(user_id=user_id, local_date__gte=local_date).values_list(
            "local_date", flat=True
        )
    )
