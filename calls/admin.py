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
from django.utils.safestring import SafeString

from . import policy, selectors
from .forms import CallPolicyForm
from .logsafe import mask_phone
from .models import AgentVariant, Call, CallPolicy, CallStatus
from .slots import zone_or_none

# What CallKaro reports about the conversation, shown on the call's page.
REPORT_FIELDS = ("disposition_reason", "conversion_status", "post_call", "post_call_detail", "call_link")

# One colour per outcome family, readable on the admin's light and dark themes alike
# (white text on a mid-tone background).
STATUS_COLOURS = {
    CallStatus.QUEUED: "#64748b",
    CallStatus.DIALING: "#2563eb",
    CallStatus.UNCONFIRMED: "#c2410c",
    CallStatus.RINGING: "#2563eb",
    CallStatus.IN_PROGRESS: "#0e7490",
    CallStatus.COMPLETED: "#15803d",
    CallStatus.NO_ANSWER: "#b45309",
    CallStatus.BUSY: "#b45309",
    CallStatus.FAILED: "#b91c1c",
    CallStatus.MISSED: "#7e22ce",
    CallStatus.CANCELED: "#525252",
}
_BADGE_STYLE = (
    "display:inline-block;padding:1px 8px;border-radius:9px;color:#fff;"
    "font-size:0.85em;font-weight:600;white-space:nowrap;background:{}"
)


def status_badge(status: str | None) -> SafeString | str:
    """A call status as a coloured pill; "-" when there is none (a user never called)."""
    if not status:
        return "-"
    try:
        label = CallStatus(status).label
    except ValueError:  # a status this code no longer knows: show it as it is stored
        label = status
    colour = STATUS_COLOURS.get(status, "#525252")
    return format_html('<span class="call-status" style="{}">{}</span>', _BADGE_STYLE.format(colour), label)


def local_wall_clock(value, tz_name: str) -> str:
    """A UTC instant as the user's wall-clock time, e.g. "2026-11-28 20:30 IST"."""
    tz = zone_or_none(tz_name)
    if tz is None:
        return ""
    return f"{value.astimezone(tz):%Y-%m-%d %H:%M %Z}"


class ProviderFilter(admin.SimpleListFilter):
    # The configured providers rather than SELECT DISTINCT over every call ever placed.
    title = "provider"
    parameter_name = "provider"

    def lookups(self, request, model_admin):
        return [(name, name) for name in settings.CALL_PROVIDERS]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(provider=self.value())
        return queryset


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
        return [(reason, reason) for reason in reasons]

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


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "user_link",
        "masked_to_number",
        "attempt",
        "status_display",
        "local_date",
        "scheduled_for",
        "last_status_at",
        "completed_at",
        "provider",
        "end_reason",
        "manual",
        "variant",
    )
    list_display_links = ("id",)
    list_filter = (
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
            "Timing (UTC)",
            {
                "fields": (
                    "scheduled_for",
                    "scheduled_for_local",
                    "created_at",
                    "dialed_at",
                    "last_status_at",
                    "completed_at",
                    "duration_seconds",
                )
            },
        ),
        (
            "Outcome",
            {
                "fields": (
                    "end_reason",
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

    # Calls are written only by the scheduler, the workers and the webhook: the admin is a
    # window onto them. Deleting stays possible for superusers (test data, GDPR requests).
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

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

    @admin.display(description="scheduled for (user's local time)")
    def scheduled_for_local(self, obj: Call) -> str:
        return local_wall_clock(obj.scheduled_for, obj.user.local_tz) or "-"

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
            when = f"{attempt.scheduled_for:%Y-%m-%d %H:%M} UTC"
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
        ("In force", {"fields": ("in_force", "updated_at")}),
    )
    readonly_fields = ("users_outside_hours", "in_force", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context=None):
        row = policy.policy_row()
        return redirect(reverse("admin:calls_callpolicy_change", args=[row.pk]))

    def save_model(self, request, obj, form, change):
        was_paused = CallPolicy.objects.filter(pk=obj.pk).values_list("paused", flat=True).first() or False
        super().save_model(request, obj, form, change)
        # The admin records the history entry itself; the rest is what every change does.
        policy.policy_changed(
            row=obj,
            changed=form.changed_data,
            user_id=None,
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

    @admin.display(description="rules in force")
    def in_force(self, obj: CallPolicy) -> str:
        effective = policy.policy_as_dict(obj)["effective"]
        return format_html(
            "<pre style='margin:0'>{}</pre>", json.dumps(effective, indent=2, ensure_ascii=False, default=str)
        )


@admin.register(AgentVariant)
class AgentVariantAdmin(admin.ModelAdmin):
    """Variants of the agent that calls. A user keeps their variant until it is deactivated;
    deactivating one reassigns its users among the active ones at their next call."""

    list_display = ("name", "provider", "agent_id", "weight", "active", "created_at")
    list_editable = ("weight", "active")
    list_filter = ("active", "provider")
    search_fields = ("name", "agent_id")

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
