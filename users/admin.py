"""Users in the admin: who is called, when, and how their last call went."""

from __future__ import annotations

from datetime import date, timedelta

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from calls.logsafe import mask_phone
from calls.manual import CallNowRefused, user_call_now
from calls.policy import policy_current
from users import calendar, services, upsert
from users.selectors import CallDay, user_call_record, users_calling_outside_hours, users_today
from users.services import users_set_call_enabled
from web.display import admin_time, end_reason_text, status_badge

from .admin_consent import ConsentFilter, consent_html
from .admin_forget import forget_people_action
from .admin_import import PeopleImportExportMixin
from .consent import user_opt_in, user_opt_out
from .forms import NOTIFY_FIELDS, CallTimeField, CallTimeInput, UserAdminChangeForm, UserAdminCreationForm
from .models import OPERATORS, PEOPLE, Operator, OptOutSource, User
from .record_display import call_day_badge, call_record_html

RECENT_CALLS_SHOWN = 10
# The same groups, in the same order, on the add and the change page: what calling a
# person needs first, the rest folded away.
PERSON_FIELDS = ("name", "phone", "local_tz", "call_time", "call_enabled")
# The e-mail and the missed-day messages (notify_sms, notify_email) are folded away too:
# most people added by hand need neither.
MORE_FIELDS = ("external_id", "max_retries", "retry_delay_minutes", "context", "email", *NOTIFY_FIELDS)
# The person's calendar (users/calendar.py).
CALENDAR_FIELDS = ("call_days", "pause_until")
CALENDAR_HELP = (
    "No call on the days left unchecked, nor on local dates up to and including the pause's "
    "last day, nor on the call policy's skip dates and holidays. Action \u201cSkip today\u201d skips "
    "one day."
)
RECORD_HEADING = "Next call and the last 30 days"
SCHEDULE_HELP = (
    "Saving recomputes the next call from these fields. Turning calls off, removing the phone "
    "or changing the call time or time zone cancels the calls still queued for the old "
    "schedule, saying why."
)


class OffOnFilter(admin.SimpleListFilter):
    """The people whose local date ``off_on`` is a day off (the dashboard's "Skipped" links
    here): offered only when the link gives a date."""

    title = "day off on"
    parameter_name = "off_on"

    def lookups(self, request, model_admin):
        value = request.GET.get(self.parameter_name)
        return [(value, value)] if value else []

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        try:
            day = date.fromisoformat(self.value())
        except ValueError:
            return queryset.none()
        return queryset.filter(pk__in=calendar.people_off_on(local_date=day).values("pk"))


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
class UserAdmin(PeopleImportExportMixin, BaseUserAdmin):
    form = UserAdminChangeForm
    add_form = UserAdminCreationForm
    add_form_template = "admin/users/user/add_form.html"

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
        ConsentFilter,
        OutsideCallingHoursFilter,
        OffOnFilter,
        "local_tz",
    )
    search_fields = ("name", "phone", "email", "username", "external_id")
    actions = (
        *("enable_calls", "disable_calls", "call_now"),
        *("opt_out", "opt_in", "skip_today", "forget_people"),
    )

    # What an operator opens a person's page for comes first: when the next call is and how
    # the last 30 days went; then what can be changed.
    fieldsets = (
        (RECORD_HEADING, {"fields": ("next_call", "off_today", "call_record")}),
        (
            "Person to call",
            {"fields": (*PERSON_FIELDS, "opt_out_display", "consent_display"), "description": SCHEDULE_HELP},
        ),
        ("Call days", {"fields": (*CALENDAR_FIELDS, "skipped_days"), "description": CALENDAR_HELP}),
        ("More", {"classes": ("collapse",), "fields": (*MORE_FIELDS, "username")}),
        ("Recent calls", {"fields": ("recent_calls", "recent_results")}),
        # No password and no permissions: a person to call is not an admin login (those are
        # the Operators, OperatorAdmin below). The username is made for them.
        ("Important dates", {"classes": ("collapse",), "fields": ("joined_at",)}),
    )
    add_fieldsets = (
        ("Person to call", {"fields": PERSON_FIELDS}),
        # Folded: every day and no pause are what a new person starts with.
        ("Call days", {"classes": ("collapse",), "fields": CALENDAR_FIELDS, "description": CALENDAR_HELP}),
        ("More", {"classes": ("collapse",), "fields": MORE_FIELDS}),
    )
    readonly_fields = (
        "username",
        "next_call",
        "schedule_error",
        "opt_out_display",
        "off_today",
        "skipped_days",
        "consent_display",
        "call_record",
        "recent_calls",
        "recent_results",
        "joined_at",
    )

    def get_fieldsets(self, request: HttpRequest, obj: User | None = None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or not obj.schedule_error:
            return fieldsets
        # Parked: why there is no next call, beside it.
        (name, options), *rest = fieldsets
        return (
            (name, {**options, "fields": ("next_call", "schedule_error", "off_today", "call_record")}),
            *rest,
        )

    def save_model(self, request: HttpRequest, obj: User, form, change: bool) -> None:
        # The change page and list_editable both save here: a new schedule cancels the
        # calls queued for the old one.
        services.user_save(user=obj)
        if not change and obj.external_id is None:
            # Every person has the import's and the users API's key (relevel-<id>).
            upsert.users_give_external_ids(users=User.objects.filter(pk=obj.pk))
            obj.refresh_from_db(fields=["external_id"])

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # People only: the list, its counts, the export and each person's page.
        return super().get_queryset(request).filter(PEOPLE)

    def get_changelist(self, request: HttpRequest, **kwargs):
        return UserChangeList

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        # The list's inline call time too, whose form is built from the model alone.
        if db_field.name == "call_time":
            kwargs["form_class"] = CallTimeField
            # The field's plain input rather than the admin's, which offers "Now".
            kwargs["widget"] = CallTimeInput
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

    @admin.display(description="today")
    def off_today(self, obj: User) -> str:
        """Why the person's today is off, if it is (the next call above says when instead)."""
        if obj.pk is None:
            return "-"
        off = calendar.user_off_today(user=obj, now=timezone.now())
        if off is None:
            return "A call day."
        return f"Off ({off.local_date}): {off.reason}"

    @admin.display(description="skipped days")
    def skipped_days(self, obj: User) -> str:
        if obj.pk is None:
            return "-"
        days = calendar.user_upcoming_skips(user=obj, now=timezone.now())
        return ", ".join(f"{day}" for day in days) or "None ahead."

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

    @admin.display(description="Consent")
    def consent_display(self, obj: User) -> str:
        return consent_html(obj)

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

    @admin.display(description="the latest ten")
    def recent_calls(self, obj: User) -> str:
        if obj.pk is None:
            return "-"
        calls = list(obj.calls.order_by("-local_date", "-manual", "-attempt", "-pk")[:RECENT_CALLS_SHOWN])
        if not calls:
            return "No calls yet."
        # Each call's time (its date and the person's clock, one format), what it was, how
        # it ended, and the provider's reason in words.
        rows = format_html_join(
            "",
            '<li>{} · <a href="{}">{}</a> {}{}</li>',
            (
                (
                    admin_time(c.dialed_at or c.scheduled_for, obj.local_tz),
                    reverse("admin:calls_call_change", args=[c.pk]),
                    "manual call" if c.manual else f"attempt {c.attempt}",
                    status_badge(c.status),
                    format_html(' <span class="quiet">{}</span>', end_reason_text(c.end_reason))
                    if c.end_reason
                    else "",
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

    @admin.display(description="date joined")
    def joined_at(self, obj: User) -> str:
        return admin_time(obj.date_joined)

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

    @admin.action(description="Forget this person (erase their personal data)", permissions=["delete"])
    def forget_people(self, request: HttpRequest, queryset: QuerySet):
        return forget_people_action(self, request, queryset)

    @admin.action(description="Skip today for selected users (their local today)", permissions=["change"])
    def skip_today(self, request: HttpRequest, queryset: QuerySet) -> None:
        canceled = 0
        pks = list(queryset.values_list("pk", flat=True))
        for pk in pks:
            result = calendar.user_skip_day(user_id=pk, requested_by=f"user:{request.user.pk}")
            canceled += result.canceled_calls
        self.message_user(
            request,
            f"Today skipped for {len(pks)} user{'s' if len(pks) != 1 else ''}; "
            f"{canceled} queued call(s) canceled.",
            messages.SUCCESS,
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


class OperatorCreationForm(AdminUserCreationForm):
    class Meta(AdminUserCreationForm.Meta):
        model = Operator
        fields = ("username", "name", "email")

    def save(self, commit: bool = True) -> Operator:
        # Staff, and so an operator (users.models.OPERATORS): never called, whatever the
        # call fields' defaults say.
        operator = super().save(commit=False)
        operator.is_staff = True
        operator.call_enabled = False
        if commit:
            operator.save()
            self.save_m2m()
        return operator


class OperatorChangeForm(UserChangeForm):
    class Meta(UserChangeForm.Meta):
        model = Operator


@admin.register(Operator)
class OperatorAdmin(BaseUserAdmin):
    """The admin's logins (staff and superusers), apart from the people who are called."""

    form = OperatorChangeForm
    add_form = OperatorCreationForm
    list_display = ("username", "name", "email", "is_superuser", "is_active", "last_login_at")
    list_filter = ("is_superuser", "is_active", "groups")
    search_fields = ("username", "name", "email")
    ordering = ("username",)
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Personal info", {"fields": ("name", "email")}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Important dates", {"fields": ("last_login_at", "joined_at")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("username", "usable_password", "password1", "password2", "name", "email"),
            },
        ),
    )
    readonly_fields = ("last_login_at", "joined_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).filter(OPERATORS)

    # Operators' own times, in UTC.

    @admin.display(description="last login", ordering="last_login")
    def last_login_at(self, obj: User) -> str:
        return admin_time(obj.last_login)

    @admin.display(description="date joined", ordering="date_joined")
    def joined_at(self, obj: User) -> str:
        return admin_time(obj.date_joined)
