from __future__ import annotations

from django.conf import settings
from django.db import models


class CallStatus(models.TextChoices):
    # Claimed by a tick (or scheduled as a retry); a job will place it at scheduled_for.
    QUEUED = "queued", "Queued"
    # A worker took it and is talking to the provider right now.
    DIALING = "dialing", "Dialing"
    # Sent, but the provider's answer was lost (a read timeout, a 5xx, a 2xx without an id):
    # it may have been placed, so it is never sent again at once. The webhook (which finds
    # it by our call id in the metadata) settles it, or the tick fails it after
    # CALL_UNCONFIRMED_TIMEOUT_SECONDS and the normal retry policy applies.
    UNCONFIRMED = "unconfirmed", "Unconfirmed"
    RINGING = "ringing", "Ringing"
    IN_PROGRESS = "in_progress", "In progress"
    # Shown as "Answered": the one word operators read for it everywhere (dashboard, admin).
    COMPLETED = "completed", "Answered"
    FAILED = "failed", "Failed"
    NO_ANSWER = "no_answer", "No answer"
    BUSY = "busy", "Busy"
    # A machine answered (the provider's voicemail/answering-machine signal): not reached.
    VOICEMAIL = "voicemail", "Voicemail"
    # The slot's window closed before any tick claimed it (scheduler down, say).
    MISSED = "missed", "Missed"
    # Dropped before dialing: user disabled, phone removed, already answered today.
    CANCELED = "canceled", "Canceled"


TERMINAL_STATUSES = frozenset(
    {
        CallStatus.COMPLETED,
        CallStatus.FAILED,
        CallStatus.NO_ANSWER,
        CallStatus.BUSY,
        CallStatus.VOICEMAIL,
        CallStatus.MISSED,
        CallStatus.CANCELED,
    }
)
# A call of these is live, or may be (unconfirmed: the provider may be ringing): while one
# is, no other call of the same user is dialed (calls.placement) nor accepted to call now
# (calls.manual). It counts as live from when a worker takes it until its outcome arrives,
# or for at most PROVIDER_LIVE_CALL_TIMEOUT_SECONDS after it was sent if none ever does (the
# rule that gives a provider's line back).
LIVE_STATUSES = (CallStatus.DIALING, CallStatus.UNCONFIRMED, CallStatus.RINGING, CallStatus.IN_PROGRESS)
# Outcomes after which the user gets another attempt (original design: RETRY_ON_STATUSES).
RETRY_STATUSES = frozenset({CallStatus.FAILED, CallStatus.NO_ANSWER, CallStatus.BUSY})
# The statuses a call policy may list as retried (voicemail is governed by voicemail_retry).
RETRYABLE_STATUSES = RETRY_STATUSES | {CallStatus.VOICEMAIL}
# Outcomes where the call went out and nobody (no person) was reached.
NOT_REACHED_STATUSES = frozenset(
    {CallStatus.FAILED, CallStatus.NO_ANSWER, CallStatus.BUSY, CallStatus.VOICEMAIL}
)

# The bounds of the retry rules, wherever they are set (the call policy, a user's own).
MAX_RETRIES = 10
MAX_DELAY_MINUTES = 24 * 60
# Progress order: a status never moves back to an earlier rank (webhooks arrive late or twice).
STATUS_RANK = {
    CallStatus.QUEUED: 0,
    CallStatus.DIALING: 1,
    CallStatus.UNCONFIRMED: 1,
    CallStatus.RINGING: 2,
    CallStatus.IN_PROGRESS: 3,
    **{status: 4 for status in TERMINAL_STATUSES},
}


# A call that still holds content (what was said, raw provider payloads), which the
# retention prune erases after RETENTION_DAYS_CONTENT (calls.retention).
CALL_HAS_CONTENT = ~models.Q(transcript="") | ~models.Q(recording_url="") | ~models.Q(provider_payloads=[])


class AgentVariant(models.Model):
    """A variant of the agent that calls (A/B tests): each user is assigned one by weight,
    deterministically, and keeps it until it is deactivated (calls.variants)."""

    name = models.CharField(max_length=64, unique=True)
    provider = models.CharField(max_length=32, choices=[(name, name) for name in settings.CALL_PROVIDERS])
    agent_id = models.CharField(
        "agent or assistant id", max_length=128, help_text="The provider's agent (or Vapi assistant) id."
    )
    weight = models.PositiveIntegerField(
        default=1, help_text="Share of users, relative to the other variants."
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("pk",)

    def __str__(self) -> str:
        return self.name


class Call(models.Model):
    """One attempt to phone a user: attempt 1 is the day's call, 2 and 3 are its retries."""

    # No index of its own: the (user, local_date, attempt) constraint's index leads with it,
    # for the day's calls and their retries; call_manual_user_day_idx holds the manual ones
    # (a query for all of a user's calls asks for both, manual or not: calls.selectors).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="calls", db_index=False
    )
    to_number = models.CharField(max_length=16)
    agent_id = models.CharField(max_length=128, blank=True)
    attempt = models.PositiveSmallIntegerField(default=1)
    local_date = models.DateField(help_text="The user's local calendar date this call belongs to.")
    retry_of = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retry"
    )
    status = models.CharField(max_length=16, choices=CallStatus.choices, default=CallStatus.QUEUED)
    provider = models.CharField(max_length=32, blank=True)
    # The RQ job that first carried this call: a batch job for a tick's first attempts
    # ("place-calls-<pk of its first call>"), an outcome retry's bucket job
    # ("place-retries-<epoch second>", calls/retries.py), blank for calls on a job of their
    # own ("call-<pk>").
    # Lets a later tick tell a call whose job Redis lost from one still waiting in line.
    job_id = models.CharField(max_length=64, blank=True)
    # Unique through Meta.constraints rather than unique=True, which on PostgreSQL also
    # builds a LIKE-pattern index that no query uses (one more index for every write).
    provider_call_id = models.CharField(max_length=128, null=True, blank=True)
    # Every raw payload exchanged with the provider, oldest first, for operators to inspect.
    provider_payloads = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    transcript = models.TextField(blank=True)
    # Text, not a URLField: signed recording URLs run to thousands of characters.
    recording_url = models.TextField(blank=True)
    # The provider's own word for how the call ended (CallKaro's hangup_reason, Vapi's
    # endedReason, Retell's disconnection_reason), kept raw beside the status we map it to.
    end_reason = models.CharField(max_length=128, blank=True)
    # The final status was relevel's inference (no webhook in time, a worker that died), not
    # the provider's word: a later real outcome from the provider replaces it.
    outcome_inferred = models.BooleanField(default=False)
    # Placed on an operator's request ("call now"), outside the daily schedule: never the
    # day's first attempt nor one of its retries, and never retried itself.
    manual = models.BooleanField(default=False)
    # The extra attempt a user asked for on an earlier call ("call me back at 8"): at most
    # one a day (constraint below), dialed even after an answered call that day.
    # (A database default too: the benchmarks' and other tools' COPY name their columns.)
    callback = models.BooleanField(default=False, db_default=False)
    # The agent variant that called (A/B), when variants are defined.
    variant = models.ForeignKey(
        AgentVariant, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls", db_index=False
    )
    duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    # The dial record (docs/operating/consent.md): written in the UPDATE that takes the call
    # for dialing, so that an operator can show it went out at an allowed local time, with
    # consent, past the do-not-call list. Text, as it was then: the person's zone, the hours
    # and their consent may all change later. The consent is an id, not a foreign key:
    # erasing a consent must not scan this table.
    dial_local_time = models.CharField(
        "local time at dial", max_length=64, blank=True, default="", db_default=""
    )
    dial_calling_hours = models.CharField(
        "calling hours at dial", max_length=64, blank=True, default="", db_default=""
    )
    dial_consent_id = models.BigIntegerField("consent at dial", null=True, blank=True)
    dial_suppression_checked = models.BooleanField(
        "suppression list checked", default=False, db_default=False
    )

    created_at = models.DateTimeField(auto_now_add=True)
    scheduled_for = models.DateTimeField(help_text="When this attempt is due to be placed.")
    dialed_at = models.DateTimeField(null=True, blank=True)
    last_status_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # Acting in the queues dashboard (/django-rq/): relevel/queue_dashboard.py.
        permissions = [("manage_queues", "Can empty queues and delete, requeue or stop jobs")]
        constraints = [
            # The guarantee that nobody is called twice: one row per attempt per local day.
            # (Manual calls stand outside it: any number a day, rate-limited instead.)
            models.UniqueConstraint(
                fields=["user", "local_date", "attempt"],
                condition=models.Q(manual=False),
                name="call_one_attempt_per_user_day",
            ),
            models.UniqueConstraint(
                fields=["user", "local_date"],
                condition=models.Q(callback=True),
                name="call_one_callback_per_user_day",
            ),
            # Per provider: two providers may well use the same id format.
            models.UniqueConstraint(
                fields=["provider", "provider_call_id"], name="call_unique_provider_call_id"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "scheduled_for"], name="call_status_scheduled_idx"),
            models.Index(fields=["local_date"], name="call_local_date_idx"),
            models.Index(fields=["-created_at"], name="call_created_idx"),
            # Calls still holding what was said (calls.retention): the nightly prune reads
            # only these, oldest first, so its cost is the rows left to prune, not the table.
            models.Index(
                fields=["created_at", "id"], name="call_content_created_idx", condition=CALL_HAS_CONTENT
            ),
            # A user's live calls, looked up each time calls are taken for dialing: only the
            # live rows are in it, a few thousand at most, whatever the table's size.
            models.Index(
                fields=["user"],
                condition=models.Q(status__in=LIVE_STATUSES),
                name="call_live_user_idx",
            ),
            # The constraint's index above holds only calls that are not manual: without this
            # one, a user's calls with the manual ones (the agent's memory, the history) were a
            # scan of the whole table, per retry placed, and so was call now's last manual call
            # (calls.manual). Partial: manual calls are few, so the tick's inserts and every
            # status change write nothing to it.
            models.Index(
                fields=["user", "local_date"],
                condition=models.Q(manual=True),
                name="call_manual_user_day_idx",
            ),
        ]

    def __str__(self) -> str:
        # The status's label ("No answer"): this is the admin's page title and breadcrumb.
        return f"Call {self.pk} (attempt {self.attempt}, {self.get_status_display()})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class CallPolicy(models.Model):
    """The operator's rules for calling, one row (pk 1), edited in the admin ("Call policy")
    and through /api/policy. A blank value means the deployment's setting applies
    (docs/operating/call-policy.md), so nothing changes until an operator changes it. Read through
    calls.policy.policy_current(), never directly."""

    paused = models.BooleanField(
        default=False,
        help_text="Stops every call: the tick claims nothing and workers dial nothing, within seconds.",
    )
    calling_hours_start = models.TimeField(
        null=True, blank=True, help_text="In each user's local time; blank: any hour."
    )
    calling_hours_end = models.TimeField(
        null=True,
        blank=True,
        help_text="In each user's local time, not included; earlier than the start means overnight.",
    )
    max_retries = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Retries per user per day; blank: CALL_MAX_RETRIES."
    )
    retry_delays_minutes = models.JSONField(
        null=True,
        blank=True,
        help_text="Minutes before each retry, e.g. [30, 60]; blank: CALL_RETRY_DELAY_SECONDS each time.",
    )
    retry_statuses = models.JSONField(
        null=True,
        blank=True,
        help_text='Outcomes that are retried, e.g. ["no_answer", "busy"]; blank: failed, no_answer and busy.',
    )
    window_minutes = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="How long after a call time the call may still be placed; blank: CALL_TIME_WINDOW_MINUTES.",
    )
    voicemail_retry = models.BooleanField(
        default=True, help_text="Retry a call that reached voicemail, like one nobody answered."
    )
    voicemail_message = models.TextField(
        blank=True,
        help_text=(
            "A message to leave on voicemail (Vapi, and as the voicemail_message variable for "
            "Retell and CallKaro agents); blank: none."
        ),
    )
    monthly_budget = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Calls pause themselves once this month's recorded cost reaches it; blank: no budget.",
    )
    budget_currency = models.CharField(
        max_length=3, default="USD", blank=True, help_text="The currency of the monthly budget (ISO 4217)."
    )
    # Set by calls.budget when the month's cost reached the budget: calls pause until the
    # budget is raised or cleared, or the month ends.
    budget_reached_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Days off for everyone, in each person's local date (users/calendar.py): dates listed
    # here, and the public holidays of these countries (the holidays package).
    skip_dates = models.JSONField(
        default=list,
        blank=True,
        help_text='Local dates on which nobody is called, e.g. ["2026-12-25"].',
    )
    holiday_countries = models.JSONField(
        default=list,
        blank=True,
        help_text='ISO 3166 country codes whose public holidays nobody is called on, e.g. ["US"].',
    )
    require_consent = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Call only people with a recorded consent; the others are never dialed.",
    )
    disclosure_text = models.TextField(
        blank=True,
        default="",
        db_default="",
        help_text='Passed to the agent on every call (variable "disclosure"), such as '
        '"This is an automated call from Example on behalf of ...".',
    )
    updated_at = models.DateTimeField(auto_now=True)
    # Who paused and when, for the banner every operator page shows while calls are paused
    # (calls.banners); set by calls.policy_changes.policy_changed, cleared on resume.
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_by = models.CharField(max_length=150, blank=True)

    class Meta:
        verbose_name = verbose_name_plural = "call policy"

    def __str__(self) -> str:
        return "Call policy"


class Sentiment(models.TextChoices):
    POSITIVE = "positive", "Positive"
    NEUTRAL = "neutral", "Neutral"
    NEGATIVE = "negative", "Negative"


class AnsweredBy(models.TextChoices):
    HUMAN = "human", "Human"
    VOICEMAIL = "voicemail", "Voicemail"
    UNKNOWN = "unknown", "Unknown"


# A result that still holds what was said (calls.retention erases it with the call's content).
RESULT_HAS_CONTENT = (
    ~models.Q(summary="")
    | ~models.Q(transcript="")
    | ~models.Q(turns=[])
    | ~models.Q(data={})
    | ~models.Q(callback_note="")
)
RESULT_CONTENT_ERASED = {"summary": "", "transcript": "", "turns": [], "data": {}, "callback_note": ""}


class CallResult(models.Model):
    """What an ended call yielded, in one shape whatever the provider (calls.results), and
    what relevel heard in it (calls.analysis). Written by the analysis job, never the webhook."""

    call = models.OneToOneField(Call, on_delete=models.CASCADE, primary_key=True, related_name="result")
    summary = models.TextField(blank=True)
    # The structured fields the agent extracts, as the agent defines them.
    data = models.JSONField(default=dict, blank=True)
    sentiment = models.CharField(max_length=8, choices=Sentiment.choices, blank=True)
    # -1 (negative) .. 1 (positive); the provider's label mapped to -1, 0 or 1.
    sentiment_score = models.FloatField(null=True, blank=True)
    # "provider" (its own analysis) or "computed" (VADER over the user's turns).
    sentiment_source = models.CharField(max_length=16, blank=True)
    answered_by = models.CharField(max_length=16, choices=AnsweredBy.choices, default=AnsweredBy.UNKNOWN)
    user_talk_seconds = models.FloatField(null=True, blank=True)
    cost_amount = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    cost_currency = models.CharField(max_length=3, blank=True)
    # [{"role": "agent" | "user", "text": "..."}], in the order spoken.
    turns = models.JSONField(default=list, blank=True)
    # The turns as plain text, for the admin's full-text search (an index on this table, not
    # on calls_call, which the webhook updates).
    transcript = models.TextField(blank=True)
    opt_out_heard = models.BooleanField(default=False)
    # The call-back the user asked for, and what relevel did about it.
    callback_requested_for = models.DateTimeField(null=True, blank=True)
    callback_note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # /metrics counts the last day's opt-outs: a small index, of those rows only.
        indexes = [
            models.Index(
                fields=["created_at"], condition=models.Q(opt_out_heard=True), name="callresult_opt_out_idx"
            ),
            # Results still holding what was said, for the retention prune (calls.retention).
            models.Index(fields=["call"], name="callresult_content_idx", condition=RESULT_HAS_CONTENT),
        ]

    def __str__(self) -> str:
        return f"Result of call {self.call_id}"


class MonthlyCost(models.Model):
    """The cost recorded per UTC month and currency, kept as results are stored (calls.budget):
    the budget and /metrics read one row instead of summing a month of results."""

    month = models.DateField(help_text="The first day of the UTC month.")
    currency = models.CharField(max_length=3)
    amount = models.DecimalField(max_digits=14, decimal_places=4, default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["month", "currency"], name="monthly_cost_unique")]

    def __str__(self) -> str:
        return f"{self.month:%Y-%m}: {self.amount} {self.currency}"
