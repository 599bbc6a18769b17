"""The dashboard's charts of what the calls yielded (calls.results, docs/conversation.md):
voicemail share and sentiment per day, cost per day and per reached user, and the A/B table
of agent variants scored on outcomes. All from the daily rollup (dashboard.rollups)."""

from __future__ import annotations

from calls.models import AgentVariant, CallStatus

from .charts import PALETTE, Chart, Series, wilson_interval

SENTIMENTS = (
    ("positive", "Positive", "#15803d"),
    ("neutral", "Neutral", "#64748b"),
    ("negative", "Negative", "#b91c1c"),
)


def _label(day) -> str:
    return f"{day:%b} {day.day}"


def _pct(part: float, whole: float) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def _interval(successes: int, trials: int) -> str | None:
    if not trials:
        return None
    low, high = wilson_interval(successes, trials)
    return f"{100 * low:.1f}-{100 * high:.1f}"


def _dialed(rollup, day) -> float:
    return sum(
        rollup.get(day, "status", status)
        for status in (
            CallStatus.COMPLETED,
            CallStatus.NO_ANSWER,
            CallStatus.BUSY,
            CallStatus.FAILED,
            CallStatus.VOICEMAIL,
        )
    )


def chart_sentiment(rollup) -> Chart:
    counts = {
        slug: [int(rollup.get(day, "sentiment", slug)) for day in rollup.days] for slug, _, _ in SENTIMENTS
    }
    return Chart(
        slug="sentiment",
        title="Sentiment per day",
        help="The analysed calls of each local day by the user's sentiment: the provider's where it "
        "gives one (Retell), else VADER's over the user's own words.",
        kind="stacked",
        unit="count",
        labels=[_label(day) for day in rollup.days],
        series=[Series(label, counts[slug], colour) for slug, label, colour in SENTIMENTS],
        columns=["day", "positive", "neutral", "negative"],
        rows=[
            [day.isoformat(), *(counts[slug][i] for slug, _, _ in SENTIMENTS)]
            for i, day in enumerate(rollup.days)
        ],
    )


def chart_voicemail_share(rollup) -> Chart:
    labels = [_label(day) for day in rollup.days]
    shares = [
        _pct(rollup.get(day, "status", CallStatus.VOICEMAIL), _dialed(rollup, day)) for day in rollup.days
    ]
    return Chart(
        slug="voicemail-share",
        title="Voicemail share per day",
        help="Of each local day's calls that were dialed and ended, the share a machine answered "
        "(voicemail counts as not reached).",
        kind="bar-line",
        unit="percent",
        labels=labels,
        series=[Series("Voicemail", shares, PALETTE[2])],
        columns=["day", "voicemail %"],
        rows=[[day.isoformat(), share] for day, share in zip(rollup.days, shares, strict=True)],
        y_max=100,
    )


def _reached_users(rollup, day) -> float:
    return sum(
        value for (metric, _), value in rollup.stats.get(day, {}).items() if metric == "reached_attempt"
    )


def chart_cost(rollup) -> Chart:
    currencies = sorted(
        {key for day in rollup.days for (metric, key) in rollup.stats.get(day, {}) if metric == "cost"}
    )
    currency = currencies[0] if currencies else "USD"
    costs = [round(rollup.get(day, "cost", currency), 4) for day in rollup.days]
    per_user = [
        round(cost / reached, 4) if (reached := _reached_users(rollup, day)) else None
        for day, cost in zip(rollup.days, costs, strict=True)
    ]
    return Chart(
        slug="cost",
        title=f"Cost per day and per reached user ({currency})",
        help="The cost the providers reported for each local day's calls (bars), and that divided by "
        "the users reached that day (line). CallKaro reports no cost."
        + (f" Other currencies recorded: {', '.join(currencies[1:])}." if len(currencies) > 1 else ""),
        kind="bar-line",
        unit="count",
        labels=[_label(day) for day in rollup.days],
        series=[
            Series("Cost", costs, PALETTE[0]),
            Series("Per reached user", per_user, PALETTE[4 % len(PALETTE)], kind="line"),
        ],
        columns=["day", f"cost {currency}", "users reached", f"per reached user {currency}"],
        rows=[
            [day.isoformat(), cost, int(_reached_users(rollup, day)), user]
            for day, cost, user in zip(rollup.days, costs, per_user, strict=True)
        ],
        hidden_note=""
        if currencies
        else "No call has reported a cost yet (Vapi and Retell do; CallKaro does not).",
    )


def chart_variant_outcomes(rollup, variants: list[AgentVariant]) -> Chart:
    """The A/B table: each variant's rates with 95% Wilson intervals, and a note when two
    variants' answer rates differ beyond chance (their intervals do not overlap)."""
    rows, rates, lower, upper, intervals = [], [], [], [], {}
    for variant in variants:
        key = str(variant.pk)
        dialed = int(rollup.total("variant_dialed", key))
        answered = int(rollup.total("variant_answered", key))
        voicemail = int(rollup.total("variant_voicemail", key))
        opt_outs = int(rollup.total("variant_opt_out", key))
        sentiment_n = rollup.total("variant_sentiment_n", key)
        talk_n = rollup.total("variant_talk_n", key)
        cost = rollup.total("variant_cost", key)
        low, high = wilson_interval(answered, dialed)
        intervals[variant.name] = (low, high, dialed)
        rates.append(_pct(answered, dialed))
        lower.append(round(100 * low, 1) if dialed else None)
        upper.append(round(100 * high, 1) if dialed else None)
        rows.append(
            [
                variant.name,
                dialed,
                _pct(answered, dialed),
                _interval(answered, dialed),
                _pct(voicemail, dialed),
                _interval(voicemail, dialed),
                _pct(opt_outs, answered),
                _interval(opt_outs, answered),
                round(rollup.total("variant_sentiment_sum", key) / sentiment_n, 2) if sentiment_n else None,
                round(rollup.total("variant_talk_sum", key) / talk_n, 1) if talk_n else None,
                round(cost / answered, 4) if answered and cost else None,
            ]
        )
    return Chart(
        slug="variant-outcomes",
        title="Agent variants scored on outcomes (A/B)",
        help="Last 30 days, per variant: answer, voicemail and opt-out rates (opt-outs of the answered "
        "calls) with their 95% intervals (Wilson), mean sentiment (-1 to 1), mean user talk time and "
        "cost per reached user. " + answer_rate_note(intervals),
        kind="bar-line",
        unit="percent",
        labels=[variant.name for variant in variants],
        series=[Series("Answer rate", rates, PALETTE[3], lower=lower, upper=upper)],
        columns=[
            "variant",
            "dialed",
            "answer %",
            "answer 95% CI",
            "voicemail %",
            "voicemail 95% CI",
            "opt-out %",
            "opt-out 95% CI",
            "mean sentiment",
            "mean talk s",
            "cost per reached user",
        ],
        rows=rows,
        y_max=100,
        hidden_note="" if variants else "No agent variants are defined (Calls › Agent variants).",
    )


def answer_rate_note(intervals: dict[str, tuple[float, float, int]]) -> str:
    """Plain words on whether any two variants' answer rates differ beyond chance."""
    tried = [(name, low, high) for name, (low, high, dialed) in intervals.items() if dialed]
    apart = [
        (a, b) if a_low > b_high else (b, a)
        for i, (a, a_low, a_high) in enumerate(tried)
        for b, b_low, b_high in tried[i + 1 :]
        if a_low > b_high or b_low > a_high
    ]
    if len(tried) < 2:
        return ""
    if not apart:
        return "No two variants' answer rates differ beyond chance yet (their intervals overlap)."
    return " ".join(
        f"{better} answers more often than {worse}, beyond chance (their 95% intervals do not overlap)."
        for better, worse in apart
    )
