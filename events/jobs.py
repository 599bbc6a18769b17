"""RQ entry points of the events queue (EVENTS_QUEUE): thin, take ids, call a service."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.db import close_old_connections

from . import delivery
from . import pump as delivery_pump


def job(func: Callable[..., Any]) -> Callable[..., Any]:
    """As calls.jobs.job: drop a broken or old database connection before and after."""

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    return run


@job
def deliver_events(event_ids: list[int]) -> str:
    """Create the events' deliveries and send each once (the one-by-one path before
    events.pump: for jobs an older release queued, and the benchmark's comparison)."""
    results = [
        delivery.delivery_attempt(delivery_id=pk) for pk in delivery.events_fan_out(event_ids=event_ids)
    ]
    return _summary(results)


@job
def deliver(delivery_id: int) -> str:
    """One delivery's retry, when it is due."""
    return delivery.delivery_attempt(delivery_id=delivery_id)


@job
def deliver_many(delivery_ids: list[int]) -> str:
    """Deliveries the sweep or a replay found due."""
    return _summary([delivery.delivery_attempt(delivery_id=pk) for pk in delivery_ids])


@job
def sweep_events() -> str:
    return delivery.events_sweep()


def _summary(results: list[str]) -> str:
    return ", ".join(f"{results.count(name)} {name}" for name in sorted(set(results))) or "nothing due"


@job
def fan_out_pending() -> str:
    """Create the deliveries of every event not fanned out yet, and ask for each
    endpoint's delivery job (events.pump; the job a commit with events asks for)."""
    return f"{delivery_pump.events_fan_out_pending()} event(s) fanned out"


@job
def deliver_endpoint(endpoint_id: int) -> str:
    """Send an endpoint's due deliveries in batches (events.pump)."""
    counts = delivery_pump.endpoint_deliver_due(endpoint_id=endpoint_id)
    return ", ".join(f"{count} {name}" for name, count in counts.items() if count) or "nothing due"
