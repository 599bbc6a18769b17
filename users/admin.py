"""Users in the admin: who is called, when, and how their last call went."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from import_export.admin import ImportExportMixin
from import_export.formats.base_formats import CSV
from import_export.results import Result, RowResult

from calls.logsafe import mask_phone
from calls.manual import CallNowRefused, user_call_now
from calls.policy import policy_current
from users import services
from users.selectors import CallDay, user_call_record, users_calling_outside_hours, users_today
from users.services import users_set_call_enabled
from web.display import admin_time, status_badge

from .consent import user_opt_in, user_opt_out
from .forms import DAILY_CALL_FIELDS, CallTimeField, UserAdminChangeForm, UserAdminCreationForm
from .models import OptOutSource, User
from .record_display import call_day_badge, call_record_html
from .resources import UserResource

RECENT_CALLS_SHOWN = 10
# The same groups, in the same order, on the add and the change page.
CALL_FIELDS = tuple(field for field in DAILY_CALL_FIELDS if field != "name")
PERSONAL_FIELDS = ("name", "first_name", "last_name", "email")


class CallsFilter(admin.SimpleListFilter):
    """Who is called daily: calls enabled *and* a phone. A login without a phone (the
    superuser) has calls "enabled" by the field's default, and is never called.

    Its parameter is the one Django's own filter on call_enabled used, so links to
    ``?call_enabled__exact=1`` (the admin index's "Users with calls enabled") count only the
    users who are called."""

    title = "calls"
    parameter_name = "call_enabled__exact"

    def lookups(self, request, model_admin):
        return [
            ("1", "Enabled (called daily)"),
            ("no_phone", "Enabled, but no phone"),
            ("0", "Disabled"),
        ]

    def queryset(self, request, queryset):
        if self.value() == "1":
            return queryset.filter(call_enabled=True, phone__isnull=False)
        if self.value() == "no_phone":
            return queryset.filter(call_enabled=True, phone__isnull=True)
        if self.value() == "0":
            return queryset.filter(call_enabled=False)
        return queryset


class UserChangeList(ChangeList):
    """Gives each user on the page their local today's calls (``today``), in one query."""

    def get_results(self, request):
        super().get_results(request)
        today = users_today(users=self.result_list, now=timezone.now())
        for user in self.result_list:
            user.today = today[user.pk]


class OutsideCallingHoursFilter(admin.SimpleListFilter):
    """Users whose call time lies outside the call policy's calling hours."""

    title = "call time vs calling hours"
    parameter_name = "outside_calling_hours"

    def lookups(self, request, model_admin):
        return [("1", "Outside calling hours")]

    def queryset(self, request, queryset):
        if self.value() != "1":
            return queryset
        hours = policy_current().calling_hours
        if hours is None:
            return queryset.none()
        outside = users_calling_outside_hours(start=hours[0], end=hours[1])
        return queryset.filter(pk__in=outside.values("pk"))


class ParkedFilter(admin.SimpleListFilter):
    """Users the tick cannot schedule (a time zone this host does not know) until fixed."""

    title = "parked"
    parameter_name = "parked"

    def lookups(self, request, model_admin):
        return [("yes", "Parked (cannot be scheduled)"), ("no", "Not parked")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(schedule_error__isnull=False)
        if self.value() == "no":
            return queryset.filter(schedule_error__isnull=True)
        return queryset


@admin.register(User)
class UserAdmin(ImportExportMixin, BaseUserAdmin):
    form = UserAdminChangeForm
    add_form = UserAdminCreationForm
    add_form_template = "admin/users/user/add_form.html"
    # CSV import (a preview with each row's errors, then "Confirm import") and export, keyed
    # on external_id: users/resources.py. The preview lists the first rows only.
    resource_classes = [UserResource]
    import_formats = export_formats = [CSV]
    import_template_name = "admin/users/user/import.html"

    # Seven columns, so that all fit at 1366 px: the name and username share one.
    list_display = (
        "user_display",
        "masked_phone",
        "local_tz",
        "call_time",
        "call_enabled",
        "next_call",
        "today_display",
    )
    list_display_links = ("user_display",)
    list_help = "Next calls are in each user's own time zone: hover over one for the zone and UTC."
    list_editable = ("call_time", "call_enabled")
    list_filter = (
        CallsFilter,
        ParkedFilter,
        OutsideCallingHoursFilter,
        "local_tz",
        "is_staff",
        "is_active",
    )
    search_fields = ("name", "phone", "email", "username", "external_id")
    actions = ("enable_calls", "disable_calls", "call_now", "opt_out", "opt_in")

    fieldsets = (
        (None, {"fields": ("username", "password")}),
        (
            "Daily call",
            {
                "fields": (*CALL_FIELDS, "next_call", "schedule_error", "opt_out_display"),
                "description": (
                    "Saving recomputes the next call from these fields. Turning calls off, "
                    "removing the phone or changing the call time or time zone cancels the calls "
                    "still queued for the old schedule, saying why."
                ),
            },
        ),
        ("Personal info", {"fields": PERSONAL_FIELDS}),
        ("Last 30 days", {"fields": ("call_record", "recent_calls", "recent_results")}),
        (
            "Permissions",
            {
                "classes": ("collapse",),
                "fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions"),
            },
        ),
        ("Important dates", {"classes": ("collapse",), "fields": ("last_login_at", "joined_at")}),
    )
    # No password: a person to call is not an admin login (UserAdminCreationForm).
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("username",)}),
        ("Daily call", {"classes": ("wide",), "fields": CALL_FIELDS}),
        ("Personal info", {"classes": ("wide",), "fields": PERSONAL_FIELDS}),
    )
    readonly_fields = (
        "next_call",
        "schedule_error",
        "opt_out_display",
        "call_record",
        "recent_calls",
        "recent_results",
        "last_login_at",
        "joined_at",
    )

    def save_model(self, request: HttpRequest, obj: User, form, change: bool) -> None:
        # The change page and list_editable both save here: a new schedule cancels the
        # calls queued for the old one.
        services.user_save(user=obj)

    def get_changelist(self, request: HttpRequest, **kwargs):
        return UserChangeList

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        # The list's inline call time too, whose form is built from the model alone.
        if db_field.name == "call_time":
            kwargs["form_class"] = CallTimeField
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    # --- Columns ----------------------------------------------------------------------

    @admin.display(description="user", ordering="name")
    def user_display(self, obj: User) -> str:
        if not obj.name or obj.name == obj.username:
            return obj.username
        return format_html('{}<br><span class="quiet">{}</span>', obj.name, obj.username)

    @admin.display(description="phone", ordering="phone")
    def masked_phone(self, obj: User) -> str:
        return mask_phone(obj.phone)

    # Short headers keep the seven columns inside a 1366 px screen; list_help and each time's
    # tooltip say which zone the times are in.
    @admin.display(description="next call", ordering="next_call_at")
    def next_call(self, obj: User) -> str:
        if obj.next_call_at is None:
            return "parked" if obj.schedule_error else "-"
        return admin_time(obj.next_call_at, obj.local_tz)

    @admin.display(description="Opted out")
    def opt_out_display(self, obj: User) -> str:
        if obj.opted_out_at is None:
            return "No"
        on_call = ""
        if obj.opt_out_call_id:
            url = reverse("admin:calls_call_change", args=[obj.opt_out_call_id])
            on_call = format_html(', on <a href="{}">call {}</a>', url, obj.opt_out_call_id)
        return format_html(
            "{} through {}{}. Not called again until an opt-in is recorded (action "
            "\u201cRecord an opt-in\u201d).",
            admin_time(obj.opted_out_at),
            obj.get_opt_out_source_display(),
            on_call,
        )

    @admin.display(description="today")
    def today_display(self, obj: User) -> str:
        """The outcome of the user's local today (every attempt of it), not merely the
        latest call, which may be yesterday's."""
        day: CallDay | None = getattr(obj, "today", None)
        if day is None:
            return "-"
        return call_day_badge(day, tz_name=obj.local_tz)

    @admin.display(description="calls per local day")
    def call_record(self, obj: User) -> str:
        if obj.pk is None:
            return "-"
        return call_record_html(user_call_record(user=obj, now=timezone.now()), tz_name=obj.local_tz)

    @admin.display(description="summaries and sentiment")
    def recent_results(self, obj: User) -> str:
        from calls.admin_results import RECENT_DAYS, recent_results_html
        from users.selectors import user_local_date

        if obj.pk is None:
            return "-"
        today = user_local_date(user=obj, now=timezone.now())
        return recent_results_html(user_id=obj.pk, since=today - timedelta(days=RECENT_DAYS - 1))

    @admin.display(description="recent calls")
    def recent_calls(self, obj: User) -> str:
        if obj.pk is None:
            return "-"
        calls = list(obj.calls.order_by("-local_date", "-attempt")[:RECENT_CALLS_SHOWN])
        if not calls:
            return "No calls yet."
        rows = format_html_join(
            "",
            '<li><a href="{}">{} · attempt {}</a> {} {}</li>',
            (
                (
                    reverse("admin:calls_call_change", args=[c.pk]),
                    c.local_date,
                    c.attempt,
                    status_badge(c.status),
                    admin_time(c.scheduled_for, obj.local_tz),
                )
                for c in calls
            ),
        )
        all_url = reverse("admin:calls_call_changelist") + "?" + urlencode({"user__id__exact": obj.pk})
        return format_html(
            '<ul class="recent-calls" style="margin:0;padding-left:1.5em">{}</ul>'
            '<a href="{}">All calls of this user</a>',
            rows,
            all_url,
        )

    # Operators' own times, in UTC.

    @admin.display(description="last login")
    def last_login_at(self, obj: User) -> str:
        return admin_time(obj.last_login)

    @admin.display(description="date joined")
    def joined_at(self, obj: User) -> str:
        return admin_time(obj.date_joined)

    # --- CSV import and export ---------------------------------------------------------

    def has_import_permission(self, request: HttpRequest) -> bool:
        # An import creates and changes users.
        return self.has_add_permission(request) and self.has_change_permission(request)

    def has_export_permission(self, request: HttpRequest) -> bool:
        # Whoever may view a user sees their whole number on the user's page already.
        return self.has_view_permission(request)

    def get_import_data_kwargs(self, **kwargs) -> dict:
        # The confirm step imports the file again: if a row became invalid since the preview
        # (another user took its phone meanwhile), nothing is written rather than the rest.
        return {**super().get_import_data_kwargs(**kwargs), "rollback_on_validation_errors": True}

    def generate_log_entries(self, result: Result, request: HttpRequest) -> None:
        # What the library records (an entry per user added or changed), written in bulk.
        services.users_record_import_history(
            actor_id=request.user.pk,
            created=[row.instance for row in result if row.import_type == RowResult.IMPORT_TYPE_NEW],
            updated=[
                (row.instance, row.instance._import_changed)
                for row in result
                if row.import_type == RowResult.IMPORT_TYPE_UPDATE
            ],
        )

    def process_result(self, result: Result, request: HttpRequest):
        if result.has_errors() or result.has_validation_errors():
            problems = [
                f"row {row.number}: "
                + "; ".join(f"{field}: {' '.join(errors)}" for field, errors in row.error_dict.items())
                for row in result.invalid_rows[:5]
            ]
            problems += [str(error.error) for error in result.base_errors[:5]]
            self.message_user(
                request,
                "Nothing was imported: the file no longer imports cleanly ("
                + "; ".join(problems)
                + "). Import it again to see every problem.",
                messages.ERROR,
            )
            return HttpResponseRedirect(reverse("admin:users_user_import"))
        return super().process_result(result, request)

    # --- Actions ----------------------------------------------------------------------

    @admin.action(description="Enable calls for selected users", permissions=["change"])
    def enable_calls(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_call_enabled(request, queryset, enabled=True)

    @admin.action(description="Disable calls for selected users", permissions=["change"])
    def disable_calls(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_call_enabled(request, queryset, enabled=False)

    # Each call is one request: a slip of the "select all" box must not ring thousands.
    CALL_NOW_MAX_USERS = 20

    @admin.action(description="Call selected users now (outside the daily schedule)", permissions=["change"])
    def call_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        users = list(queryset.values_list("pk", "username")[: self.CALL_NOW_MAX_USERS + 1])
        if len(users) > self.CALL_NOW_MAX_USERS:
            self.message_user(
                request, f"Select at most {self.CALL_NOW_MAX_USERS} users to call now.", messages.ERROR
            )
            return
        placed = []
        for pk, username in users:
            try:
                call = user_call_now(user_id=pk, requested_by=f"user:{request.user.pk}")
            except CallNowRefused as exc:
                self.message_user(request, f"Not called: {username}, {exc}.", messages.WARNING)
            else:
                placed.append(f"{username} (call {call.pk})")
        if placed:
            self.message_user(request, f"Calling now: {', '.join(placed)}.", messages.SUCCESS)

    @admin.action(
        description="Opt selected users out of calls (they asked us to stop)", permissions=["change"]
    )
    def opt_out(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = sum(
            user_opt_out(user_id=pk, source=OptOutSource.ADMIN)
            for pk in queryset.values_list("pk", flat=True)
        )
        self.message_user(
            request,
            f"Opted out: {done} user{'s' if done != 1 else ''}; their queued calls are canceled.",
            messages.SUCCESS if done else messages.INFO,
        )

    @admin.action(description="Record an opt-in for selected users (calls back on)", permissions=["change"])
    def opt_in(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = sum(user_opt_in(user_id=pk) for pk in queryset.values_list("pk", flat=True))
        self.message_user(
            request,
            f"Opt-in recorded for {done} user{'s' if done != 1 else ''}: calls are on again."
            if done
            else "None of the selected users had opted out.",
            messages.SUCCESS if done else messages.INFO,
        )

    def _set_call_enabled(self, request: HttpRequest, queryset: QuerySet, *, enabled: bool) -> None:
        selected = queryset.count()
        opted_out = queryset.filter(opted_out_at__isnull=False).count() if enabled else 0
        changed = users_set_call_enabled(users=queryset, enabled=enabled)
        verb = "enabled" if enabled else "disabled"
        unchanged = selected - changed - opted_out
        message = f"Calls {verb} for {changed} user{'s' if changed != 1 else ''}"
        if unchanged:
            message += f"; {unchanged} already had calls {verb}"
        if opted_out:
            message += f"; {opted_out} opted out, left off (record an opt-in to call them again)"
        self.message_user(request, message + ".", messages.SUCCESS if changed else messages.INFO)
