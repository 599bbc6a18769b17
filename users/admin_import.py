"""The people list's CSV import and export in the admin (django-import-export): the
library's steps (upload, a preview, confirm; the export form), worded as the rest of the
admin and numbered by the file's lines, with the valid rows of a file that has invalid ones
imported once the operator agrees to leave those out. The work is users/resources.py's."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from import_export import forms as import_export_forms
from import_export.admin import ImportExportMixin
from import_export.formats.base_formats import CSV
from import_export.results import Result, RowResult

from . import upsert
from .models import User
from .resources import UserResource

# --- The confirm step and the export form -----------------------------------------------

LINES_SHOWN = 20


def lines_text(lines: list[int]) -> str:
    """ "3, 5 and 9", or the first LINES_SHOWN and how many more."""
    shown = ", ".join(map(str, lines[:LINES_SHOWN]))
    return shown + (f" and {len(lines) - LINES_SHOWN:,} more" if len(lines) > LINES_SHOWN else "")


def left_out_sentence(lines: list[int]) -> str:
    if not lines:
        return ""
    s = "s" if len(lines) > 1 else ""
    return f" {len(lines):,} invalid row{s} left out (line{s} {lines_text(lines)})."


class ConfirmImportForm(import_export_forms.ConfirmImportForm):
    """The library's confirm step, which may also leave out the invalid lines of a file with
    valid ones too: only once the operator ticks the box saying so."""

    invalid_lines = forms.CharField(widget=forms.HiddenInput, required=False)
    skip_invalid = forms.BooleanField(
        required=False, label="Import the valid rows and leave out the invalid ones"
    )

    def offer_to_leave_out(self, *, invalid_lines: list[int], valid: int) -> None:
        self.initial["invalid_lines"] = " ".join(map(str, invalid_lines))
        invalid = len(invalid_lines)
        self.fields["skip_invalid"].label = (
            f"Import the {valid:,} valid row{'s' if valid != 1 else ''} and leave out the {invalid:,} "
            f"invalid one{'s' if invalid != 1 else ''} (line{'s' if invalid != 1 else ''} "
            f"{lines_text(invalid_lines)})"
        )

    def clean_invalid_lines(self) -> list[int]:
        try:
            return [int(line) for line in self.cleaned_data["invalid_lines"].split()]
        except ValueError:
            raise ValidationError("Upload the file again.") from None

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("invalid_lines") and not cleaned.get("skip_invalid"):
            self.add_error(
                "skip_invalid",
                "Tick this box to import the valid rows without the invalid ones, or fix the "
                "file and upload it again.",
            )
        return cleaned

    def lines_to_leave_out(self) -> list[int] | None:
        if not self.is_valid() or not self.cleaned_data.get("skip_invalid"):
            return None
        return self.cleaned_data["invalid_lines"] or None


class PeopleExportForm(import_export_forms.SelectableFieldsExportForm):
    """The export's column boxes named as the rest of the admin names the fields ("Time
    zone (local_tz)", not "Local Tz"), with the file's column where it differs."""

    def _get_field_label(self, resource, field_name: str) -> str:
        try:
            words = str(User._meta.get_field(field_name).verbose_name)
        except FieldDoesNotExist:
            words = field_name.replace("_", " ")
        label = words[:1].upper() + words[1:]
        return label if words == field_name.replace("_", " ") else f"{label} ({field_name})"


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
        problems += [
            {"column": "", "value": "", "message": message} for message in row.non_field_specific_errors
        ]
        rows.append({"line": row.number, "problems": problems})
    return rows


class PeopleImportExportMixin(ImportExportMixin):
    """CSV import (a preview with each row's errors, then "Confirm import") and export, keyed
    on external_id. The preview lists the first rows only."""

    resource_classes = [UserResource]
    import_formats = export_formats = [CSV]
    import_template_name = "admin/users/user/import.html"
    confirm_form_class = ConfirmImportForm
    export_form_class = PeopleExportForm

    def has_import_permission(self, request: HttpRequest) -> bool:
        # An import creates and changes users.
        return self.has_add_permission(request) and self.has_change_permission(request)

    def has_export_permission(self, request: HttpRequest) -> bool:
        # Whoever may view a user sees their whole number on the user's page already.
        return self.has_view_permission(request)

    def get_data_for_export(self, request: HttpRequest, queryset: QuerySet, **kwargs):
        # The import's key is the external id: the people without one get it now (the
        # export is a POST), so that the file imports back onto the same people.
        upsert.users_give_external_ids(users=queryset)
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
        upsert.users_record_import_history(
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
