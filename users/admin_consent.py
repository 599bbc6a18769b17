"""Consent and the do-not-call list in the admin: a person's consent with its history (on
their page, and recorded from "Consents"), why a person is not called, and the suppression
list (add, remove)."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from import_export import resources
from import_export.admin import ImportExportMixin
from import_export.formats.base_formats import CSV

from calls.policy import policy_current
from web.csv_cells import csv_cell
from web.display import admin_time

from . import consent as consent_service
from . import suppression as suppression_service
from .models import Consent, ConsentSource, Suppression, User
from .validators import validate_e164_phone

CONSENTS_SHOWN = 10


class ConsentFilter(admin.SimpleListFilter):
    """Who has a current consent: with "require consent" on, those without are never called."""

    title = "consent"
    parameter_name = "consent"

    def lookups(self, request, model_admin):
        return [("no", "No consent"), ("yes", "Consent recorded")]

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(consented_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(consented_at__isnull=False)
        return queryset


def not_called_because(user: User) -> list[str]:
    """What stops this person's calls that the schedule fields do not show: the consent the
    policy requires, the do-not-call list."""
    reasons = []
    if policy_current().require_consent and user.consented_at is None:
        reasons.append("No consent recorded, and the call policy requires one: never dialed.")
    if user.phone and suppression_service.number_is_suppressed(number=user.phone):
        reasons.append("The number is on the do-not-call list (suppressed): never dialed.")
    return reasons


def consent_html(user: User) -> str:
    """The current consent, the history below it, why the person is not called, and a link
    to record a new consent."""
    if user.pk is None:
        return "-"
    record_url = reverse("admin:users_consent_add") + "?" + urlencode({"user": user.pk})
    current = consent_service.user_consent_current(user=user)
    history = list(Consent.objects.filter(user_id=user.pk).order_by("-given_at", "-pk")[:CONSENTS_SHOWN])
    stops = format_html_join(
        "", '<p><strong class="errornote-inline">{}</strong></p>', ((r,) for r in not_called_because(user))
    )
    if current is None:
        head = format_html(
            "<p>No current consent{}.</p>",
            " (withdrawn by the opt-out)" if history and user.opted_out_at else "",
        )
    else:
        head = format_html(
            "<p>Given {} through {}: \u201c{}\u201d</p>",
            admin_time(current.given_at, user.local_tz),
            current.get_source_display(),
            current.text[:300],
        )
    rows = format_html_join(
        "",
        "<li>{} · {} · recorded by {} · \u201c{}\u201d</li>",
        (
            (
                admin_time(c.given_at, user.local_tz),
                c.get_source_display(),
                c.recorded_by or "-",
                c.text[:120],
            )
            for c in history
        ),
    )
    listed = format_html('<ul style="margin:0;padding-left:1.5em">{}</ul>', rows) if history else ""
    return format_html('{}{}{}<a href="{}">Record a consent</a>', stops, head, listed, record_url)


class ConsentForm(forms.ModelForm):
    class Meta:
        model = Consent
        fields = ("user", "given_at", "source", "text")


@admin.register(Consent)
class ConsentAdmin(admin.ModelAdmin):
    """The history of consents: recorded here (which also ends an opt-out), never edited."""

    form = ConsentForm
    list_display = ("__str__", "user", "source", "given", "recorded_by")
    list_filter = ("source",)
    search_fields = ("user__name", "user__username", "user__external_id")
    raw_id_fields = ("user",)
    date_hierarchy = "given_at"
    list_select_related = ("user",)
    list_help = "Each consent's time is in its user's time zone: hover over one for the zone and UTC."

    @admin.display(description="given", ordering="given_at")
    def given(self, obj: Consent) -> str:
        return admin_time(obj.given_at, obj.user.local_tz)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict:
        return {
            "given_at": timezone.now(),
            "source": ConsentSource.ADMIN,
            **super().get_changeform_initial_data(request),
        }

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # A consent is a record of what was said: a correction is a new one.
        return False if obj is not None else super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Consent, form, change: bool) -> None:
        saved = consent_service.user_consent_record(
            user_id=obj.user_id,
            source=obj.source,
            text=obj.text,
            given_at=obj.given_at,
            recorded_by=request.user.get_username(),
        )
        obj.pk = saved.pk

    def response_add(self, request: HttpRequest, obj: Consent, post_url_continue=None):
        # Back to the person, where the consent now shows.
        self.message_user(request, f"Consent recorded for {obj.user}.")
        return HttpResponseRedirect(reverse("admin:users_user_change", args=[obj.user_id]))


class SuppressionResource(resources.ModelResource):
    """CSV import of the do-not-call list: ``number,reason`` (a number already on the list
    keeps its row, with the file's reason); export of the numbers the list still names."""

    class Meta:
        model = Suppression
        fields = ("number", "reason")
        import_id_fields = ("number",)
        clean_model_instances = True  # the number's E.164 validator, row by row
        skip_unchanged = True
        use_transactions = True

    def before_import_row(self, row, **kwargs) -> None:
        row["number"] = (row.get("number") or "").strip()

    def before_save_instance(self, instance: Suppression, row, **kwargs) -> None:
        # The keyed hash every row holds (users.suppression), and who added it.
        if instance.pk is None:
            instance.number_hash = suppression_service.number_hash(instance.number)
            instance.source = ConsentSource.IMPORT
            user = kwargs.get("user")
            instance.created_by = user.get_username() if user is not None else "import"

    def export_field(self, field, instance, **kwargs):
        return csv_cell(super().export_field(field, instance, **kwargs))


class SuppressionForm(forms.ModelForm):
    number = forms.CharField(max_length=16, help_text="E.164, such as +919876543210.")

    class Meta:
        model = Suppression
        fields = ("number", "reason")

    def clean_number(self) -> str:
        number = self.cleaned_data["number"].strip()
        validate_e164_phone(number)
        if suppression_service.number_is_suppressed(number=number):
            raise forms.ValidationError("This number is already on the list.")
        return number


@admin.register(Suppression)
class SuppressionAdmin(ImportExportMixin, admin.ModelAdmin):
    """The do-not-call list: a number here is dialed for no one, now or later. CSV import
    (``number,reason``, a preview with each row's errors, then confirm) and export."""

    form = SuppressionForm
    resource_classes = [SuppressionResource]
    import_formats = export_formats = [CSV]
    list_display = ("shown_number", "reason", "source", "added", "created_by")
    list_filter = ("source",)
    search_fields = ("number", "reason")

    @admin.display(description="added", ordering="created_at")
    def added(self, obj: Suppression) -> str:
        return admin_time(obj.created_at)

    @admin.display(description="number", ordering="number")
    def shown_number(self, obj: Suppression) -> str:
        return obj.number or "(forgotten: kept as a hash)"

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False if obj is not None else super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Suppression, form, change: bool) -> None:
        saved, _ = suppression_service.suppression_add(
            number=obj.number,
            reason=obj.reason,
            source=ConsentSource.ADMIN,
            created_by=request.user.get_username(),
        )
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: Suppression) -> None:
        if obj.number:
            suppression_service.suppression_remove(number=obj.number, removed_by=request.user.get_username())
        else:
            obj.delete()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for obj in queryset:
            self.delete_model(request, obj)
