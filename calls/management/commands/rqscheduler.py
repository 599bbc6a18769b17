import logging

from django.core.management.base import BaseCommand

from calls.cron import build_cron_scheduler


class Command(BaseCommand):
    help = (
        "Runs RQ's cron scheduler with relevel's built-in schedule: the daily-calls tick on "
        "SCHEDULE_CRON. (Replaces django-rq's rqscheduler, which needs rq-scheduler.)"
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--logging-level", "-l", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
        )

    def handle(self, *args, **options):
        scheduler = build_cron_scheduler(logging_level=getattr(logging, options["logging_level"]))
        for cron_job in scheduler.get_jobs():
            self.stdout.write(
                f"rqscheduler: {cron_job.name} on '{cron_job.cron}' -> queue {cron_job.queue_name}, "
                f"next at {cron_job.next_enqueue_time:%Y-%m-%d %H:%M:%S} UTC"
            )
        self.stdout.flush()  # before the loop: a supervisor's log shows the schedule at once
        scheduler.start()
