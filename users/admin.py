"""Users in the admin: who is called, when, and how their last call went."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
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
from web.display import admin_time, end_reason_text, status_badge

from .consent import user_opt_in, user_opt_out
from .forms import (
    CallTimeField,
    CallTimeInput,
    ConfirmImportForm,
    PeopleExportForm,
    UserAdminChangeForm,
    UserAdminCreationForm,
    left_out_sentence,
)
from .models import OPERATORS, PEOPLE, Operator, OptOutSource, User
from .record_display import call_day_badge, call_record_html
from .resources import UserResource

RECENT_CALLS_SHOWN = 10
# The same groups, in the same order, on the add and the change page: what calling a
# person needs first, the rest folded away.
PERSON_FIELDS = ("name", "phone", "local_tz", "call_time", "call_enabled")
MORE_FIELDS = ("external_id", "max_retries", "retry_delay_minutes", "email")
RECORD_HEADING = "Next call and the last 30 days"
SCHEDULE_HELP = (
    "Saving recomputes the next call from these fields. Turning calls off, removing the phone "
    "or changing the call time or time zone cancels the calls still queued for the old "
    "schedule, saying why."
)

# The import's error table lists this many invalid rows, one line per problem.
PROBLEM_ROWS_SHOWN = 500


def import_problems(result: Result, *, limit: int) -> list[dict]:
    """The first ``limit`` invalid rows of an import as the error table shows them: each
    line of the file with its problems, one per column, beside the value the file gave."""
    headers = list(result.diff_headers)
    rows = []
    for row in result.invalid_rows[:limit]:
        given = dict(zip(headers, row.values, strict=False))
        problems = [
            {"column": column, "value": given.get(column, ""), "message": " ".join(messages)}
            for column, messages in row.field_specific_errors.items()
        ]
        problems += [{"column": "", "value": "", "message": message} for message in row.non_field_specific_errors]
        rows.append({"line": row.number, "problems": problems})
    return rows


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
    list_filter = (CallsFilter, ParkedFilter, OutsideCallingHoursFilter, "local_tz")
    search_fields = ("name", "phone", "email", "username", "external_id")
    actions = ("enable_calls", "disable_calls", "call_now", "opt_out", "opt_in")

    # What an operator opens a person's page for comes first: when the next call is and how
    # the last 30 days went; then what can be changed.
    fieldsets = (
        (RECORD_HEADING, {"fields": ("next_call", "call_record")}),
        (
            "Person to call",
            {"fields": (*PERSON_FIELDS, "opt_out_display"), "description": SCHEDULE_HELP},
        ),
        ("More", {"classes": ("collapse",), "fields": (*MORE_FIELDS, "username")}),
        ("Recent calls", {"fields": ("recent_calls",)}),
        # No password and no permissions: a person to call is not an admin login (those are
        # the Operators, OperatorAdmin below). The username is made for them.
        ("Important dates", {"classes": ("collapse",), "fields": ("joined_at",)}),
    )
    add_fieldsets = (
        ("Person to call", {"fields": PERSON_FIELDS}),
        ("More", {"classes": ("collapse",), "fields": MORE_FIELDS}),
    )
    readonly_fields = (
        "username",
        "next_call",
        "schedule_error",
        "opt_out_display",
        "call_record",
        "recent_calls",
        "joined_at",
    )

    def get_fieldsets(self, request: HttpRequest, obj: User | None = None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or not obj.schedule_error:
            return fieldsets
        # Parked: why there is no next call, beside it.
        (name, options), *rest = fieldsets
        return ((name, {**options, "fields": ("next_call", "schedule_error", "call_record")}), *rest)

    def save_model(self, request: HttpRequest, obj: User, form, change: bool) -> None:
        # The change page and list_editable both save here: a new schedule cancels the
        # calls queued for the old one.
        services.user_save(user=obj)
        if not change and obj.external_id is None:
            # Every person has the import's and the users API's key (relevel-<id>).
            services.users_give_external_ids(users=User.objects.filter(pk=obj.pk))
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

    # --- CSV import and export ---------------------------------------------------------

    def has_import_permission(self, request: HttpRequest) -> bool:
        # An import creates and changes users.
        return self.has_add_permission(request) and self.has_change_permission(request)

    def has_export_permission(self, request: HttpRequest) -> bool:
        # Whoever may view a user sees their whole number on the user's page already.
        return self.has_view_permission(request)

    def get_data_for_export(self, request: HttpRequest, queryset: QuerySet, **kwargs):
        # The import's key is the external id: the people without one get it now (the
        # export is a POST), so that the file imports back onto the same people.
        services.users_give_external_ids(users=queryset)
        return super().get_data_for_export(request, queryset.all(), **kwargs)

    def add_success_message(self, result: Result, request: HttpRequest) -> None:
        # The preview's words: a row that changes nothing is "unchanged", not "skipped".
        totals = result.totals
        self.message_user(
            request,
            f"Import finished: {totals[RowResult.IMPORT_TYPE_NEW]} new, "
            f"{totals[RowResult.IMPORT_TYPE_UPDATE]} changed, "
            f"{totals[RowResult.IMPORT_TYPE_SKIP]} unchanged."
            + left_out_sentence(getattr(result, "invalid_lines_left_out", [])),
            messages.SUCCESS,
        )

    confirm_form_class = ConfirmImportForm
    export_form_class = PeopleExportForm

    def import_action(self, request: HttpRequest, **kwargs):
        """The library's preview, which offers no confirmation once a row is invalid; here,
        with valid rows too, it offers to import those and leave the invalid lines out."""
        response = super().import_action(request, **kwargs)
        context = getattr(response, "context_data", None) or {}
        result = context.get("result")
        if result is not None and result.has_validation_errors():
            context["problems"] = import_problems(result, limit=PROBLEM_ROWS_SHOWN)
        if (
            result is None
            or context.get("confirm_form") is not None
            or result.has_errors()
            or not result.has_validation_errors()
            or not result.valid_rows()
        ):
            return response
        form = self.create_confirm_form(request, import_form=context["form"])
        form.offer_to_leave_out(
            invalid_lines=[row.number for row in result.invalid_rows], valid=len(result.valid_rows())
        )
        context["confirm_form"] = form
        return response

    def get_import_data_kwargs(self, **kwargs) -> dict:
        form = kwargs.get("form")
        leave_out = form.lines_to_leave_out() if isinstance(form, ConfirmImportForm) else None
        if leave_out:
            # Written without the invalid lines the operator agreed to leave out, and only if
            # those are still exactly the invalid ones (users/resources.py).
            return {**super().get_import_data_kwargs(**kwargs), "skip_invalid_lines": leave_out}
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
        left_out = getattr(result, "invalid_lines_left_out", [])
        if result.has_errors() or (result.has_validation_errors() and not left_out):
            problems = [
                f"line {row.number}: "
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
