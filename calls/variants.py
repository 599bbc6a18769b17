"""Agent variants (A/B): which agent calls which user.

A user is assigned a variant by weight, deterministically (a hash of the user's id, so the
same user lands on the same variant in every process and every tick), and keeps it, stored
on the user, until that variant is deactivated; then they are assigned again among the
active ones. With no active variant, calls use the provider's default agent, as before.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .models import AgentVariant


@dataclass(frozen=True)
class Variant:
    pk: int
    provider: str
    agent_id: str
    weight: int


def variants_active() -> list[Variant]:
    """The active variants, in a stable order (the order assignment uses)."""
    return [
        Variant(*row)
        for row in AgentVariant.objects.filter(active=True)
        .order_by("pk")
        .values_list("pk", "provider", "agent_id", "weight")
    ]


def _bucket(user_id: int, total: int) -> int:
    digest = hashlib.sha256(f"relevel-variant:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % total


def variant_for(*, user_id: int, current_id: int | None, variants: list[Variant]) -> Variant | None:
    """The variant ``user_id`` calls with: the one they have if it is still active (whatever
    its weight: a weight of 0 only stops new assignments), else one picked by weight from
    their id; None when no variant can be picked."""
    for variant in variants:
        if variant.pk == current_id:
            return variant
    weighted = [v for v in variants if v.weight > 0]
    if not weighted:
        return None
    point = _bucket(user_id, sum(v.weight for v in weighted))
    for variant in weighted:
        if point < variant.weight:
            return variant
        point -= variant.weight
    raise AssertionError("unreachable: the point lies below the total weight")
