"""Calls in the admin: a read-only record of every attempt, for operators to inspect."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from web.display import admin_datetime, admin_time, end_reason_label, status_badge

from . import policy, policy_changes, selectors
from .admin_filters import ProviderFilter
from .admin_results import result_html
from .forms import CallPolicyForm
from .logsafe import mask_phone
from .models import AgentVariant, Call, CallPolicy, CallStatus
from .slots import zone_or_none

# What "not reached" means in the filters (docs/operating/admin.md): dialed, or due to be, and
# nobody answered (a machine did, for voicemail). Canceled calls are not in it: nobody was meant
# to be called any more (calls turned off, or already answered that day).
TIMING_FIELDSET = "Timing"
NOT_REACHED_STATUSES = (
    CallStatus.FAILED,
    CallStatus.NO_ANSWER,
    CallStatus.BUSY,
    CallStatus.VOICEMAIL,
    CallStatus.MISSED,
)

# A missed or failed call's reason in the list, at most this long (the tooltip has it all).
REASON_CHARS = 90

# What CallKaro reports about the conversation, shown on the call's page.
REPORT_FIELDS = ("disposition_reason", "conversion_status", "post_call", "post_call_detail", "call_link")


def local_wall_clock(value, tz_name: str) -> str:
    """A UTC instant as the user's wall-clock time, in the admin's one format
    ("2026-11-28 20:30:05 IST"); "" for a zone this host does not know."""
    if zone_or_none(tz_name) is None:
        return ""
    return admin_datetime(value, tz_name)


class EndReasonFilter(admin.SimpleListFilter):
    """The provider's own end reasons seen in the last 30 days (hangup_reason, endedReason,
    disconnection_reason): a bounded scan of recent calls, not DISTINCT over all of them."""

    title = "end reason"
    parameter_name = "end_reason"
    RECENT_DAYS = 30

    def lookups(self, request, model_admin):
        since = timezone.now() - timedelta(days=self.RECENT_DAYS)
        reasons = (
            Call.objects.filter(created_at__gte=since)
            .exclude(end_reason="")
            .values_list("end_reason", flat=True)
            .distinct()
            .order_by("end_reason")[:200]
        )
        return [(reason, end_reason_label(reason)) for reason in reasons]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(end_reason=self.value())
        return queryset


class AttemptFilter(admin.SimpleListFilter):
    title = "attempt"
    parameter_name = "attempt"

    def lookups(self, request, model_admin):
        return [("first", "First attempt"), ("retry", "Retries")]

    def queryset(self, request, queryset):
        if self.value() == "first":
            return queryset.filter(attempt=1)
        if self.value() == "retry":
            return queryset.filter(attempt__gt=1)
        return queryset


class OutcomeFilter(admin.SimpleListFilter):
    """The questions operators ask: who was not reached (today, in each user's own local
    day), whose call was missed, who answered."""

    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request, model_admin):
        return [
            ("not_reached_today", "Not reached today"),
            ("not_reached", "Not reached"),
            ("missed", "Missed"),
            ("answered", "Answered"),
        ]

    def queryset(self, request, queryset):
        from users.selectors import calls_of_local_today

        if self.value() == "not_reached_today":
            return queryset.filter(calls_of_local_today(now=timezone.now()), status__in=NOT_REACHED_STATUSES)
        if self.value() == "not_reached":
            return queryset.filter(status__in=NOT_REACHED_STATUSES)
        if self.value() == "missed":
            return queryset.filter(status=CallStatus.MISSED)
        if self.value() == "answered":
            return queryset.filter(status=CallStatus.COMPLETED)
        return queryset


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    # Nine columns, so that all fit at 1366 px: the local date is in the scheduled time
    # (and the date filter), the last status time on the call's page, the end reason (or a
    # missed call's reason) and the variant under the provider, "manual" in the attempt
    # column. "Scheduled (UTC)" is the timeline: one clock for every call, to sort by.
    list_display = (
        "id",
        "user_link",
        "masked_to_number",
        "attempt_display",
        "status_display",
        "scheduled_operator",
        "scheduled_local",
        "ended_local",
        "provider_display",
    )
    list_display_links = ("id",)

    @property
    def list_help(self) -> str:
        return (
            f'"Scheduled ({settings.TIME_ZONE})" is one clock for every call: sort by it for a timeline. '
            "The other times are in each user's own time zone: hover over one for the zone and UTC."
        )

    list_filter = (
        OutcomeFilter,
        "status",
        ProviderFilter,
        EndReasonFilter,
        AttemptFilter,
        "manual",
        "variant",
        "outcome_inferred",
    )
    date_hierarchy = "local_date"
    search_fields = (
        "to_number",
        "provider_call_id",
        "end_reason",
        "user__name",
        "user__username",
        "user__phone",
    )
    list_select_related = ("user", "variant")
    ordering = ("-id",)
    # The calls table grows every day: skip the unfiltered COUNT(*) on filtered pages.
    show_full_result_count = False
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "user_link",
                    "to_number",
                    "attempt",
                    "manual",
                    "status_display",
                    "local_date",
                    "retry_chain",
                )
            },
        ),
        (
            TIMING_FIELDSET,
            {
                "fields": (
                    "scheduled_local",
                    "created_local",
                    "dialed_local",
                    "last_status_local",
                    "ended_local",
                    "duration_seconds",
                )
            },
        ),
        ("Result", {"fields": ("result_display",)}),
        (
            "Outcome",
            {
                "fields": (
                    "end_reason_display",
                    "outcome_inferred",
                    "error",
                    "provider_report",
                    "transcript",
                    "recording",
                )
            },
        ),
        ("Provider", {"fields": ("provider", "variant", "provider_call_id", "agent_id", "payloads")}),
    )
    # Every field shown is read-only: derived from the fieldsets so the two cannot drift.
    readonly_fields = tuple(name for _, options in fieldsets for name in options["fields"])

    def get_fieldsets(self, request: HttpRequest, obj: Call | None = None):
        if obj is None:
            return self.fieldsets
        zone = obj.user.local_tz if zone_or_none(obj.user.local_tz) else "UTC"
        title = f"Timing (in the user's time zone, {zone}; each time's tooltip gives it in UTC)"
        return tuple(
            (title if name == TIMING_FIELDSET else name, options) for name, options in self.fieldsets
        )

    # Calls are written only by the scheduler, the workers and the webhook: the admin is a
    # window onto them. Deleting stays possible for superusers (test data, GDPR requests).
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_search_results(self, request: HttpRequest, queryset, search_term: str):
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        if search_term.strip():
            # Also what was said or summarised (full-text on PostgreSQL).
            found |= queryset.filter(pk__in=selectors.call_ids_matching_text(text=search_term))
        return found, may_have_duplicates

    @admin.display(description="result")
    def result_display(self, obj: Call) -> str:
        return result_html(obj)

    def has_change_permission(self, request: HttpRequest, obj: Call | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Call | None = None) -> bool:
        return request.user.is_superuser

    @admin.display(description="user", ordering="user__name")
    def user_link(self, obj: Call) -> str:
        url = reverse("admin:users_user_change", args=[obj.user_id])
        return format_html('<a href="{}">{}</a>', url, obj.user)

    @admin.display(description="to", ordering="to_number")
    def masked_to_number(self, obj: Call) -> str:
        return mask_phone(obj.to_number)

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: Call) -> str:
        return status_badge(obj.status)

    @admin.display(description="try", ordering="attempt")
    def attempt_display(self, obj: Call) -> str:
        return "manual" if obj.manual else str(obj.attempt)

    @admin.display(description="provider / why it ended", ordering="provider")
    def provider_display(self, obj: Call) -> str:
        """The provider, then why the call ended: its end reason in words, or, for a call never
        dialed or that failed on our side, relevel's own reason (shortened; whole in the
        tooltip), and the agent variant."""
        reason = end_reason_label(obj.end_reason) if obj.end_reason else ""
        why = obj.error if not reason and obj.status in (CallStatus.MISSED, CallStatus.FAILED) else ""
        parts = [
            format_html('<span title="{}">{}</span>', obj.end_reason, reason) if reason else "",
            format_html(
                '<span class="call-why" title="{}">{}</span>', why, Truncator(why).chars(REASON_CHARS)
            )
            if why
            else "",
            obj.variant.name if obj.variant else "",
        ]
        details = format_html_join(" · ", "{}", ((part,) for part in parts if part))
        if not details:
            return obj.provider or "-"
        return format_html('{}<br><span class="quiet">{}</span>', obj.provider or "-", details)

    # Times: the admin's one format, in the user's zone (the tooltip says which, and UTC; the
    # list says so in list_help, the call's page in the Timing fieldset's title), under short
    # headers so that the eight columns fit a 1366 px screen.

    @admin.display(description="scheduled", ordering="scheduled_for")
    def scheduled_local(self, obj: Call) -> str:
        return admin_time(obj.scheduled_for, obj.user.local_tz)

    @admin.display(description=f"scheduled ({settings.TIME_ZONE})", ordering="scheduled_for")
    def scheduled_operator(self, obj: Call) -> str:
        return admin_time(obj.scheduled_for, settings.TIME_ZONE)

    @admin.display(description="created")
    def created_local(self, obj: Call) -> str:
        return admin_time(obj.created_at, obj.user.local_tz)

    @admin.display(description="dialed")
    def dialed_local(self, obj: Call) -> str:
        return admin_time(obj.dialed_at, obj.user.local_tz)

    @admin.display(description="last status")
    def last_status_local(self, obj: Call) -> str:
        return admin_time(obj.last_status_at, obj.user.local_tz)

    # completed_at is stored for every final status (calls.outcomes.call_finish), answered or
    # not: it is when the call ended, and is shown so. Only a final status has it.
    @admin.display(description="ended", ordering="completed_at")
    def ended_local(self, obj: Call) -> str:
        if not obj.is_terminal:
            return "-"
        return admin_time(obj.completed_at, obj.user.local_tz)

    @admin.display(description="end reason")
    def end_reason_display(self, obj: Call) -> str:
        """The provider's end reason in words, with its own word for it."""
        if not obj.end_reason:
            return "-"
        words = end_reason_label(obj.end_reason)
        return format_html('{} <span class="quiet">({})</span>', words, obj.end_reason)

    @admin.display(description="recording")
    def recording(self, obj: Call) -> str:
        url = obj.recording_url
        # The URL comes from a provider payload: only http(s) becomes a link or a player.
        if not url or urlsplit(url).scheme not in ("http", "https"):
            return url or "-"
        return format_html(
            '<audio controls preload="none" src="{}"></audio><br>'
            '<a href="{}" target="_blank" rel="noopener noreferrer">{}</a>',
            url,
            url,
            url,
        )

    @admin.display(description="provider's report")
    def provider_report(self, obj: Call) -> str:
        """What the provider said about the conversation itself (CallKaro's post_call,
        disposition_reason, conversion_status), from its latest call_ended report."""
        rows = []
        for payload in reversed(obj.provider_payloads or []):
            data = payload.get("data") if isinstance(payload, dict) else None
            if isinstance(data, dict):
                for key in REPORT_FIELDS:
                    if data.get(key) not in (None, "", {}, []):
                        value = data[key]
                        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                        rows.append((key, text))
                if rows:
                    break
        if not rows:
            return "-"
        return format_html(
            "<dl class='provider-report' style='margin:0'>{}</dl>",
            format_html_join("", "<dt><code>{}</code></dt><dd style='margin:0 0 .4em 1em'>{}</dd>", rows),
        )

    @admin.display(description="provider payloads (oldest first)")
    def payloads(self, obj: Call) -> str:
        if not obj.provider_payloads:
            return "-"
        # Sorted keys: PostgreSQL's jsonb does not keep the provider's key order anyway, and
        # the same payload then reads the same on every database.
        text = json.dumps(obj.provider_payloads, indent=2, sort_keys=True, ensure_ascii=False, default=str)
        return format_html(
            '<pre style="white-space:pre-wrap;max-height:40em;overflow:auto;margin:0">{}</pre>', text
        )

    @admin.display(description="retry chain (same user and local day)")
    def retry_chain(self, obj: Call) -> str:
        rows = []
        for attempt in selectors.call_retry_chain(call=obj):
            label = f"Call {attempt.pk} · attempt {attempt.attempt}"
            when = admin_time(attempt.scheduled_for, obj.user.local_tz)
            if attempt.pk == obj.pk:
                rows.append(
                    (
                        format_html("<strong>{} (this call)</strong>", label),
                        status_badge(attempt.status),
                        when,
                    )
                )
            else:
                url = reverse("admin:calls_call_change", args=[attempt.pk])
                rows.append(
                    (format_html('<a href="{}">{}</a>', url, label), status_badge(attempt.status), when)
                )
        return format_html(
            '<ol class="retry-chain" style="margin:0;padding-left:1.5em">{}</ol>',
            format_html_join("", "<li>{} {} <span class='quiet'>scheduled {}</span></li>", rows),
        )


@admin.register(CallPolicy)
class CallPolicyAdmin(admin.ModelAdmin):
    """One page, the policy row: the list view opens it, it cannot be added or deleted, and
    every save is in its history (the admin's own LogEntry, with who and when)."""

    form = CallPolicyForm
    fieldsets = (
        ("Pause", {"fields": ("paused",)}),
        (
            "Calling hours (each user's local time)",
            {"fields": ("calling_hours_start", "calling_hours_end", "users_outside_hours")},
        ),
        (
            "Retries and window",
            {"fields": ("max_retries", "retry_delays_minutes", "retry_statuses", "window_minutes")},
        ),
        ("Voicemail", {"fields": ("voicemail_retry", "voicemail_message")}),
        ("Monthly budget", {"fields": ("monthly_budget", "budget_currency", "budget_status")}),
        ("Consent and disclosure", {"fields": ("require_consent", "disclosure_text")}),
        ("In force", {"fields": ("in_force", "updated")}),
    )
    readonly_fields = ("users_outside_hours", "in_force", "updated", "budget_status")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context=None):
        row = policy.policy_row()
        return redirect(reverse("admin:calls_callpolicy_change", args=[row.pk]))

    def get_urls(self):
        from django.urls import path

        resume = path("resume/", self.admin_site.admin_view(self.resume_view), name="calls_callpolicy_resume")
        return [resume, *super().get_urls()]

    def resume_view(self, request: HttpRequest):
        """The pause banner's "Resume calls" button (calls.banners): POST only, with the
        permission to change the policy; back to the page it was pressed on."""
        from django.contrib import messages
        from django.core.exceptions import PermissionDenied
        from django.http import HttpResponseNotAllowed
        from django.utils.http import url_has_allowed_host_and_scheme

        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied("Resuming calls needs the permission to change the call policy.")
        user_id = request.user.pk
        policy_changes.policy_update(changes={"paused": False}, user_id=user_id, actor=f"user:{user_id}")
        messages.success(request, "Calls resumed: calls still inside their window are placed now.")
        back = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(back, {request.get_host()}, require_https=request.is_secure()):
            back = reverse("admin:index")
        return redirect(back)

    def save_model(self, request, obj, form, change):
        was_paused = CallPolicy.objects.filter(pk=obj.pk).values_list("paused", flat=True).first() or False
        super().save_model(request, obj, form, change)
        # The admin records the history entry itself; the rest is what every change does.
        policy_changes.policy_changed(
            row=obj,
            changed=form.changed_data,
            user_id=request.user.pk,  # who paused (the admin records the history itself)
            actor=f"user:{request.user.pk}",
            was_paused=was_paused,
            record_history=False,
        )

    @admin.display(description="users whose call time is outside")
    def users_outside_hours(self, obj: CallPolicy) -> str:
        from users.selectors import users_calling_outside_hours

        if obj.calling_hours_start is None or obj.calling_hours_end is None:
            return "-"
        count = users_calling_outside_hours(start=obj.calling_hours_start, end=obj.calling_hours_end).count()
        url = reverse("admin:users_user_changelist") + "?outside_calling_hours=1"
        return format_html(
            '<a href="{}">{} user{}</a>: their daily call is recorded missed, saying why',
            url,
            count,
            "" if count == 1 else "s",
        )

    @admin.display(description="this month")
    def budget_status(self, obj: CallPolicy) -> str:
        from .budget import budget_state

        return budget_state().describe()

    @admin.display(description="updated at")
    def updated(self, obj: CallPolicy) -> str:
        return admin_time(obj.updated_at)

    @admin.display(description="rules in force")
    def in_force(self, obj: CallPolicy) -> str:
        return format_html(
            '<table class="policy-in-force" id="policy-in-force"><tbody>{}</tbody></table>',
            format_html_join(
                "",
                '<tr><th scope="row">{}</th><td>{}</td><td class="quiet">{}</td></tr>',
                policy.policy_in_force_rows(obj),
            ),
        )


@admin.register(AgentVariant)
class AgentVariantAdmin(admin.ModelAdmin):
    """Variants of the agent that calls. A user keeps their variant until it is deactivated;
    deactivating one reassigns its users among the active ones at their next call."""

    list_display = ("name", "provider", "agent_id", "weight", "active", "created")
    list_editable = ("weight", "active")
    list_filter = ("active", "provider")
    search_fields = ("name", "agent_id")

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: AgentVariant) -> str:
        return admin_time(obj.created_at)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.clean_provider = _clean_variant_provider
        return form


def _clean_variant_provider(form) -> str:
    """A variant may only use a provider this deployment can place calls with."""
    from django.core.exceptions import ValidationError

    provider = form.cleaned_data.get("provider")
    missing = [
        name for name in settings.PROVIDER_REQUIRED_SETTINGS.get(provider, ()) if not getattr(settings, name)
    ]
    if missing:
        raise ValidationError(f"{provider} cannot place calls here: {', '.join(missing)} not set")
    return provider
