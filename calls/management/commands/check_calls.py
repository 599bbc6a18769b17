import sys

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from calls.health_checks import DEFAULT_LATE_MINUTES, checks_run, problems_found


class Command(BaseCommand):
    help = (
        "Checks that relevel is calling people (for cron or an external monitor): prints OK and "
        "exits 0, or prints one line per problem and exits 1."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--late-minutes",
            type=int,
            default=DEFAULT_LATE_MINUTES,
            help=(
                "a first attempt still not dialed this long after its time is a problem "
                f"(default {DEFAULT_LATE_MINUTES})"
            ),
        )
        parser.add_argument("--quiet", action="store_true", help="print nothing when all is well")

    def handle(self, *args, late_minutes: int, quiet: bool, **options):
        if late_minutes < 1:
            raise CommandError(f"--late-minutes must be 1 or more, not {late_minutes}")
        problems = problems_found(checks_run(now=timezone.now(), late_minutes=late_minutes))
        if not problems:
            if not quiet:
                self.stdout.write("OK")
            return
        for problem in problems:
            self.stdout.write(f"{problem.code}: {problem.message}")
        self.stdout.flush()
        sys.exit(1)
