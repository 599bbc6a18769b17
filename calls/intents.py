"""What the user asked for on the call, heard in their own turns: an opt-out ("stop calling
me") or a call-back ("call me back at 8"). Pure functions, no database (calls.analysis acts).

The opt-out matcher errs on the side of not matching a sentence that negates the request
("don't stop calling me") or only pauses it ("stop, call me later"): each clause is matched
on its own, and a match preceded by a negation in its clause does not count.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, time, timedelta

_CALL = r"(?:call(?:ing)?|phon(?:e|ing)|ring(?:ing)?|contact(?:ing)?)"
OPT_OUT_PATTERNS = tuple(
    re.compile(pattern)
    for pattern in (
        rf"\bstop {_CALL} (?:me|this number|us)\b",
        rf"\b(?:do not|dont|never) {_CALL} (?:me|this number|us) (?:again|anymore|any more|ever)\b",
        rf"\b(?:do not|dont) ever {_CALL} (?:me|this number|us)\b",
        r"\b(?:take|remove|delete|drop) (?:me|my number|this number) (?:off|from) "
        r"(?:your|the|this|that) (?:\w+ )?list\b",
        rf"\b(?:do not|dont) want (?:these|your|any more|anymore|any|this|more|those) (?:\w+ )?{_CALL}s?\b",
        r"\bno more calls\b",
        r"\bunsubscribe me\b|\bunsubscribe\b",
        r"\bopt (?:me )?out\b",
        r"\bput me on (?:your|the) do not call list\b",
    )
)
# Words that, just before a match in the same clause, turn it around.
_NEGATION_BEFORE = re.compile(r"(?:\b(?:do not|dont|never|not)\s*)$")
# "I don't want these calls to stop": the request is the opposite.
_REVERSAL_AFTER = re.compile(r"^\s*(?:to stop|to end|stopped|ended)\b")
_CLAUSE = re.compile(r"[.,;!?\n]+|\bbut\b")


def _normalise(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("n't", " not").replace("'", "")
    text = re.sub(r"\bca not\b", "cannot", text)
    return re.sub(r"[ \t]+", " ", text)


def _phrase_patterns(extra_phrases: Iterable[str]) -> list[re.Pattern]:
    return [
        re.compile(r"\b" + r"\s+".join(map(re.escape, _normalise(phrase).split())) + r"\b")
        for phrase in extra_phrases
        if phrase.strip()
    ]


def opt_out_heard(*, user_turns: Iterable[str], extra_phrases: Iterable[str] = ()) -> bool:
    """Whether any of the user's turns asks not to be called any more."""
    patterns = [*OPT_OUT_PATTERNS, *_phrase_patterns(extra_phrases)]
    for turn in user_turns:
        for clause in _CLAUSE.split(_normalise(turn)):
            clause = clause.strip()
            for pattern in patterns:
                for match in pattern.finditer(clause):
                    before, after = clause[: match.start()], clause[match.end() :]
                    if _NEGATION_BEFORE.search(before) or _REVERSAL_AFTER.search(after):
                        continue
                    return True
    return False


_CALLBACK = re.compile(
    r"\b(?:call (?:me )?back|call me (?:again )?(?=in\b|at\b|after\b|tonight\b|this\b|later\b|around\b)"
    r"|try (?:me )?again|ring me (?:back|again)|give me a call)\b(?P<rest>[^.!?;]*)"
)
_AT_TIME = re.compile(
    r"\b(?:at|around|about|after)\s+(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?\s*(?P<half>am|pm|a\.m\.|p\.m\.)?"
)
_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "an": 1, "a": 1, "half an": 0.5,
}  # fmt: skip
_IN_DELAY = re.compile(
    r"\bin (?P<count>\d+|half an|an|a|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)"
    r" (?P<unit>hours?|minutes?|mins?)\b"
)
_PARTS_OF_DAY = {"tonight": time(20, 0), "this evening": time(19, 0), "this afternoon": time(15, 0)}


def callback_heard(*, user_turns: Iterable[str]) -> tuple[bool, str]:
    """Whether the user asked to be called back, and the words after the request that may
    say when ("at 8", "in an hour", "tonight"; "" when none)."""
    for turn in user_turns:
        match = _CALLBACK.search(_normalise(turn))
        if match:
            return True, match.group("rest").strip()
    return False, ""


def callback_time(*, words: str, now_local: datetime) -> datetime | None:
    """When "``words``" means, on the user's wall clock (``now_local`` aware, in their zone):
    the next such time after now. A bare hour ("at 8") is the next 8 o'clock, morning or
    evening; relative delays and parts of the day are counted from now. None when it says
    no time relevel understands."""
    words = words.lower()
    match = _AT_TIME.search(words)
    if match:
        hour, minute = int(match.group("hour")), int(match.group("minute") or 0)
        half = (match.group("half") or "").replace(".", "")
        if hour > 23 or minute > 59:
            return None
        if half == "pm" and hour < 12:
            hour += 12
        elif half == "am" and hour == 12:
            hour = 0
        candidates = [hour] if half or hour > 12 or hour == 0 else [hour, hour + 12 if hour < 12 else 0]
        for candidate in candidates:
            at = now_local.replace(hour=candidate, minute=minute, second=0, microsecond=0)
            if at > now_local:
                return at
        return now_local.replace(hour=candidates[0], minute=minute, second=0, microsecond=0) + timedelta(
            days=1
        )
    match = _IN_DELAY.search(words)
    if match:
        count = match.group("count")
        amount = float(count) if count.isdigit() else float(_WORDS[count])
        unit = timedelta(hours=1) if match.group("unit").startswith("h") else timedelta(minutes=1)
        return now_local + amount * unit
    for phrase, at in _PARTS_OF_DAY.items():
        if phrase in words:
            candidate = now_local.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
            return candidate if candidate > now_local else None
    if words:
        return _parse_with_dateparser(words, now_local=now_local)
    return None


def _parse_with_dateparser(words: str, *, now_local: datetime) -> datetime | None:
    """What the patterns above do not cover ("later this evening", "at half past seven")."""
    import dateparser

    parsed = dateparser.parse(
        words,
        languages=["en"],
        settings={
            "RELATIVE_BASE": now_local.replace(tzinfo=None),
            "PREFER_DATES_FROM": "future",
            "RETURN_AS_TIMEZONE_AWARE": False,
        },
    )
    if parsed is None:
        return None
    return parsed.replace(tzinfo=now_local.tzinfo)
