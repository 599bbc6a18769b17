"""The cost guard (docs/conversation.md, "Budget"): an optional monthly budget in the call
policy. When the month's recorded cost (the results' costs in the budget's currency, by
the UTC month they were recorded in, kept in MonthlyCost) reaches it, calls pause
themselves: the analysis job sets CallPolicy.budget_reached_at, which the policy reads as
a pause (no query on any hot path). Raising or clearing the budget, or a new month, resumes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.utils import timezone

from .models import CallPolicy, MonthlyCost
from .policy import month_start, policy_cache_clear, reached_in_force

logger = logging.getLogger("relevel.policy")


def cost_record(*, amount: Decimal, currency: str, now: datetime) -> None:
    """Add ``amount`` (negative: a corrected cost) to the month's total, in one statement
    (concurrent analysis jobs add up, none lost)."""
    if not amount or not currency:
        return
    table = MonthlyCost._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (month, currency, amount) VALUES (%s, %s, %s) "
            f"ON CONFLICT (month, currency) DO UPDATE SET amount = {table}.amount + EXCLUDED.amount",
            [month_start(now).date(), currency, amount],
        )


def month_cost(*, currency: str, now: datetime) -> Decimal:
    """The cost recorded this UTC month in ``currency`` (costs in another currency are not
    converted: they are not counted against the budget)."""
    row = MonthlyCost.objects.filter(month=month_start(now).date(), currency=currency).first()
    return row.amount if row is not None else Decimal(0)


def month_costs(*, now: datetime) -> dict[str, Decimal]:
    return dict(MonthlyCost.objects.filter(month=month_start(now).date()).values_list("currency", "amount"))


@dataclass(frozen=True)
class BudgetState:
    budget: Decimal | None
    currency: str
    spent: Decimal
    reached: bool

    def describe(self) -> str:
        if self.budget is None:
            return f"No budget; {self.spent:f} {self.currency} recorded this month."
        said = f"{self.spent:f} of {self.budget:f} {self.currency} recorded this month"
        if self.reached:
            return f"Calls are paused: the monthly budget is reached ({said}). Raise or clear it to resume."
        return f"{said}."

    def as_dict(self) -> dict:
        return {
            "budget": str(self.budget) if self.budget is not None else None,
            "currency": self.currency,
            "spent": f"{self.spent:f}",
            "reached": self.reached,
        }


def budget_state(*, now: datetime | None = None) -> BudgetState:
    now = now or timezone.now()
    row = CallPolicy.objects.filter(pk=1).first() or CallPolicy(pk=1)
    currency = row.budget_currency or "USD"
    return BudgetState(
        budget=row.monthly_budget,
        currency=currency,
        spent=month_cost(currency=currency, now=now),
        reached=reached_in_force(row, now=now),
    )


def budget_check(*, now: datetime | None = None) -> bool:
    """After a cost is recorded (the analysis job) or the budget changed (the policy): pause
    calls if the month's cost reached the budget, resume if it no longer does. True when
    paused by the budget."""
    now = now or timezone.now()
    row = CallPolicy.objects.filter(pk=1).first()
    if row is None:
        return False
    reached = (
        row.monthly_budget is not None
        and month_cost(currency=row.budget_currency or "USD", now=now) >= row.monthly_budget
    )
    if reached and not reached_in_force(row, now=now):
        CallPolicy.objects.filter(pk=1).update(budget_reached_at=now)
        policy_cache_clear()
        logger.warning(
            "Monthly budget of %s %s reached: calls are paused until it is raised or cleared",
            row.monthly_budget,
            row.budget_currency,
        )
    elif not reached and row.budget_reached_at is not None:
        CallPolicy.objects.filter(pk=1).update(budget_reached_at=None)
        policy_cache_clear()
        logger.info("Monthly budget no longer reached: calls resume")
    return reached
