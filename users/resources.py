"""CSV import and export of users in the admin (django-import-export), keyed on external_id.

The library gives the admin its steps (upload, a preview with each row's errors, confirm),
its result and history; this resource does the work. Validation is the users API's
(users.forms.UserProfileForm, and the same checks for ids and phones repeated in the file
or held by another user), done once for the whole file before any row is imported, in a
few set-based queries. Rows are then written in a few set-based statements (COPY for new
users), next_call_at computed for each as User.save would, and the calls queued for an old
schedule canceled (users.services): 100,000 rows take seconds (BENCHMARKS.md). The
library's own bulk mode (use_bulk) still costs a get_instance, a diff and several hooks per
row, and its bulk_update a CASE branch per row; the stock resource, a query and a save()
per row.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone
from import_export import fields, resources, widgets
from import_export.results import RowResult
from import_export.utils import atomic_if_using_transaction

from web.csv_cells import csv_cell, csv_cell_read

from . import services, upsert
from .call_days import call_days_names
from .forms import PROFILE_FIELDS, UserProfileForm
from .models import PEOPLE, SCHEDULE_FIELDS, User

# Rows are numbered as the file's lines, the header being line 1, so that a number in an
# error is the line a spreadsheet or an editor shows (a value with a line break inside
# quotes, never seen in these columns, would shift the count).
FIRST_LINE = 2

COLUMNS = (
    "external_id",
    "name",
    "phone",
    "local_tz",
    "call_time",
    "call_enabled",
    "max_retries",
    "retry_delay_minutes",
    "email",
    "notify_sms",
    "notify_email",
    "context",
    "call_days",
    "pause_until",
)


class JSONTextWidget(widgets.Widget):
    """Exports a user's context as compact JSON text (the import reads the same)."""

    def render(self, value, obj=None, **kwargs):
        return json.dumps(value or {}, ensure_ascii=False, separators=(",", ":"))


class TrueFalseWidget(widgets.Widget):
    """Exports true/false (the import also takes 1/0 and yes/no)."""

    def render(self, value, obj=None, **kwargs):
        return "" if value is None else ("true" if value else "false")


class CallDaysWidget(widgets.Widget):
    """Exports the call days as the import reads them: "mon tue wed thu fri"."""

    def render(self, value, obj=None, **kwargs):
        return "" if value is None else " ".join(call_days_names(value))


class UserResource(resources.ModelResource):
    call_days = fields.Field(attribute="call_days", column_name="call_days", widget=CallDaysWidget())
    pause_until = fields.Field(
        attribute="pause_until", column_name="pause_until", widget=widgets.DateWidget(format="%Y-%m-%d")
    )
    call_enabled = fields.Field(
        attribute="call_enabled", column_name="call_enabled", widget=TrueFalseWidget()
    )
    notify_sms = fields.Field(attribute="notify_sms", column_name="notify_sms", widget=TrueFalseWidget())
    notify_email = fields.Field(
        attribute="notify_email", column_name="notify_email", widget=TrueFalseWidget()
    )
    call_time = fields.Field(
        attribute="call_time", column_name="call_time", widget=widgets.TimeWidget(format="%H:%M:%S")
    )
    context = fields.Field(attribute="context", column_name="context", widget=JSONTextWidget())

    class Meta:
        model = User
        fields = COLUMNS
        import_order = export_order = COLUMNS
        import_id_fields = ("external_id",)
        use_transactions = True
        # The preview shows each row as read rather than a diff, which would copy and render
        # every instance twice.
        skip_diff = True
        store_row_values = True

    def get_queryset(self):
        # People only: an operator's login is neither exported nor imported over.
        return super().get_queryset().filter(PEOPLE)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._rows: dict[int, dict[str, Any]] = {}
        self._errors: dict[int, dict[str, str]] = {}
        self._existing: dict[str, User] = {}
        self._usernames: dict[str, str] = {}
        self._given: list[str] = []
        self._now = timezone.now()

    def export_field(self, field, instance, **kwargs):
        # Names and ids are the product's (or anyone's) text: none may run as a formula.
        return csv_cell(super().export_field(field, instance, **kwargs))

    # --- The whole file, before any row ---------------------------------------------------

    def before_import(self, dataset, **kwargs) -> None:
        headers = [header.strip() if isinstance(header, str) else header for header in dataset.headers or []]
        dataset.headers = headers
        unknown = [header for header in headers if header not in COLUMNS]
        if unknown:
            raise ValueError(
                f"Unknown column(s): {', '.join(map(str, unknown))}. The columns are {', '.join(COLUMNS)}."
            )
        self._given = [header for header in headers if header in PROFILE_FIELDS]
        self._now = timezone.now()
        rows: list[dict[str, Any] | None] = []
        for number, values in enumerate(dataset, FIRST_LINE):
            data = {
                header: ("" if value is None else csv_cell_read(str(value)))
                for header, value in zip(headers, values, strict=False)
            }
            cleaned, errors = UserProfileForm.clean_row(data, given=self._given)
            rows.append(cleaned or None)
            if errors:
                self._errors[number] = errors
        lock = not kwargs.get("dry_run", False)
        self._existing = upsert.users_by_external_id([row["external_id"] for row in rows if row], lock=lock)
        conflicts = upsert.users_conflicts(
            rows, existing=self._existing, label="line", first_number=FIRST_LINE
        )
        for index, row_errors in conflicts.items():
            self._errors.setdefault(index + FIRST_LINE, {}).update(row_errors)
        self._rows = {number: row for number, row in enumerate(rows, FIRST_LINE) if row}
        new_ids = [
            row["external_id"] for row in self._rows.values() if row["external_id"] not in self._existing
        ]
        self._usernames = upsert.usernames_for(new_ids)

    # --- Then every row, and the writes --------------------------------------------------

    def import_data_inner(
        self, dataset, dry_run, raise_errors, using_transactions, collect_failed_rows, **kwargs
    ):
        """The library's import loop (one get_instance, import_instance, save_instance and
        bulk batch per row) with the answers before_import found for the whole file: the
        same Result, row by row (new, update, skip or invalid, with each row's errors), for
        the library's preview, confirm and history, at a fraction of its cost per row. The
        writes are set-based (users.upsert.users_write, users_cancel_pending_calls), and
        the preview (dry_run) makes none: every row was already checked against the
        database, so writing and rolling back would only double its time.

        Invalid rows stop the writes, unless ``skip_invalid_lines`` names exactly the lines
        found invalid (the operator confirmed leaving those out): then the valid rows are
        written and ``result.invalid_lines_left_out`` says which were not."""
        skip_invalid_lines = kwargs.get("skip_invalid_lines")
        result = self.get_result_class()()
        result.invalid_lines_left_out = []
        result.diff_headers = self.get_diff_headers()
        result.total_rows = len(dataset)
        try:
            with atomic_if_using_transaction(using_transactions, using=self.get_db_connection_name()):
                self.before_import(dataset, **kwargs)
            self._check_import_id_fields(dataset.headers)
        except Exception as exc:
            # One error for the file (an unknown column, no external_id), not one per row.
            self.handle_import_error(result, exc, raise_errors)
            return result
        headers = dataset.headers
        # The preview's and the error table's columns: the file's own (skip_diff gives none).
        result.diff_headers = list(headers)
        to_create: list[User] = []
        to_update: list[User] = []
        rescheduled: list[tuple[User, dict[str, Any] | None]] = []
        template = User()
        for number, values in enumerate(dataset, FIRST_LINE):
            row = dict(zip(headers, values, strict=False))
            row_result = RowResult()
            row_result.row_values = row
            if number in self._errors:
                row_result.import_type = RowResult.IMPORT_TYPE_INVALID
                row_result.validation_error = ValidationError(self._errors[number])
                result.increment_row_result_total(row_result)
                result.append_invalid_row(number, row, row_result.validation_error)
                continue
            cleaned = self._rows[number]
            user = self._existing.get(cleaned["external_id"])
            if user is None:
                user = upsert.user_new(
                    external_id=cleaned["external_id"],
                    username=self._usernames[cleaned["external_id"]],
                    template=template,
                )
                upsert.user_set_fields(user, cleaned)
                row_result.import_type = RowResult.IMPORT_TYPE_NEW
                to_create.append(user)
                rescheduled.append((user, None))
            else:
                changed, before = upsert.user_set_fields(user, cleaned)
                if not changed:
                    row_result.import_type = RowResult.IMPORT_TYPE_SKIP
                else:
                    row_result.import_type = RowResult.IMPORT_TYPE_UPDATE
                    user._import_changed = changed
                    to_update.append(user)
                    if SCHEDULE_FIELDS & set(changed):
                        rescheduled.append((user, before))
            row_result.instance = user
            row_result.object_repr = str(user)
            row_result.number = number  # the file's line, for the preview
            result.increment_row_result_total(row_result)
            result.append_row_result(row_result)
        invalid = [row.number for row in result.invalid_rows]
        if invalid and skip_invalid_lines is not None and sorted(skip_invalid_lines) == invalid:
            result.invalid_lines_left_out = invalid
        if not dry_run and (not invalid or result.invalid_lines_left_out):
            try:
                with atomic_if_using_transaction(using_transactions, using=self.get_db_connection_name()):
                    reasons = upsert.users_reschedule(rescheduled, now=self._now)
                    upsert.users_write(to_create=to_create, to_update=to_update, fields=self._given)
                    services.users_cancel_pending_calls(
                        reasons=reasons, now=self._now, release=services.users_still_callable(to_update)
                    )
            except Exception as exc:
                self.handle_import_error(result, exc, raise_errors)
            for row_result in result.valid_rows():
                row_result.object_id = row_result.instance.pk
        return result
