"""The daily rollup behind the dashboard's charts (see dashboard.rollups).

One row per (local day, metric, key): "status"/"completed" -> 612,345 calls, "hour_dialed"/"9"
-> 40,112, "lag_p95"/"" -> 7.5 seconds. Tall rather than wide, so that a new chart's numbers
are new metric names, not a migration.
"""

from __future__ import annotations

from django.db import models


class RollupDay(models.Model):
    """One local day (Call.local_date) whose figures are in DailyStat, and when they were
    computed. ``final`` once computed after every time zone's day (and its late outcomes)
    was over: never recomputed after that."""

    day = models.DateField(primary_key=True)
    computed_at = models.DateTimeField()
    final = models.BooleanField(default=False)
    calls = models.PositiveIntegerField(default=0, help_text="Calls of that day when it was computed.")
    seconds = models.FloatField(default=0, help_text="How long computing it took.")

    class Meta:
        ordering = ("day",)

    def __str__(self) -> str:
        return f"{self.day} ({'final' if self.final else 'open'})"


class DailyStat(models.Model):
    day = models.DateField()
    metric = models.CharField(max_length=32)
    key = models.CharField(max_length=64, blank=True)
    value = models.FloatField()

    class Meta:
        constraints = [
            # Also the index of every read: the charts take a range of days.
            models.UniqueConstraint(fields=["day", "metric", "key"], name="dailystat_day_metric_key"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.metric}[{self.key}] = {self.value:g}"


class TodaySnapshot(models.Model):
    """Today's counts for the page's "today at a glance" (dashboard.glance), as last computed:
    one row per day, the deployment's date, recomputed every minute while someone looks."""

    day = models.DateField(primary_key=True)
    computed_at = models.DateTimeField()
    seconds = models.FloatField(default=0, help_text="How long computing it took.")
    counts = models.JSONField(default=dict)

    def __str__(self) -> str:
        return f"{self.day} at {self.computed_at:%H:%M:%S}"
