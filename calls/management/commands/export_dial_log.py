import csv
from datetime import date

from django.core.management.base import BaseCommand, CommandError

from calls.dial_log import DIAL_LOG_HEADER, dial_log_rows
from web.csv_cells import csv_cell

# A progress line on stderr every this many rows, for a month's export.
PROGRESS_EVERY = 100_000


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{option} must be a date such as 2026-12-01, not {text[:40]!r}") from None


class Command(BaseCommand):
    help = (
        "Writes the dial log as CSV: one row per dial between --from and --to (UTC days, both "
        "included) with the person's local time, the calling hours, the consent and the "
        "suppression check that allowed it. To standard output unless --output is given."
    )

    def add_arguments(self, parser):
        parser.add_argument("--from", dest="first_day", required=True, help="first day, YYYY-MM-DD (UTC)")
        parser.add_argument(
            "--to", dest="last_day", required=True, help="last day, YYYY-MM-DD (UTC), included"
        )
        parser.add_argument("--output", help="a file to write instead of standard output")

    def handle(self, *args, first_day: str, last_day: str, output: str | None, **options):
        first, last = _day(first_day, "--from"), _day(last_day, "--to")
        if last < first:
            raise CommandError(f"--to ({last}) is before --from ({first})")
        try:
            out = open(output, "w", newline="", encoding="utf-8") if output else self.stdout._out  # noqa: SIM115
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc.strerror}") from None
        written = 0
        try:
            writer = csv.writer(out)
            writer.writerow(DIAL_LOG_HEADER)
            for row in dial_log_rows(first_day=first, last_day=last):
                writer.writerow([csv_cell(value) for value in row])
                written += 1
                if written % PROGRESS_EVERY == 0:
                    self.stderr._out.write(f"export_dial_log: {written:,} dials so far\n")
        finally:
            if output:
                out.close()
        self.stderr._out.write(
            f"export_dial_log: {written:,} dials from {first} to {last}"
            + (f" written to {output}\n" if output else "\n")
        )
