from django.core.management.base import BaseCommand, CommandError
from redis.exceptions import RedisError

from calls.scheduling import calls_schedule_due


class Command(BaseCommand):
    help = "Runs one scheduling tick now, in the foreground, and prints its summary."

    def handle(self, *args, **options):
        try:
            summary = calls_schedule_due()
        except RedisError as exc:
            # The claims committed; the next tick re-enqueues their jobs.
            raise CommandError(
                f"Redis is unreachable ({type(exc).__name__}); "
                "claimed calls will be enqueued by the next tick"
            ) from None
        self.stdout.write(f"schedule_calls: {summary.line()}")
