"""Compute the dashboard's missing and stale daily rollups now (a new deployment, a restore)."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from dashboard import rollups


class Command(BaseCommand):
    help = "Compute the dashboard's missing and stale daily rollups (the last 30 local days) now."

    def handle(self, *args, **options) -> None:
        started = time.perf_counter()
        try:
            summary = rollups.daily_stats_refresh()
        except DatabaseError as exc:
            first_line = (str(exc).strip().splitlines() or [""])[0]
            raise CommandError(f"database error: {first_line}") from None
        seconds = time.perf_counter() - started
        self.stdout.write(f"refresh_dashboard: {len(summary.refreshed)} days computed in {seconds:.1f} s")
