"""Retention: what was said on a call is erased after RETENTION_DAYS_CONTENT days, and the
call rows themselves are deleted after RETENTION_DAYS_CALLS, once their day's figures are in
the dashboard's daily rollup (docs/operating/data-lifecycle.md).

Bounded and idempotent, so that a 1M-user table of 90 days is pruned without long locks and
a second run (or two at once) is harmless:
- Content is found through the partial index ``call_content_created_idx`` (calls that still
  hold a transcript, a recording link or payloads), read in keyset pages of
  RETENTION_BATCH_SIZE in (created_at, id) order, and each page is blanked in a transaction
  of its own. A row blanked leaves the index's predicate, so the next night reads only what
  is new: the work is the rows left to prune, never the whole table.
- Rows go one local day at a time, oldest first: the day's rollup is checked final (or
  computed first), then its calls are deleted RETENTION_BATCH_SIZE at a time.

The call results' words (summary, turns, transcript, extracted data, call-back note) go with
the call's content, by the same kind of pages on their own partial index. Another app's
content is pruned by adding its eraser to CONTENT_PRUNERS: one line, a function with the
signature of calls_content_prune.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from .models import CALL_HAS_CONTENT, RESULT_CONTENT_ERASED, RESULT_HAS_CONTENT, Call, CallResult

logger = logging.getLogger("relevel.retention")

# (kind, dotted path): each takes before (an aware datetime), batch_size and dry_run, and
# returns how many rows it erased (or, dry, would erase).
CONTENT_PRUNERS: tuple[tuple[str, str], ...] = (
    ("calls", "calls.retention.calls_content_prune"),
    ("results", "calls.retention.call_results_content_prune"),
)
# By dotted path: the engine never imports the dashboard, which reads it.
ROLLUP_FINAL_ENSURE = "dashboard.rollups.day_rollup_final_ensure"
PRUNE_JOB = "calls.jobs.prune_data"
# RQ kills the job after this; what is left is pruned the next night.
PRUNE_JOB_TIMEOUT = 3 * 3600


def calls_content_prune(*, before: datetime, batch_size: int, dry_run: bool = False) -> int:
    """Blank the transcript, recording link and payloads of calls created before ``before``."""
    candidates = Call.objects.filter(CALL_HAS_CONTENT, created_at__lt=before)
    if dry_run:
        return candidates.count()
    erased = 0
    after: tuple[datetime, int] | None = None
    while True:
        page = candidates
        if after is not None:
            page = page.extra(where=["(created_at, id) > (%s, %s)"], params=list(after))
        rows = list(page.order_by("created_at", "id").values_list("created_at", "id")[:batch_size])
        if not rows:
            return erased
        with transaction.atomic():
            erased += Call.objects.filter(CALL_HAS_CONTENT, pk__in=[pk for _, pk in rows]).update(
                transcript="", recording_url="", provider_payloads=[]
            )
        after = rows[-1]


def call_results_content_prune(*, before: datetime, batch_size: int, dry_run: bool = False) -> int:
    """Blank the summary, turns, transcript, extracted data and call-back note of the results
    of calls created before ``before`` (their sentiment, cost and flags stay: the dashboard
    counts them). Keyset pages on the partial index callresult_content_idx, up to the last
    call created before ``before`` (found on call_created_idx)."""
    last_call = (
        Call.objects.filter(created_at__lt=before)
        .order_by("-created_at")
        .values_list("pk", flat=True)
        .first()
    )
    if last_call is None:
        return 0
    candidates = CallResult.objects.filter(RESULT_HAS_CONTENT, call_id__lte=last_call)
    if dry_run:
        return candidates.count()
    erased = 0
    after = 0
    while ids := list(
        candidates.filter(call_id__gt=after)
        .order_by("call_id")
        .values_list("call_id", flat=True)[:batch_size]
    ):
        with transaction.atomic():
            erased += CallResult.objects.filter(RESULT_HAS_CONTENT, call_id__in=ids).update(
                **RESULT_CONTENT_ERASED
            )
        after = ids[-1]
    return erased


def _oldest_day_before(day: date) -> date | None:
    return (
        Call.objects.filter(local_date__lt=day)
        .order_by("local_date")
        .values_list("local_date", flat=True)
        .first()
    )


def calls_rows_prune(
    *, before_day: date, batch_size: int, now: datetime, dry_run: bool = False
) -> tuple[int, int]:
    """Delete the calls of local days before ``before_day``, each day once its rollup is
    final; returns (calls deleted, days rolled up first). A day whose rollup another
    process is computing right now is left, with the days after it, for the next run."""
    ensure_final = import_string(ROLLUP_FINAL_ENSURE)
    if dry_run:
        old = Call.objects.filter(local_date__lt=before_day)
        days = set(old.values_list("local_date", flat=True).distinct())
        from_dashboard = import_string("dashboard.models.RollupDay")
        final = set(from_dashboard.objects.filter(day__in=days, final=True).values_list("day", flat=True))
        return old.count(), len(days - final)
    deleted = rolled_up = 0
    while (day := _oldest_day_before(before_day)) is not None:
        done, computed = ensure_final(day=day, now=now)
        if not done:
            logger.warning(
                "Retention: the rollup of %s is being computed elsewhere; its calls stay for now", day
            )
            break
        rolled_up += computed
        while ids := list(Call.objects.filter(local_date=day).values_list("pk", flat=True)[:batch_size]):
            with transaction.atomic():
                deleted += Call.objects.filter(pk__in=ids).delete()[1].get(Call._meta.label, 0)
    return deleted, rolled_up


@dataclass
class PruneReport:
    content_before: datetime
    calls_before: date
    dry_run: bool = False
    content: dict[str, int] = field(default_factory=dict)
    calls_deleted: int = 0
    days_rolled_up: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        verb = "would erase" if self.dry_run else "erased"
        content = ", ".join(f"{kind} {count}" for kind, count in self.content.items())
        return (
            f"prune_data{' (dry run)' if self.dry_run else ''}: {verb} content of {content} "
            f"(created before {self.content_before:%Y-%m-%d %H:%M} UTC); "
            f"{'would delete' if self.dry_run else 'deleted'} {self.calls_deleted} calls of local days "
            f"before {self.calls_before} ({self.days_rolled_up} day(s) "
            f"{'to roll up' if self.dry_run else 'rolled up'} first); {self.seconds:.1f} s"
        )


def data_prune(
    *, now: datetime | None = None, dry_run: bool = False, batch_size: int | None = None
) -> PruneReport:
    """Apply the retention settings once (the nightly job, `manage.py prune_data`)."""
    now = now or timezone.now()
    batch_size = batch_size or settings.RETENTION_BATCH_SIZE
    started = time.perf_counter()
    report = PruneReport(
        content_before=now - timedelta(days=settings.RETENTION_DAYS_CONTENT),
        calls_before=timezone.localdate(now) - timedelta(days=settings.RETENTION_DAYS_CALLS),
        dry_run=dry_run,
    )
    for kind, path in CONTENT_PRUNERS:
        report.content[kind] = import_string(path)(
            before=report.content_before, batch_size=batch_size, dry_run=dry_run
        )
    report.calls_deleted, report.days_rolled_up = calls_rows_prune(
        before_day=report.calls_before, batch_size=batch_size, now=now, dry_run=dry_run
    )
    report.seconds = time.perf_counter() - started
    logger.info("%s", report.line())
    return report
