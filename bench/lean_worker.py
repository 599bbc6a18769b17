"""Prototype, for measurement only, of the change BENCHMARKS.md recommends for placement.

Used as ``rqworker --worker-class lean_worker.LeanWorker`` (bench/ on PYTHONPATH): a plain
SimpleWorker whose process places first attempts with two conditional UPDATE statements
instead of two ORM transactions (SELECT ... FOR UPDATE with a join, a model save, and a
COMMIT each, eight round trips in all, plus building each query through the ORM):

1. claim:  UPDATE calls_call ... SET status='dialing' FROM users_user
           WHERE id = %s AND status = 'queued' AND attempt = 1 AND the user is callable
           RETURNING what the provider request needs
2. placed: UPDATE calls_call SET provider_call_id = ..., status = 'ringing' unless a
           webhook already moved it further, payloads appended, WHERE id = %s

A conditional UPDATE takes the same row lock SELECT ... FOR UPDATE did, for the length of
one statement. Anything off the fast path (a retry attempt, a user no longer callable, a
call not queued, any provider error) goes to the app's own code unchanged.
"""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.db import connection
from django.utils import timezone
from rq.worker import SimpleWorker

from calls import services
from calls.providers import get_provider
from calls.providers.base import PlaceCallRequest, ProviderError

logger = logging.getLogger("relevel.calls")
original_call_place = services.call_place

CLAIM = """
UPDATE calls_call AS c
SET status = 'dialing', dialed_at = %s, to_number = u.phone, provider = %s
FROM users_user AS u
WHERE c.id = %s AND c.status = 'queued' AND c.attempt = 1
  AND u.id = c.user_id AND u.call_enabled AND u.phone IS NOT NULL AND u.phone <> ''
RETURNING c.user_id, u.phone, coalesce(nullif(u.name, ''), u.username), c.agent_id
"""
PLACED = """
UPDATE calls_call
SET provider_call_id = %s,
    provider_payloads = provider_payloads || %s::jsonb,
    error = '',
    last_status_at = CASE WHEN status IN ('queued', 'dialing') THEN %s ELSE last_status_at END,
    status = CASE WHEN status IN ('queued', 'dialing') THEN 'ringing' ELSE status END
WHERE id = %s
"""


def lean_call_place(*, call_id: int, is_last_try: bool = True) -> str:
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(CLAIM, [now, settings.CALL_PROVIDER, call_id])
        row = cursor.fetchone()
    if row is None:
        return original_call_place(call_id=call_id, is_last_try=is_last_try)
    user_id, phone, name, agent_id = row
    logger.info("Processing user call for %s", name)
    request = PlaceCallRequest(call_id=call_id, user_id=user_id, to_number=phone, agent_id=agent_id, name=name)
    try:
        placed = get_provider().place_call(request)
    except ProviderError:
        # Put it back as the original found it and let the app's own path handle the error.
        with connection.cursor() as cursor:
            cursor.execute("UPDATE calls_call SET status = 'queued' WHERE id = %s AND status = 'dialing'", [call_id])
        return original_call_place(call_id=call_id, is_last_try=is_last_try)
    with connection.cursor() as cursor:
        cursor.execute(
            PLACED, [placed.provider_call_id, json.dumps([{"placed": placed.raw}]), timezone.now(), call_id]
        )
    logger.info("Call %s initiated to %s (provider call %s)", call_id, services.mask_phone(phone), placed.provider_call_id)
    return "placed"


services.call_place = lean_call_place


class LeanWorker(SimpleWorker):
    pass
