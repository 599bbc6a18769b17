from django.core.management.base import BaseCommand

from users.calendar import users_calendar_reschedule


class Command(BaseCommand):
    help = (
        "Moves everyone's next call after the call policy's days off changed (what the job "
        "enqueued by the change does, in the foreground), in batches, and prints how many moved."
    )

    def handle(self, *args, **options):
        moved = users_calendar_reschedule()
        self.stdout.write(f"reschedule_calendars: {moved} next call(s) moved")
