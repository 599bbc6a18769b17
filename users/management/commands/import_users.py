from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from import_export.formats.base_formats import CSV

from users.resources import UserResource

SHOWN_ERRORS = 20


class Command(BaseCommand):
    help = (
        "Imports users from a CSV file as the admin's import does (same columns, same checks, "
        "all or nothing), without a web request's time limit: for files too big for the admin."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="the CSV file (UTF-8, with a header row)")
        parser.add_argument("--dry-run", action="store_true", help="check every row, write nothing")

    def handle(self, *args, path: Path, dry_run: bool, **options):
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {path}: {exc}") from None
        result = UserResource().import_data(CSV(encoding="utf-8-sig").create_dataset(text), dry_run=dry_run)
        problems = [str(error.error) for error in result.base_errors]
        problems += [
            f"line {row.number}: "
            + "; ".join(f"{field}: {' '.join(errors)}" for field, errors in row.error_dict.items())
            for row in result.invalid_rows
        ]
        if problems:
            for problem in problems[:SHOWN_ERRORS]:
                self.stderr.write(problem)
            more = f" (the first {SHOWN_ERRORS} above)" if len(problems) > SHOWN_ERRORS else ""
            raise CommandError(f"{len(problems)} problem(s){more}; nothing was imported")
        totals = result.totals
        self.stdout.write(
            f"import_users: {result.total_rows} rows: {totals['new']} new, {totals['update']} changed, "
            f"{totals['skip']} unchanged" + (" (dry run: nothing written)" if dry_run else "")
        )
