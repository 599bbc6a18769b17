"""The call page's "Result" box: what the call yielded (calls.results), above the raw
payloads."""

from __future__ import annotations

import json

from django.utils.html import format_html, format_html_join

from .models import Call, CallResult


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
