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
        ("Cost", f"{result.cost_amount.normalize():f} {result.cost_currency}" if result.cost_amount is not None else "-"),
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
