"""What calls yielded in the admin: the call page's "Result" box (calls.results, above the
raw payloads), the user page's recent summaries, and the read-only lists of results and of
each month's cost."""

from __future__ import annotations

import json
from decimal import Decimal

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from web.display import admin_time

from .admin_filters import ProviderFilter
from .logsafe import mask_phone
from .models import Call, CallResult, MonthlyCost
from .policy import policy_current
from .selectors import call_ids_matching_text


def result_html(call: Call) -> str:
    try:
        result: CallResult = call.result
    except CallResult.DoesNotExist:
        if call.is_terminal:
            return "Not analysed yet (the analysis job runs after the call ends)."
        return "-"
    rows = [
        ("Summary", result.summary or "-"),
        ("Answered by", result.get_answered_by_display()),
        (
            "Sentiment",
            f"{result.get_sentiment_display()} ({result.sentiment_score:+.2f}, {result.sentiment_source})"
            if result.sentiment
            else "-",
        ),
        ("User talk", f"{result.user_talk_seconds:.0f} s" if result.user_talk_seconds is not None else "-"),
        (
            "Cost",
            f"{result.cost_amount.normalize():f} {result.cost_currency}"
            if result.cost_amount is not None
            else "-",
        ),
        ("Opt-out heard", "yes: the user was opted out" if result.opt_out_heard else "no"),
        ("Call-back", result.callback_note or "-"),
    ]
    table = format_html_join("", "<tr><th style='padding-right:1em'>{}</th><td>{}</td></tr>", rows)
    data = (
        format_html(
            "<pre style='margin:0.5em 0 0'>{}</pre>",
            json.dumps(result.data, indent=2, ensure_ascii=False, sort_keys=True),
        )
        if result.data
        else ""
    )
    return format_html("<table>{}</table>{}", table, data)


RECENT_DAYS = 30


def recent_results_html(*, user_id: int, since) -> str:
    """A user's page: the last 30 days' summaries, newest first, and a sentiment line (one
    point per analysed call, -1 to 1, oldest left)."""
    results = list(
        CallResult.objects.filter(call__user_id=user_id, call__local_date__gte=since)
        .select_related("call")
        .order_by("call__local_date", "call__attempt", "call_id")
    )
    if not results:
        return "No analysed calls in the last 30 days."
    scored = [result.sentiment_score for result in results if result.sentiment_score is not None]
    line = ""
    if len(scored) >= 2:
        width, height = 300, 40
        step = width / (len(scored) - 1)
        points = " ".join(f"{i * step:.1f},{(1 - score) * height / 2:.1f}" for i, score in enumerate(scored))
        line = format_html(
            '<svg id="sentiment-line" viewBox="0 0 {} {}" width="{}" height="{}" role="img" '
            'aria-label="Sentiment of the last {} analysed calls, from -1 (bottom) to 1 (top)">'
            '<line x1="0" y1="{}" x2="{}" y2="{}" stroke="currentColor" stroke-opacity="0.25"/>'
            '<polyline points="{}" fill="none" stroke="currentColor" stroke-width="1.5"/></svg>',
            width, height, width, height, len(scored), height / 2, width, height / 2, points,
        )  # fmt: skip
    items = format_html_join(
        "",
        "<li>{} (attempt {}): {}{}</li>",
        (
            (
                result.call.local_date,
                result.call.attempt,
                result.summary or "(no summary)",
                f" [{result.sentiment}]" if result.sentiment else "",
            )
            for result in reversed(results)
            if result.summary or result.sentiment
        ),
    )
    return format_html("{}<ul style='margin:4px 0 0;padding-left:1.2em'>{}</ul>", line, items)


# The results' and the month's cost lists (read-only: the analysis job writes both) --------

SUMMARY_CHARS = 90


class ResultProviderFilter(ProviderFilter):
    provider_field = "call__provider"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Written by the analysis job only: the admin is a window onto them."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(CallResult)
class CallResultAdmin(ReadOnlyAdmin):
    """What each ended call yielded: summary, who answered, sentiment, cost. The search
    looks in the summaries and transcripts (PostgreSQL full text) and the user's names."""

    list_display = (
        "call_link",
        "user_link",
        "masked_to_number",
        "ended_local",
        "provider",
        "answered_by_display",
        "sentiment_display",
        "summary_short",
        "cost_display",
    )
    list_display_links = None
    list_filter = ("sentiment", "answered_by", ResultProviderFilter, "opt_out_heard")
    search_fields = ("call__user__name", "call__user__username", "call__user__external_id")
    search_help_text = "A word or phrase of the summary or transcript, or the user's name or external id."
    list_select_related = ("call", "call__user")
    ordering = ("-call_id",)
    # The results table grows with the calls: skip the unfiltered COUNT(*) on filtered pages.
    show_full_result_count = False
    list_help = "Each call's time is in its user's time zone: hover over one for the zone and UTC."
    fields = (
        "call_link",
        "user_link",
        "masked_to_number",
        "ended_local",
        "provider",
        "result_display",
        "analysed_at",
    )
    readonly_fields = fields

    def get_search_results(self, request: HttpRequest, queryset, search_term: str):
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        if search_term.strip():
            found |= queryset.filter(call_id__in=call_ids_matching_text(text=search_term))
        return found, may_have_duplicates

    @admin.display(description="call", ordering="call_id")
    def call_link(self, obj: CallResult) -> str:
        url = reverse("admin:calls_call_change", args=[obj.call_id])
        return format_html('<a href="{}">Call {}</a>', url, obj.call_id)

    @admin.display(description="user", ordering="call__user__name")
    def user_link(self, obj: CallResult) -> str:
        url = reverse("admin:users_user_change", args=[obj.call.user_id])
        return format_html('<a href="{}">{}</a>', url, obj.call.user)

    @admin.display(description="to")
    def masked_to_number(self, obj: CallResult) -> str:
        return mask_phone(obj.call.to_number)

    @admin.display(description="ended", ordering="call__completed_at")
    def ended_local(self, obj: CallResult) -> str:
        return admin_time(obj.call.completed_at, obj.call.user.local_tz)

    @admin.display(description="provider", ordering="call__provider")
    def provider(self, obj: CallResult) -> str:
        return obj.call.provider or "-"

    @admin.display(description="answered by", ordering="answered_by")
    def answered_by_display(self, obj: CallResult) -> str:
        return obj.get_answered_by_display()

    @admin.display(description="sentiment", ordering="sentiment_score")
    def sentiment_display(self, obj: CallResult) -> str:
        if not obj.sentiment:
            return "-"
        score = f" {obj.sentiment_score:+.2f}" if obj.sentiment_score is not None else ""
        return format_html(
            '<span title="{}">{}{}</span>',
            f"from the {obj.sentiment_source or 'provider'}",
            obj.get_sentiment_display(),
            score,
        )

    @admin.display(description="summary")
    def summary_short(self, obj: CallResult) -> str:
        if not obj.summary:
            return "-"
        return format_html(
            '<span title="{}">{}</span>', obj.summary, Truncator(obj.summary).chars(SUMMARY_CHARS)
        )

    @admin.display(description="cost", ordering="cost_amount")
    def cost_display(self, obj: CallResult) -> str:
        if obj.cost_amount is None:
            return "-"
        return f"{obj.cost_amount.normalize():f} {obj.cost_currency}"

    @admin.display(description="result")
    def result_display(self, obj: CallResult) -> str:
        return result_html(obj.call)

    @admin.display(description="analysed")
    def analysed_at(self, obj: CallResult) -> str:
        return admin_time(obj.updated_at, obj.call.user.local_tz)


@admin.register(MonthlyCost)
class MonthlyCostAdmin(ReadOnlyAdmin):
    """The cost recorded per UTC month and currency, and the budget it counts against."""

    list_display = ("month_display", "currency", "amount_display", "budget_display")
    list_filter = ("currency",)
    ordering = ("-month", "currency")
    list_help = (
        "Months are UTC months: a call's cost counts in the month its result was recorded. "
        "The budget is the call policy's."
    )

    @admin.display(description="month", ordering="month")
    def month_display(self, obj: MonthlyCost) -> str:
        return f"{obj.month:%Y-%m}"

    @admin.display(description="cost", ordering="amount")
    def amount_display(self, obj: MonthlyCost) -> str:
        return f"{obj.amount.normalize():f} {obj.currency}"

    @admin.display(description="budget")
    def budget_display(self, obj: MonthlyCost) -> str:
        rules = policy_current()
        if rules.monthly_budget is None or rules.budget_currency != obj.currency:
            return "-"
        share = obj.amount / rules.monthly_budget * 100 if rules.monthly_budget else Decimal(0)
        return f"{rules.monthly_budget.normalize():f} {rules.budget_currency} ({share:.0f}% used)"
