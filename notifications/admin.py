"""Notifications in the admin: the templates operators edit (with a preview), every
message sent or not (view only), and the SMS opt-outs."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from web.display import admin_time

from .models import Channel, MessageTemplate, Notification, NotificationStatus, SmsOptOut
from .rendering import TemplateInvalid, message_context, message_render, template_check


class _SamplePerson:
    """Who the preview is written to: made up, so that it shows nobody's data."""

    name = "Asha Rao"
    first_name = ""
    local_tz = "Asia/Kolkata"
    external_id = "sample-42"
    context = {"caregiver": "Ravi"}


class MessageTemplateForm(forms.ModelForm):
    class Meta:
        model = MessageTemplate
        fields = ("kind", "channel", "subject", "body")
        widgets = {
            "subject": forms.TextInput(attrs={"class": "vLargeTextField", "size": 80}),
            "body": forms.Textarea(attrs={"rows": 8, "cols": 80}),
        }

    def _check(self, name: str) -> str:
        source = self.cleaned_data.get(name) or ""
        try:
            template_check(source)
        except TemplateInvalid as exc:
            raise forms.ValidationError(f"This template does not compile: {exc}") from exc
        return source

    def clean_subject(self) -> str:
        return self._check("subject")

    def clean_body(self) -> str:
        return self._check("body")

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("channel") == Channel.EMAIL and not (cleaned.get("subject") or "").strip():
            self.add_error("subject", "An e-mail needs a subject.")
        return cleaned


@admin.register(MessageTemplate)
class MessageTemplateAdmin(admin.ModelAdmin):
    form = MessageTemplateForm
    list_display = ("__str__", "subject", "updated")
    readonly_fields = ("preview", "variables")
    fields = ("kind", "channel", "subject", "body", "variables", "preview")

    @admin.display(description="updated", ordering="updated_at")
    def updated(self, obj: MessageTemplate) -> str:
        return admin_time(obj.updated_at)

    @admin.display(description="variables")
    def variables(self, obj: MessageTemplate | None) -> str:
        names = ("name", "first_name", "local_date", "time_zone", "external_id", "context.<name>")
        listed = format_html_join(", ", "<code>{{{{ {} }}}}</code>", ((name,) for name in names))
        return format_html(
            "{}. <code>local_date</code> is a date: <code>{}</code>. <code>context</code> holds the "
            "user's own context variables.",
            listed,
            '{{ local_date|date:"l j F" }}',
        )

    @admin.display(description="preview (as saved, to a made-up person)")
    def preview(self, obj: MessageTemplate | None) -> str:
        if obj is None or obj.pk is None:
            return "Save to see a preview."
        context = message_context(user=_SamplePerson(), local_date=timezone.localdate())
        try:
            message = message_render(subject=obj.subject, body=obj.body, context=context)
        except TemplateInvalid as exc:
            return format_html('<span class="errornote">{}</span>', exc)
        subject = (
            format_html("<strong>{}</strong><br>", message.subject) if obj.channel == Channel.EMAIL else ""
        )
        length = format_html('<br><span class="quiet">{} characters</span>', len(message.body))
        return format_html(
            '{}<pre style="white-space: pre-wrap; max-width: 60em">{}</pre>{}', subject, message.body, length
        )


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    """Every message: sent, failed, waiting, dropped or skipped, and why. View only."""

    list_display = (
        "created",
        "user_link",
        "kind",
        "channel",
        "recipient",
        "status",
        "local_date",
        "sent",
        "error_short",
    )
    list_filter = ("status", "channel", "kind")
    search_fields = ("user__name", "user__username", "user__external_id", "provider_message_id")
    date_hierarchy = "created_at"
    list_select_related = ("user",)
    readonly_fields = [field.name for field in Notification._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        # The row is what keeps a day's message from going twice: deleting it would let a
        # replay of the day send again.
        return False

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: Notification) -> str:
        return admin_time(obj.created_at)

    @admin.display(description="sent", ordering="sent_at")
    def sent(self, obj: Notification) -> str:
        return admin_time(obj.sent_at) if obj.sent_at else "-"

    @admin.display(description="user", ordering="user__name")
    def user_link(self, obj: Notification) -> str:
        url = reverse("admin:users_user_change", args=[obj.user_id])
        return format_html('<a href="{}">{}</a>', url, obj.user)

    @admin.display(description="error")
    def error_short(self, obj: Notification) -> str:
        if not obj.error:
            return ""
        text = obj.error if len(obj.error) <= 80 else obj.error[:79] + "…"
        css = "" if obj.status in (NotificationStatus.DROPPED, NotificationStatus.SKIPPED) else "errornote"
        return format_html('<span class="{}" title="{}">{}</span>', css, obj.error, text)


@admin.register(SmsOptOut)
class SmsOptOutAdmin(admin.ModelAdmin):
    list_display = (
        "user",
        "opted_out",
        "source",
        "keyword",
        "also_calls",
        "resumed",
        "resumed_keyword",
    )
    list_select_related = ("user",)
    list_help = "Times are in each user's time zone: hover over one for the zone and UTC."
    list_filter = ("source", "also_calls", ("resumed_at", admin.EmptyFieldListFilter))
    search_fields = ("user__name", "user__username", "user__external_id")
    raw_id_fields = ("user",)
    readonly_fields = ("message_sid",)

    @admin.display(description="opted out", ordering="opted_out_at")
    def opted_out(self, obj: SmsOptOut) -> str:
        return admin_time(obj.opted_out_at, obj.user.local_tz)

    @admin.display(description="resumed", ordering="resumed_at")
    def resumed(self, obj: SmsOptOut) -> str:
        return admin_time(obj.resumed_at, obj.user.local_tz)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict:
        # An operator recording an opt-out a person asked for by other means (a call, a letter).
        return {
            "source": "admin",
            "opted_out_at": timezone.now(),
            **super().get_changeform_initial_data(request),
        }
