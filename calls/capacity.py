"""Live-call leases in Redis: how many calls each capped provider has live, the calls
waiting for a line, and who dispatches them (calls/dispatch.py). Split from
calls/queues.py, whose connection and job options it uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from redis.exceptions import RedisError
from rq.job import Job

from . import queues

logger = logging.getLogger("relevel.calls")

# --- Live-call leases ----------------------------------------------------------------------
# Providers cap live calls. Each capped provider has, in Redis (so the cap is one across
# every worker process and machine):
#   live     sorted set, call id -> when its lease runs out (a call sent and not yet ended);
#   waiting  sorted set, call id -> when its window closes (calls due, waiting for a line);
#   sent     sorted set of the last second's sends, for PROVIDER_MAX_CALLS_PER_SECOND;
#   hold     a key that stops all sending for a moment (the provider said it is full);
#   dispatcher  who is dispatching this provider's calls now (calls/dispatch.py).
# Leases, not counters: a worker that dies holding a line gives it back when its lease runs
# out. Times are the callers' clocks (epoch seconds), as the database's are.

DISPATCH_CALLS_JOB = "calls.jobs.dispatch_calls"
# How long one dispatch job keeps dispatching before it hands over to a fresh job (so that
# RQ's job timeout, a deploy or a restart never cuts a dispatcher off mid-call for long).
DISPATCHER_BUDGET_SECONDS = 240


def _capacity_key(provider: str, part: str) -> str:
    return f"relevel:capacity:{provider}:{part}"


def _live_calls_key(provider: str) -> str:
    return _capacity_key(provider, "live")


# Take up to ARGV[4] calls from the waiting set, earliest deadline first, as far as free
# lines and the per-second rate allow, each leased until now + ARGV[5]. Calls whose window
# closes before ARGV[6] are taken out as missed. Returns {taken, deadlines, missed, lost}:
# with a token (ARGV[7]), nothing is done unless the dispatcher lock (KEYS[5]) holds it
# (lost = 1), in the same atomic step.
_TAKE_SCRIPT = """
local live, waiting, sent, hold = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, cap, rate = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local want, lease, miss_before = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
if ARGV[7] ~= '' and redis.call('GET', KEYS[5]) ~= ARGV[7] then return {{}, {}, {}, 1} end
redis.call('ZREMRANGEBYSCORE', live, '-inf', now)
local missed = redis.call('ZRANGEBYSCORE', waiting, '-inf', miss_before)
if #missed > 0 then redis.call('ZREMRANGEBYSCORE', waiting, '-inf', miss_before) end
if want <= 0 or redis.call('EXISTS', hold) == 1 then return {{}, {}, missed, 0} end
if cap > 0 then want = math.min(want, cap - redis.call('ZCARD', live)) end
if rate > 0 then
  redis.call('ZREMRANGEBYSCORE', sent, '-inf', now - 1)
  want = math.min(want, rate - redis.call('ZCARD', sent))
end
if want <= 0 then return {{}, {}, missed, 0} end
local picked = redis.call('ZRANGE', waiting, 0, want - 1, 'WITHSCORES')
local taken, deadlines = {}, {}
for i = 1, #picked, 2 do
  local id = picked[i]
  taken[#taken + 1] = id
  deadlines[#deadlines + 1] = picked[i + 1]
  redis.call('ZREM', waiting, id)
  redis.call('ZADD', live, now + lease, id)
  if rate > 0 then redis.call('ZADD', sent, now, id .. ':' .. now) end
end
if rate > 0 then redis.call('EXPIRE', sent, 5) end
return {taken, deadlines, missed, 0}
"""

# End a call's lease; returns {calls still waiting, whether a dispatcher is on them}.
_RELEASE_SCRIPT = """
redis.call('ZREM', KEYS[1], ARGV[1])
return {redis.call('ZCARD', KEYS[2]), redis.call('EXISTS', KEYS[3])}
"""

# The dispatcher's lock is renewed or released only by its holder.
_RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_UNLOCK_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def provider_is_capped(provider: str) -> bool:
    """Whether this provider's calls wait for a free line (or a free second) before sending."""
    return bool(
        settings.PROVIDER_MAX_LIVE_CALLS.get(provider) or settings.PROVIDER_MAX_CALLS_PER_SECOND.get(provider)
    )


def capped_providers() -> list[str]:
    return [provider for provider in settings.CALL_PROVIDERS if provider_is_capped(provider)]


def capacity_admit(provider: str, deadlines: dict[int, float]) -> None:
    """Put calls in the provider's waiting set, each scored by when its window closes (a
    call already there keeps the earlier deadline)."""
    if deadlines:
        queues.redis_connection().zadd(
            _capacity_key(provider, "waiting"), {str(k): v for k, v in deadlines.items()}, lt=True
        )


@dataclass(frozen=True)
class CapacityTake:
    taken: dict[int, float]  # call id -> its deadline, in deadline order
    missed: list[int]  # calls whose window closed while they waited
    lost: bool = False  # the dispatcher's lock is not the caller's (nothing was done)


def capacity_take(
    provider: str,
    *,
    now: float,
    want: int,
    lease_seconds: float,
    send_margin: float = 0.0,
    token: str | None = None,
) -> CapacityTake:
    """Lease lines for up to ``want`` waiting calls, earliest deadline first (atomic across
    processes). A call whose window closes within ``send_margin`` seconds is missed. With a
    dispatcher's ``token``, only while its lock is still that dispatcher's (else ``lost``)."""
    taken, deadlines, missed, lost = queues.redis_connection().eval(
        _TAKE_SCRIPT,
        5,
        _capacity_key(provider, "live"),
        _capacity_key(provider, "waiting"),
        _capacity_key(provider, "sent"),
        _capacity_key(provider, "hold"),
        _capacity_key(provider, "dispatcher"),
        now,
        settings.PROVIDER_MAX_LIVE_CALLS.get(provider, 0),
        settings.PROVIDER_MAX_CALLS_PER_SECOND.get(provider, 0),
        want,
        lease_seconds,
        f"({now + send_margin}",  # exclusive: a window closing later than that is still open
        token or "",
    )
    return CapacityTake(
        taken={int(call_id): float(deadline) for call_id, deadline in zip(taken, deadlines, strict=True)},
        missed=[int(call_id) for call_id in missed],
        lost=bool(lost),
    )


def capacity_extend(provider: str, call_id: int, *, until: float) -> None:
    """Keep a sent call's line until ``until`` (its outcome frees it sooner). A call whose
    outcome already came (and freed the line) is not leased again."""
    queues.redis_connection().zadd(_live_calls_key(provider), {str(call_id): until}, xx=True)


def capacity_give_back(provider: str, deadlines: dict[int, float], *, hold_seconds: float = 0) -> None:
    """Calls taken but not sent: free their lines and put them back in the waiting set; with
    ``hold_seconds``, nobody sends to this provider for that long (it said it is full, or
    it is unreachable: sending again at once would only be refused again)."""
    if not deadlines:
        return
    with queues.redis_connection().pipeline() as pipe:
        pipe.zrem(_live_calls_key(provider), *map(str, deadlines))
        pipe.zadd(_capacity_key(provider, "waiting"), {str(k): v for k, v in deadlines.items()}, lt=True)
        if hold_seconds > 0:
            pipe.set(_capacity_key(provider, "hold"), 1, px=int(hold_seconds * 1000))
        pipe.execute()


def capacity_free(provider: str, call_ids: list[int]) -> None:
    """Free the lines of calls that were taken and will not be sent (or were refused for good)."""
    if call_ids:
        queues.redis_connection().zrem(_live_calls_key(provider), *map(str, call_ids))


def capacity_forget(provider: str, call_ids: list[int]) -> None:
    """Take calls out of the provider's waiting set: settled elsewhere (the tick recorded
    them missed), nobody is to take them."""
    if call_ids:
        queues.redis_connection().zrem(_capacity_key(provider, "waiting"), *map(str, call_ids))


@dataclass(frozen=True)
class CapacityCounts:
    live: int
    waiting: int


def capacity_counts(provider: str, *, now: float) -> CapacityCounts:
    return capacity_counts_of([provider], now=now)[provider]


def capacity_counts_of(providers: list[str], *, now: float) -> dict[str, CapacityCounts]:
    """Live calls (unexpired leases; one scored exactly ``now`` has run out) and calls
    waiting, per provider, in one round trip; raises RedisError."""
    with queues.redis_connection().pipeline(transaction=False) as pipe:
        for provider in providers:
            pipe.zcount(_live_calls_key(provider), f"({now}", "+inf")
            pipe.zcard(_capacity_key(provider, "waiting"))
        counts = pipe.execute()
    return {
        provider: CapacityCounts(live=counts[2 * index], waiting=counts[2 * index + 1])
        for index, provider in enumerate(providers)
    }


def calls_waiting_for_capacity(provider: str, call_ids: list[int]) -> set[int]:
    """Which of these calls are in the provider's waiting set (they have no job, and need none)."""
    if not call_ids:
        return set()
    scores = queues.redis_connection().zmscore(
        _capacity_key(provider, "waiting"), [str(pk) for pk in call_ids]
    )
    return {pk for pk, score in zip(call_ids, scores, strict=True) if score is not None}


def dispatcher_claim(provider: str, token: str, *, ttl_seconds: float) -> bool:
    """Become the provider's dispatcher. Taking the lock also clears the "just enqueued"
    mark that dispatcher_ensure leaves: the job it marked is this one, now running. Left
    for its 5 s, the mark would outlive a dispatcher that ran and stopped within them, and
    calls admitted just after it stopped would wait with nobody to dispatch them until the
    next tick."""
    claimed = bool(
        queues.redis_connection().set(
            _capacity_key(provider, "dispatcher"), token, nx=True, px=int(ttl_seconds * 1000)
        )
    )
    if claimed:
        queues.redis_connection().delete(_capacity_key(provider, "dispatch-enqueued"))
    return claimed


def dispatcher_renew(provider: str, token: str, *, ttl_seconds: float) -> bool:
    return bool(
        queues.redis_connection().eval(
            _RENEW_SCRIPT, 1, _capacity_key(provider, "dispatcher"), token, int(ttl_seconds * 1000)
        )
    )


def dispatcher_release(provider: str, token: str) -> None:
    queues.redis_connection().eval(_UNLOCK_SCRIPT, 1, _capacity_key(provider, "dispatcher"), token)


def dispatcher_is_running(provider: str) -> bool:
    return bool(queues.redis_connection().exists(_capacity_key(provider, "dispatcher")))


def dispatcher_ensure(provider: str) -> bool:
    """Start a dispatcher for the provider's waiting calls unless one runs or was just
    enqueued (a rush's hundred batch jobs would otherwise enqueue a hundred); True if this
    call enqueued one."""
    connection = queues.redis_connection()
    if connection.exists(_capacity_key(provider, "dispatcher")):
        return False
    if not connection.set(_capacity_key(provider, "dispatch-enqueued"), 1, nx=True, px=5000):
        return False
    enqueue_dispatch(provider)
    return True


def enqueue_dispatch(provider: str) -> Job:
    """A job that dispatches the provider's waiting calls (one at a time runs: the others
    find its lock and return at once)."""
    # At the front: behind a rush's hundred batch jobs, the lines would stay idle until
    # every batch had been put to wait.
    return queues.calls_queue().enqueue(
        DISPATCH_CALLS_JOB,
        provider,
        at_front=True,
        job_timeout=DISPATCHER_BUDGET_SECONDS + queues.batch_job_timeout(1),
        description=f"Dispatch {provider}'s calls waiting for a free line",
        **queues.job_options(),
    )


def live_call_ended(*, provider: str, call_id: int) -> None:
    """A call reached its outcome: its line is free for the next call waiting, and if calls
    wait with nobody dispatching them (the dispatcher's worker died), a dispatcher starts.

    Called after the commit that recorded the outcome. Redis being down costs nothing but
    the line's lease, which runs out by itself (PROVIDER_LIVE_CALL_TIMEOUT_SECONDS)."""
    if not provider_is_capped(provider):
        return
    try:
        waiting, dispatching = queues.redis_connection().eval(
            _RELEASE_SCRIPT,
            3,
            _live_calls_key(provider),
            _capacity_key(provider, "waiting"),
            _capacity_key(provider, "dispatcher"),
            str(call_id),
        )
        if waiting and not dispatching:
            dispatcher_ensure(provider)
    except RedisError as exc:
        logger.warning("Call %s: its line stays taken until its lease runs out (%s)", call_id, exc)
