from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from calls.retention import data_prune


class Command(BaseCommand):
    help = (
        "Applies the retention settings now (what the nightly job does): erases the content of calls "
        "older than RETENTION_DAYS_CONTENT and deletes calls older than RETENTION_DAYS_CALLS once their "
        "days are in the dashboard's rollups. Prints one summary line."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="count what would go, change nothing")
        parser.add_argument(
            "--batch-size", type=int, default=None, help="rows per transaction (default RETENTION_BATCH_SIZE)"
        )

    def handle(self, *args, dry_run: bool, batch_size: int | None, **options):
        if batch_size is not None and not 1 <= batch_size <= 100_000:
            raise CommandError(f"--batch-size must be 1 to 100000, not {batch_size}")
        try:
            report = data_prune(dry_run=dry_run, batch_size=batch_size)
        except DatabaseError as exc:
            raise CommandError(
                f"prune_data stopped: {type(exc).__name__}: {str(exc).splitlines()[0]}"
            ) from None
        self.stdout.write(report.line())
