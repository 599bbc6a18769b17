"""The scheduler tick: repair what earlier ticks or dead workers left behind (sweeps.py),
then claim every slot due before the next tick and enqueue each for its time (claim.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from redis.exceptions import RedisError

from . import claim, monitoring, queues, sweeps
from .batching import BatchPacker
from .policy import policy_cache_clear, policy_current
from .providers import default_agent_id
from .variants import variants_active

logger = logging.getLogger("relevel.calls")


@dataclass
class TickSummary:
    due: int = 0
    claimed: int = 0
    enqueued: int = 0
    missed: int = 0
    reenqueued: int = 0
    abandoned: int = 0
    unconfirmed: int = 0
    silent: int = 0
    repaired: int = 0
    enqueue_failed: int = 0
    unanalysed: int = 0

    def line(self) -> str:
        return (
            f"due={self.due} claimed={self.claimed} enqueued={self.enqueued} "
            f"missed={self.missed} re-enqueued={self.reenqueued} abandoned={self.abandoned}"
            + "".join(
                f" {name}={value}"
                for name, value in (
                    ("unconfirmed-failed", self.unconfirmed),
                    ("no-outcome", self.silent),
                    ("rescheduled", self.repaired),
                    ("enqueue-failed", self.enqueue_failed),
                    ("unanalysed-noted", self.unanalysed),
                )
                if value
            )
        )


def calls_schedule_due(*, now: datetime | None = None) -> TickSummary:
    """One scheduler tick: repair what earlier ticks lost, claim every slot due before the
    next tick (claim.claim_horizon) and enqueue each to be released at its own time.

    Safe to run any number of times concurrently (two schedulers, a manual trigger during
    a tick): each (user, local date) gets at most one first attempt.
    """
    now = now or timezone.now()
    # Read fresh: the tick that resuming enqueues must not see the pause a worker cached.
    policy_cache_clear()
    rules = policy_current()
    window = rules.window
    summary = TickSummary()
    # The repairs run first, and whether or not claiming works: each is independent, a
    # stuck call must not wait for the claim to work again, and the stranded sweep then
    # never reads the calls this tick claims (a late tick's rush is due before the
    # stranded threshold, yet was enqueued a moment ago).
    for step in (_fail_stuck_calls, _reenqueue_stranded_calls, _note_unanalysed_calls):
        try:
            step(now=now, window=window, summary=summary)
        except (DatabaseError, RedisError) as exc:
            logger.error(
                "Tick at %s: %s skipped (%s)",
                now.isoformat(timespec="seconds"),
                step.__name__,
                type(exc).__name__,
            )
    work = claim.Claim(
        now=now,
        rules=rules,
        summary=summary,
        batches=BatchPacker(summary=summary),
        variants=[],
        agent_id=default_agent_id(settings.CALL_PROVIDER),
        spread_minutes=settings.CALL_SPREAD_MINUTES,
        until=claim.claim_horizon(now=now, cron=settings.SCHEDULE_CRON),
    )
    failure: DatabaseError | None = None
    try:
        summary.repaired = claim.users_schedule_unscheduled(now=now)
        work.variants = variants_active()
        claim.claim_all_due(claim=work)
    except DatabaseError as exc:
        # Batches committed so far stand (their jobs are enqueued); the failed batch rolled
        # back whole, so the next tick simply finds its users still due.
        first_line = (str(exc).strip().splitlines() or [""])[0]
        logger.error(
            "Tick at %s failed: database error (%s: %s) after %s; the next tick completes the work",
            now.isoformat(timespec="seconds"),
            type(exc).__name__,
            first_line,
            summary.line(),
        )
        failure = exc
    finally:
        # After the last claim's commit (at once here, outside a transaction).
        queues.on_commit(work.batches.flush)
    logger.info("Tick at %s: %s", now.isoformat(timespec="seconds"), summary.line())
    monitoring.tick_record(started_at=now, summary=summary, failed=failure is not None)
    if failure is not None:
        raise failure
    return summary


def _reenqueue_stranded_calls(*, now: datetime, window: timedelta, summary: TickSummary) -> None:
    paused = policy_current().paused
    summary.reenqueued, expired = sweeps.calls_reenqueue_stranded(now=now, window=window, paused=paused)
    summary.missed += expired
    sweeps.dispatchers_ensure(now=now, paused=paused)


def _note_unanalysed_calls(*, now: datetime, window: timedelta, summary: TickSummary) -> None:
    summary.unanalysed = sweeps.calls_note_unanalysed(now=now)


def _fail_stuck_calls(*, now: datetime, window: timedelta, summary: TickSummary) -> None:
    """Give a final state to calls that will never get one by themselves."""
    summary.abandoned += sweeps.calls_unconfirm_abandoned(now=now)
    unconfirmed, silent = sweeps.calls_fail_stuck(now=now)
    summary.unconfirmed += unconfirmed
    summary.silent += silent
