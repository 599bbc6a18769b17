"""Events in the admin: endpoints (added, turned on and off), every event with its delivery
attempts, and replay of one event, a selection, or a time range to an endpoint."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from web.display import admin_datetime, admin_time

from .delivery import events_replay
from .endpoints import endpoints_cache_clear
from .models import Delivery, Endpoint, Event, EventType


class EndpointForm(forms.ModelForm):
    event_types = forms.MultipleChoiceField(
        choices=EventType.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every type.",
    )

    class Meta:
        model = Endpoint
        fields = ("name", "url", "secret", "event_types", "active")
        widgets = {"url": forms.URLInput(attrs={"size": 80})}
        field_classes = {"url": lambda **kwargs: forms.URLField(assume_scheme="https", **kwargs)}


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    form = EndpointForm
    list_display = ("name", "url", "active", "types_display", "failing_since_display", "disabled_reason")
    list_filter = ("active",)
    readonly_fields = ("from_environment", "failing_since", "disabled_at", "disabled_reason", "created_at")

    @admin.display(description="failing since", ordering="failing_since")
    def failing_since_display(self, obj: Endpoint) -> str:
        return admin_time(obj.failing_since)

    @admin.display(description="events")
    def types_display(self, obj: Endpoint) -> str:
        return ", ".join(obj.event_types) or "all"

    def save_model(self, request: HttpRequest, obj: Endpoint, form, change: bool) -> None:
        if obj.active and obj.disabled_reason:
            # Turned back on by an operator: its waiting deliveries go out at the next sweep.
            obj.disabled_reason, obj.disabled_at, obj.failing_since = "", None, None
        super().save_model(request, obj, form, change)
        endpoints_cache_clear()  # this process at once; the others within the cache's time


class DeliveryInline(admin.TabularInline):
    model = Delivery
    extra = 0
    can_delete = False
    fields = ("endpoint", "status", "attempts", "next_attempt_at", "delivered_at", "attempt_table")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="tries (time, status, latency, response)")
    def attempt_table(self, obj: Delivery) -> str:
        rows = [
            (
                admin_datetime(attempt.attempted_at),
                attempt.status_code or "no answer",
                f"{attempt.latency_ms} ms",
                (attempt.response_excerpt or attempt.error)[:200],
            )
            for attempt in obj.attempt_log.all()
        ]
        if not rows:
            return "-"
        return format_html(
            "<table><tbody>{}</tbody></table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>", rows),
        )


class ReplayForm(forms.Form):
    endpoint = forms.ModelChoiceField(queryset=Endpoint.objects.all())
    since = forms.DateTimeField(
        required=False, help_text="UTC, e.g. 2026-12-07 00:00; blank: from the first."
    )
    until = forms.DateTimeField(required=False, help_text="UTC, not included; blank: up to now.")

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] >= data["until"]:
            self.add_error("until", "Must be after the start.")
        return data


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = (
        "occurred",
        "type",
        "user_id",
        "external_id",
        "sequence",
        "local_date",
        "deliveries_display",
    )
    list_filter = ("type", "deliveries__status")
    search_fields = ("=webhook_id", "=external_id")
    date_hierarchy = "occurred_at"
    readonly_fields = (
        *("webhook_id", "type", "user", "external_id", "sequence", "local_date"),
        *("occurred_at", "fanned_out_at", "data"),
    )
    inlines = (DeliveryInline,)
    actions = ("replay_selected",)
    list_help = "Times in UTC. Select events and “Replay to an endpoint”, or replay a time range (top right)."

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("deliveries")

    @admin.display(description="occurred", ordering="occurred_at")
    def occurred(self, obj: Event) -> str:
        return admin_time(obj.occurred_at)

    @admin.display(description="deliveries")
    def deliveries_display(self, obj: Event) -> str:
        return ", ".join(sorted(delivery.get_status_display() for delivery in obj.deliveries.all())) or "-"

    def get_urls(self):
        return [
            path("replay/", self.admin_site.admin_view(self.replay_view), name="events_event_replay"),
            *super().get_urls(),
        ]

    def _may_replay(self, request: HttpRequest) -> bool:
        return request.user.has_perm("events.replay_event")

    @admin.action(description="Replay to an endpoint…", permissions=["replay"])
    def replay_selected(self, request: HttpRequest, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        form = ReplayForm(request.POST if "endpoint" in request.POST else None)
        if form.is_bound and form.is_valid():
            count = events_replay(endpoint_id=form.cleaned_data["endpoint"].pk, event_ids=ids)
            self.message_user(request, f"{count} event(s) queued to {form.cleaned_data['endpoint']}.")
            return None
        return TemplateResponse(
            request,
            "admin/events/event/replay.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Replay {len(ids)} event(s)",
                "form": form,
                "ids": ids,
                "opts": self.model._meta,
                "action": "replay_selected",
            },
        )

    def has_replay_permission(self, request: HttpRequest) -> bool:
        return self._may_replay(request)

    def replay_view(self, request: HttpRequest):
        if not self._may_replay(request):
            messages.error(request, "You may not replay events.")
            return HttpResponseRedirect(reverse("admin:events_event_changelist"))
        form = ReplayForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            count = events_replay(endpoint_id=data["endpoint"].pk, since=data["since"], until=data["until"])
            self.message_user(request, f"{count} event(s) queued to {data['endpoint']}.")
            return HttpResponseRedirect(reverse("admin:events_event_changelist"))
        return TemplateResponse(
            request,
            "admin/events/event/replay.html",
            {
                **self.admin_site.each_context(request),
                "title": "Replay events of a time range",
                "form": form,
                "opts": self.model._meta,
            },
        )
