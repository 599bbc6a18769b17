"""A tick's first attempts packed into batch jobs (place-calls-<first call id>), each of
CALL_BATCH_SIZE calls that go to the workers at the same time: at once, or at one step of
a spread slot (CALL_SPREAD_MINUTES), when RQ's scheduler releases it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from django.conf import settings
from redis.exceptions import RedisError

from . import queues

logger = logging.getLogger("relevel.calls")


class TickCounts(Protocol):
    enqueued: int
    enqueue_failed: int


@dataclass
class BatchPlan:
    """One claiming transaction's plan for its calls' batch jobs, applied if it commits."""

    job_ids: list[str]  # each planned call's job, in order
    open: dict[datetime | None, tuple[str, list[int]]]  # batches not full yet, by release time
    full: list[tuple[str, list[int], datetime | None]]  # (job id, call ids, release time)
    claimed: int

    def drop(self, call_ids: set[int]) -> None:
        """Leave out calls whose insert conflicted (the user's day already had its call)."""
        self.claimed -= len(call_ids)
        for _, ids in self.open.values():
            ids[:] = [pk for pk in ids if pk not in call_ids]
        for _, ids, _ in self.full:
            ids[:] = [pk for pk in ids if pk not in call_ids]


class BatchPacker:
    """Packs a tick's first attempts into batch jobs of CALL_BATCH_SIZE calls that go to the
    workers at the same time (at once, or one step of a spread slot), across the tick's
    claiming transactions: a rush slot spread over 10 minutes is ~17 calls per step in each
    transaction of 1,000 users, which on their own would make three times the jobs.

    A batch is enqueued once a commit has filled it, and the rest when claiming ends
    (``flush``), so every call of a batch is committed before a worker can look for it."""

    def __init__(self, *, summary: TickCounts) -> None:
        self.size = settings.CALL_BATCH_SIZE
        self.summary = summary
        self.open: dict[datetime | None, tuple[str, list[int]]] = {}

    def plan(self, calls: list[tuple[int, datetime | None]]) -> BatchPlan:
        """Assign (call id, release time) pairs to batches, on a copy of the open batches."""
        open_batches = {release: (job_id, list(ids)) for release, (job_id, ids) in self.open.items()}
        full: list[tuple[str, list[int], datetime | None]] = []
        job_ids: list[str] = []
        for pk, release in calls:
            batch = open_batches.get(release)
            if batch is None:
                batch = open_batches[release] = (queues.batch_job_id(pk), [])
            batch[1].append(pk)
            job_ids.append(batch[0])
            if len(batch[1]) >= self.size:
                full.append((*batch, release))
                del open_batches[release]
        return BatchPlan(job_ids=job_ids, open=open_batches, full=full, claimed=len(calls))

    def commit(self, plan: BatchPlan) -> None:
        """The transaction that planned ``plan`` committed: its full batches go now."""
        self.open = plan.open
        self._enqueue(plan.full)

    def flush(self) -> None:
        """Claiming is over (or failed): every committed batch goes, full or not."""
        batches = [(job_id, ids, release) for release, (job_id, ids) in self.open.items()]
        self.open = {}
        self._enqueue(batches)

    def _enqueue(self, batches: list[tuple[str, list[int], datetime | None]]) -> None:
        """If Redis is down the claims stand, and a later tick finds these queued calls
        without a live job and enqueues them (calls_reenqueue_stranded)."""
        if not batches:
            return
        at = {job_id: release for job_id, _, release in batches if release is not None}
        try:
            self.summary.enqueued += enqueue_batches({job_id: ids for job_id, ids, _ in batches}, at=at)
        except RedisError as exc:
            count = sum(len(ids) for _, ids, _ in batches)
            self.summary.enqueue_failed += count
            logger.error(
                "Redis unreachable (%s): %s claimed calls will be enqueued by a later tick",
                type(exc).__name__,
                count,
            )


def enqueue_batches(batches: dict[str, list[int]], *, at: dict[str, datetime]) -> int:
    # Without a spread, the call is the one it always was (and that the fault tests wrap).
    return queues.enqueue_call_batches(batches, at=at) if at else queues.enqueue_call_batches(batches)
